"""The few-shot regime on the demo: verdicts at K = 8, 16, 32 and 64 training rows per class
(`data.shots_per_class`), for the `full` and `feature_extraction` strategies.

Each cell is one `warmstart run` of the README's demo (real MiniLM, SST-2 sample, each arm's learning
rate tuned on validation) in a fresh work directory, with one training seed; the test split is the 872
SST-2 dev sentences at every K. Writes bench/results/few_shot.json.

    python bench/few_shot.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMSTART = str(Path(sys.executable).parent / "warmstart")


def main() -> None:
    cells = []
    for strategy in ("full", "feature_extraction"):
        for shots in (8, 16, 32, 64):
            work = Path(tempfile.mkdtemp(prefix=f"few-shot-{strategy}-{shots}-"))
            started = time.perf_counter()
            run = subprocess.run(
                [
                    WARMSTART,
                    *("run", "--workdir", str(work)),
                    *("--set", f"data.shots_per_class={shots}", "--set", f"train.strategy={strategy}"),
                ],
                capture_output=True,
                text=True,
            )
            if run.returncode != 0:
                raise SystemExit(run.stdout + run.stderr)
            summary = json.loads((work / "summary.json").read_text())
            cell = {
                "strategy": strategy,
                "shots_per_class": shots,
                "verdict": summary["verdict"],
                "pretrained_accuracy": summary["pretrained"]["accuracy"],
                "scratch_accuracy": summary["scratch"]["accuracy"],
                "gain": summary["gain"],
                "scratch_clears_floor": (summary.get("baselines") or {}).get("learned"),
                "wall_seconds": round(time.perf_counter() - started, 1),
            }
            cells.append(cell)
            print(json.dumps(cell), flush=True)
    results = {
        "cells": cells,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    }
    (ROOT / "bench" / "results" / "few_shot.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
