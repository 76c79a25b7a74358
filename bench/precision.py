"""fp32 vs bf16 autocast for the pretrained arm on this machine's CPU (or GPU when there is one).

Usage: python bench/precision.py [EPOCHS]   (writes bench/results/precision.json)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from machine import describe, write_result

from warmstart.config import Config
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.ingest.dataset import ingest

EPOCHS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
RESULTS = Path(__file__).resolve().parent / "results" / "precision.json"


def main() -> None:
    runs = {}
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        cfg = Config.from_dict({"train": {"epochs": EPOCHS, "eval_points": 1}})
        ingest(cfg.data, work / "data")
        fetch_model(cfg.model, work / "base")
        for precision in ("fp32", "bf16"):
            run_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": precision})})
            summary = finetune(
                run_cfg,
                "pretrained",
                work / "data",
                work / "base",
                work / precision / "m",
                work / precision / "e",
            )
            runs[precision] = {
                "train_seconds": summary["train_seconds"],
                "train_samples_per_second": round(
                    summary["train_rows"] * EPOCHS / summary["train_seconds"], 1
                ),
                "test_accuracy": round(summary["test_metrics"]["accuracy"], 4),
            }
    result = {
        "benchmark": "precision",
        "model": "all-MiniLM-L6-v2, full fine-tuning, demo SST-2 sample",
        "epochs": EPOCHS,
        "machine": describe(),
        "runs": runs,
        "bf16_speedup": round(runs["fp32"]["train_seconds"] / runs["bf16"]["train_seconds"], 2),
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
