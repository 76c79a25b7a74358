"""Feature extraction with cached features vs a Trainer that re-runs the frozen encoder every step.

Both train only the classification layer of the real all-MiniLM-L6-v2 on the demo's SST-2 sample for
the same epochs, seed, learning rate (1e-2, a linear probe's) and schedule, at 3 and at 10 epochs; the
uncached run is warmstart's own `cache_features: false` path, which is a stock HF Trainer over the
full model with everything below that layer frozen. Both use `precision: auto`.

Usage: python bench/feature_extraction.py [EPOCHS ...]   (default 3 10; writes
bench/results/feature_extraction.json)
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_result

from warmstart.config import Config
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.ingest.dataset import ingest

EPOCHS = [float(value) for value in sys.argv[1:]] or [3.0, 10.0]
RESULTS = Path(__file__).resolve().parent / "results" / "feature_extraction.json"


def main() -> None:
    comparisons = []
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        cfg = Config.from_dict({"train": {"strategy": "feature_extraction", "learning_rate": 1e-2}})
        ingest(cfg.data, work / "data")
        fetch_model(cfg.model, work / "base")
        for epochs in EPOCHS:
            runs = {}
            for cache in (False, True):
                train = cfg.train.model_copy(update={"cache_features": cache, "epochs": epochs})
                out = work / f"{epochs}-{cache}"
                started = time.perf_counter()
                summary = finetune(
                    cfg.model_copy(update={"train": train}),
                    "pretrained",
                    work / "data",
                    work / "base",
                    out / "m",
                    out / "e",
                )
                runs["cached" if cache else "uncached"] = {
                    "wall_seconds": round(time.perf_counter() - started, 2),
                    "train_seconds": summary["train_seconds"],
                    "precision": summary["precision"],
                    "test_accuracy": round(summary["test_metrics"]["accuracy"], 4),
                    "validation_accuracy_curve": [round(p["accuracy"], 4) for p in summary["learning_curve"]],
                    "trainable_parameters": summary["trainable_parameters"],
                }
            comparisons.append(
                {
                    "epochs": epochs,
                    "runs": runs,
                    "speedup_train": round(
                        runs["uncached"]["train_seconds"] / runs["cached"]["train_seconds"], 2
                    ),
                    "speedup_wall": round(
                        runs["uncached"]["wall_seconds"] / runs["cached"]["wall_seconds"], 2
                    ),
                }
            )
    result = {
        "benchmark": "feature_extraction",
        "model": "all-MiniLM-L6-v2 (22.7M parameters), classification layer only, learning rate 1e-2",
        "data": "demo SST-2 sample: 900 train phrases (810 after the validation split), 872 test",
        "note": "train_seconds: the feature pass (cached) or the Trainer's epochs (uncached), learning-curve "
        "evaluations included; wall_seconds: the whole finetune call, tokenizing and test predictions included",
        "machine": describe(),
        "comparisons": comparisons,
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
