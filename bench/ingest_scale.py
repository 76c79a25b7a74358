"""Ingestion at scale: a generated CSV of ROWS rows (about 100 bytes each) → validated splits + data card.

Each measurement runs `warmstart.ingest.ingest` in a fresh process, so its peak RSS (ru_maxrss of
the child) is ingest's alone: Python, pandas and pyarrow included, the benchmark's generator not.

Usage: python bench/ingest_scale.py [ROWS]   (default 1,000,000; writes bench/results/ingest_scale.json)
"""

from __future__ import annotations

import csv
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_result

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "ingest_scale.json"
WORDS = (
    "the a film movie plot acting story scene character director music ending performance script cast "
    "dialogue camera moment minute hour audience screen moving dull brilliant tedious charming awful "
    "gripping flat warm cold clever silly honest bold quiet loud slow fast long short"
).split()
CHILD = """
import json, resource, sys, time
from warmstart.config import DataConfig
from warmstart.ingest.dataset import ingest
started = time.perf_counter()
card = ingest(DataConfig(source=sys.argv[1], text_column="text", label_column="label"), sys.argv[2])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": card["rows"], "removed": card["removed"]}))
"""


def generate(path: Path, rows: int) -> None:
    """Review-like lines of 12 to 20 words (about 100 bytes) with two labels. The last 1% repeat
    earlier rows exactly, as real exports do, so deduplication has work to do."""
    unique = rows - rows // 100
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(rows):
            rng = random.Random(i % unique)
            words = rng.choices(WORDS, k=rng.randint(12, 20))
            writer.writerow([" ".join(words) + f" {i % unique}", "pos" if rng.random() < 0.5 else "neg"])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="warmstart-bench-") as scratch:
        data = Path(scratch) / "reviews.csv"
        generate(data, ROWS)
        size = data.stat().st_size
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(data), str(Path(scratch) / "out")],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        inner = json.loads(out.stdout.strip().splitlines()[-1])
    write_result(
        RESULTS,
        {
            "machine": describe(),
            "rows": ROWS,
            "csv_mb": round(size / 1e6, 1),
            "ingest_seconds": round(inner["seconds"], 2),
            "process_seconds": round(wall, 2),
            "rows_per_second": round(ROWS / inner["seconds"]),
            "peak_rss_mib": round(peak_kib / 1024),
            "split_rows": inner["rows"],
            "removed": inner["removed"],
            "targets": {"peak_rss_mib": "< 1024", "rows_per_second": ">= 200000"},
        },
    )


if __name__ == "__main__":
    main()
