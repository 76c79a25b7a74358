"""Finetune evaluations made without training, to test the gate's statistics and reports on known numbers."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def fake_evaluation(
    directory,
    init,
    labels,
    predicted,
    curve,
    fingerprint="t" * 64,
    seed=0,
    fraction=1.0,
    learning_rate=1e-4,
    validation=None,
    trials=None,
):
    """An evaluation directory as finetune writes it, with chosen predictions; `validation` (labels,
    predicted: rows × curve points) adds the per-row validation predictions, `trials` the search's
    trials [(rate, validation accuracy)]."""
    directory.mkdir(parents=True)
    if validation is not None:
        pq.write_table(
            pa.table(
                {
                    "id": np.arange(len(validation[0])),
                    "label": validation[0],
                    "predicted": validation[1].tolist(),
                }
            ),
            directory / "validation_predictions.parquet",
        )
    classes = int(max(labels.max(), predicted.max())) + 1
    probabilities = np.eye(classes)[predicted].astype(np.float32)
    pq.write_table(
        pa.table(
            {
                "id": np.arange(len(labels)),
                "text": [f"t{i}" for i in range(len(labels))],
                "label": labels,
                "predicted": predicted,
                "probabilities": probabilities.tolist(),
            }
        ),
        directory / "predictions.parquet",
    )
    trials = trials or [(learning_rate, curve[-1]["accuracy"])]
    summary = {
        "init": init,
        "learning_rate": learning_rate,
        "data_fraction": fraction,
        "tuning": {
            "enabled": len(trials) > 1,
            "learning_rates": [rate for rate, _ in trials],
            "grid": sorted(rate for rate, _ in trials),
            "reduction": 3,
            "rule": "the best validation accuracy, then the lowest validation loss",
            "steps": 100 * len(trials),
            "trials": [
                {
                    "learning_rate": rate,
                    "steps": 100,
                    "validation": {"accuracy": score, "macro_f1": score, "loss": 0.5},
                    "chosen": rate == learning_rate,
                }
                for rate, score in trials
            ],
        },
        "train_rows": int(500 * fraction),
        "steps": 100,
        "train_seconds": 1.0,
        "model_sha256": f"{init}-{seed}",
        "seed": seed,
        "learning_curve": curve,
        "label_names": [str(c) for c in range(classes)],
        "test_fingerprint": fingerprint,
        "data_fingerprint": "d" * 64,
        "base_model": "pkg://x/y",
    }
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def curve(values):
    return [{"step": 10 * i, "accuracy": v, "macro_f1": v} for i, v in enumerate(values)]


def flip(labels, share, rng):
    """Labels with `share` of them changed: a classifier of accuracy 1 - share."""
    wrong = rng.random(len(labels)) < share
    return np.where(wrong, 1 - labels, labels)


def fake_probe(directory, labels, pretrained, random_init):
    """A linear probe as fetch_model writes it: test predictions from pretrained and random-init features."""
    from warmstart.metrics import all_metrics

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "id": np.arange(len(labels)),
                "label": labels,
                "pretrained": pretrained,
                "random_init": random_init,
            }
        ),
        directory / "probe_predictions.parquet",
    )
    record = {
        "method": "linear probe",
        "metric": "accuracy",
        "rows": {"train": 500, "validation": 50, "test": len(labels)},
        **{
            arm: {**all_metrics(labels, p, 2), "C": 1.0}
            for arm, p in (("pretrained", pretrained), ("random_init", random_init))
        },
    }
    (directory / "probe.json").write_text(json.dumps(record))
    return directory
