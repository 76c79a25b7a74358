"""The scratch baseline against a plain PyTorch loop: does warmstart's from-scratch arm learn at least
what a hand-written loop with the same settings learns?

On each task of bench/tasks.py (SST-2 sentences, an imbalanced SST-2, a spam-like task with a long
minority class) and each seed, the same MiniLM architecture is trained from a random init on the
same training rows (warmstart's split), at the same rate (5e-4), budget (3 epochs), batch (32) and
text length (64 tokens), and tested on the same rows:

- `warmstart`: the scratch arm as `warmstart run` trains it (tuning off, to compare one rate);
- `warmstart_length_grouped`: the same with `train.group_by_length=true`, the sampler warmstart used
  by default before (transformers' LengthGroupedSampler);
- `plain_loop`: bench/plain_loop.py, fp32, shuffled batches, nothing of warmstart.

Usage: python bench/scratch_baseline.py [SEEDS...]   (writes bench/results/scratch_baseline.json)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from machine import describe, write_result
from plain_loop import train_and_test
from tasks import TASKS, write_task

from warmstart.config import Config
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.ingest.dataset import ingest

RESULTS = Path(__file__).resolve().parent / "results" / "scratch_baseline.json"
SEEDS = [int(seed) for seed in sys.argv[1:]] or [0, 1, 2]
RATE, EPOCHS, BATCH, MAX_LENGTH = 5e-4, 3.0, 32, 64


def rows(dataset: Path, split: str) -> dict[str, list]:
    table = pq.read_table(dataset / f"{split}.parquet", columns=["text", "label"])
    return {"text": table.column("text").to_pylist(), "label": table.column("label").to_pylist()}


def warmstart_scratch(work: Path, dataset: Path, base: Path, seed: int, **train) -> dict:
    cfg = Config.from_dict(
        {
            "model": {"max_length": MAX_LENGTH},
            "train": {
                "epochs": EPOCHS,
                "batch_size": BATCH,
                "scratch_learning_rate": RATE,
                "seed": seed,
                "checkpoint_steps": 0,
                **train,
            },
            "tune": {"enabled": False},
        }
    )
    name = f"ws-{seed}-{'-'.join(map(str, train.values()))}"
    summary = finetune(cfg, "scratch", dataset, base, work / name / "m", work / name / "e")
    return {
        "seed": seed,
        "test_accuracy": round(summary["test_metrics"]["accuracy"], 4),
        "test_macro_f1": round(summary["test_metrics"]["macro_f1"], 4),
        "precision": summary["precision"],
        "train_seconds": summary["train_seconds"],
    }


def summarise(runs: list[dict]) -> dict:
    return {
        "runs": runs,
        "mean_accuracy": round(statistics.mean(r["test_accuracy"] for r in runs), 4),
        "mean_macro_f1": round(statistics.mean(r["test_macro_f1"] for r in runs), 4),
        "min_accuracy": min(r["test_accuracy"] for r in runs),
        "mean_train_seconds": round(statistics.mean(r["train_seconds"] for r in runs), 1),
    }


def main() -> None:
    tasks = {}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        fetch_model(Config().model, work / "base")
        for task in TASKS:
            train_file, test_file = write_task(task, work / task / "files")
            data = Config.from_dict({"data": {"source": str(train_file), "test_source": str(test_file)}}).data
            card = ingest(data, work / task / "data")
            dataset = work / task / "data"
            setups: dict[str, list] = {"warmstart": [], "warmstart_length_grouped": [], "plain_loop": []}
            for seed in SEEDS:
                setups["warmstart"].append(warmstart_scratch(work / task, dataset, work / "base", seed))
                setups["warmstart_length_grouped"].append(
                    warmstart_scratch(work / task, dataset, work / "base", seed, group_by_length=True)
                )
                plain = train_and_test(
                    work / "base",
                    rows(dataset, "train"),
                    rows(dataset, "test"),
                    pretrained=False,
                    learning_rate=RATE,
                    seed=seed,
                    epochs=EPOCHS,
                    batch_size=BATCH,
                    max_length=MAX_LENGTH,
                )
                setups["plain_loop"].append({"seed": seed, **plain})
                print(task, seed, {name: runs[-1] for name, runs in setups.items()}, flush=True)
            labels = card["label_distribution"]["test"]
            tasks[task] = {
                "rows": card["rows"],
                "majority_class_accuracy": round(max(labels.values()) / sum(labels.values()), 4),
                **{name: summarise(runs) for name, runs in setups.items()},
            }
            tasks[task]["warmstart_minus_plain_accuracy"] = round(
                tasks[task]["warmstart"]["mean_accuracy"] - tasks[task]["plain_loop"]["mean_accuracy"], 4
            )
    result = {
        "benchmark": "scratch_baseline",
        "model": "all-MiniLM-L6-v2 architecture from its config (random init), 22.7M parameters",
        "settings": f"lr {RATE}, {EPOCHS:g} epochs, batch {BATCH}, {MAX_LENGTH} tokens, seeds {SEEDS}",
        "machine": describe(),
        "tasks": tasks,
        "targets": "warmstart's mean test accuracy and macro-F1 no worse than the plain loop's on every task",
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
