"""Verdicts at default settings on tasks whose answer is known from outside warmstart.

`warmstart run` (the whole pipeline through kfp.local, tuning on, every other setting at its
default) on the tasks of bench/tasks.py, and on the spam-like task once more with a deliberately bad
scratch rate (`train.scratch_learning_rate=5e-6`, which the grid then holds beside good ones). The
answers they should give:

- `spam-like`: a from-scratch model learns it (bench/scratch_baseline.py: the plain PyTorch loop
  reaches test accuracy 1.0, as does the pretrained arm), so the verdict must be neutral, with or
  without the bad rate;
- `sst2-sentences`, `sst2-imbalanced`: the pretrained encoder is far ahead of any scratch model on
  2,000 rows (the plain loop's scratch runs stay below 0.75 on SST-2), so positive.

Usage: python bench/verdicts.py [TASK...]   (writes bench/results/verdicts.json)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_result
from tasks import TASKS, write_task

RESULTS = Path(__file__).resolve().parent / "results" / "verdicts.json"
EXPECTED = {"spam-like": "neutral", "sst2-sentences": "positive", "sst2-imbalanced": "positive"}


def run(task: str, work: Path, extra: list[str]) -> dict:
    train_file, test_file = write_task(task, work / "files")
    command = [
        sys.executable,
        "-m",
        "warmstart",
        "run",
        "--workdir",
        str(work / "run"),
        "--set",
        f"data.source={train_file}",
        "--set",
        f"data.test_source={test_file}",
        *extra,
    ]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(
            f"{task}: warmstart run failed\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}"
        )
    summary = json.loads((work / "run" / "summary.json").read_text())
    return {
        "verdict": summary["verdict"],
        "expected": EXPECTED[task],
        "right": summary["verdict"] == EXPECTED[task],
        "pretrained_accuracy": round(summary["pretrained"]["accuracy"], 4),
        "scratch_accuracy": round(summary["scratch"]["accuracy"], 4),
        "gain": {k: round(summary["gain"][k], 4) for k in ("estimate", "ci_low", "ci_high")},
        "chosen_rates": {arm: info["chosen"] for arm, info in summary["tuning"]["arms"].items()},
        "tuning_cost_ratio": summary["tuning"]["cost"]["ratio"],
        "floor": round(summary["baselines"]["value"], 4),
        "scratch_learned": summary["baselines"]["learned"],
        "start": {k: summary["tests"]["start"][k] for k in ("pretrained", "scratch", "finding")},
        "command_seconds": round(seconds, 1),
    }


def main() -> None:
    tasks = sys.argv[1:] or list(TASKS)
    runs = {}
    with tempfile.TemporaryDirectory() as scratch:
        for task in tasks:
            runs[task] = run(task, Path(scratch) / task, [])
            print(task, runs[task], flush=True)
            if task == "spam-like":
                bad = run(
                    task, Path(scratch) / "spam-like-bad-rate", ["--set", "train.scratch_learning_rate=5e-6"]
                )
                runs["spam-like, train.scratch_learning_rate=5e-6"] = bad
                print("spam-like bad rate", bad, flush=True)
    write_result(
        RESULTS,
        {
            "benchmark": "verdicts",
            "command": "warmstart run --set data.source=TRAIN --set data.test_source=TEST (defaults otherwise)",
            "machine": describe(),
            "runs": runs,
            "targets": "every verdict is the expected one",
        },
    )


if __name__ == "__main__":
    main()
