"""Feature extraction with cached features vs a Trainer that re-runs the frozen encoder every step.

Both train only the classification layer of the real all-MiniLM-L6-v2 on the demo's SST-2 sample for
the same epochs, seed and schedule; the uncached run is warmstart's own `cache_features: false` path,
which is a stock HF Trainer over the full model with everything below that layer frozen.

Usage: python bench/feature_extraction.py [EPOCHS]   (writes bench/results/feature_extraction.json)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_result

from warmstart.config import Config
from warmstart.fetch import fetch_model
from warmstart.finetune import finetune
from warmstart.ingest import ingest

EPOCHS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
RESULTS = Path(__file__).resolve().parent / "results" / "feature_extraction.json"


def main() -> None:
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        cfg = Config.from_dict(
            {"train": {"strategy": "feature_extraction", "epochs": EPOCHS, "learning_rate": 2e-3}}
        )
        ingest(cfg.data, work / "data")
        fetch_model(cfg.model, work / "base")
        runs = {}
        for cache in (False, True):
            run_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cache_features": cache})})
            started = time.perf_counter()
            summary = finetune(
                run_cfg,
                "pretrained",
                work / "data",
                work / "base",
                work / f"{cache}" / "m",
                work / f"{cache}" / "e",
            )
            wall = time.perf_counter() - started
            seen = summary["train_rows"] * summary["epochs"]
            runs["cached" if cache else "uncached"] = {
                "wall_seconds": round(wall, 2),
                "train_seconds": summary["train_seconds"],
                "train_samples_per_second": round(seen / summary["train_seconds"], 1),
                "test_accuracy": round(summary["test_metrics"]["accuracy"], 4),
                "validation_accuracy_curve": [round(p["accuracy"], 4) for p in summary["learning_curve"]],
                "trainable_parameters": summary["trainable_parameters"],
            }
    result = {
        "benchmark": "feature_extraction",
        "model": "all-MiniLM-L6-v2 (22.7M parameters), classification layer only",
        "data": "demo SST-2 sample: 900 train phrases (810 after the validation split), 872 test",
        "epochs": EPOCHS,
        "machine": describe(),
        "runs": runs,
        "speedup_train": round(runs["uncached"]["train_seconds"] / runs["cached"]["train_seconds"], 2),
        "speedup_wall": round(runs["uncached"]["wall_seconds"] / runs["cached"]["wall_seconds"], 2),
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
