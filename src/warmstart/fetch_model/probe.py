"""probe: the start of transfer, measured as transfer papers do, with a linear probe on frozen features.

"Does the pretrained model start higher?" cannot be read from step 0 of fine-tuning, where both arms
sit at chance behind an untrained classification layer. A linear probe asks what the frozen
network already knows: logistic regression on its mean-pooled last hidden states (the pre-screen's
features), fitted on the training split, its regularisation chosen on the validation split, scored
on the test split; and the same for the architecture's random init, the scratch arm's starting
point. The gate compares the two on the test rows with a paired bootstrap. fetch_model runs the
probe and writes it beside the pre-screen; with `model.candidates`, the training rows' features the
pre-screen already computed are reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warmstart.artifacts import PROBE_FILE, PROBE_PREDICTIONS_FILE
from warmstart.config import Config
from warmstart.metrics import all_metrics
from warmstart.metrics import metric as metric_value
from warmstart.precision import native_bf16, resolve_precision

METHOD = (
    "linear probe: logistic regression on mean-pooled frozen features of the training split (its "
    "regularisation chosen on the validation split), scored on the test split"
)
# Inverse regularisation strengths tried on the validation split (standardised features).
C_GRID = (0.01, 0.1, 1.0)
ARMS = ("pretrained", "random_init")


def feature_precision(cfg: Config) -> str:
    """The autocast precision of the frozen feature passes: the one training runs in on this machine."""
    import torch

    cuda = torch.cuda.is_available()
    return resolve_precision(cfg.train.precision, cuda, native_bf16(cuda))


def split_rows(dataset_dir: Path, split: str, rows: int = 0, seed: int = 0) -> Any:
    """A split as a datasets.Dataset, or `rows` of it drawn at random (0: all)."""
    from datasets import Dataset

    table = Dataset(pq.read_table(Path(dataset_dir) / f"{split}.parquet"))
    if rows and rows < len(table):
        table = table.shuffle(seed=seed).select(range(rows))
    return table


def fit_probe(
    train: np.ndarray,
    train_labels: np.ndarray,
    validation: np.ndarray,
    validation_labels: np.ndarray,
    metric: str,
    classes: int,
) -> tuple[Any, float, float]:
    """The logistic regression (on standardised features) whose C scores best on validation: (model, C,
    its validation metric). Ties go to the stronger regularisation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best: tuple[Any, float, float] | None = None
    for strength in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=2000))
        model.fit(train, train_labels)
        score = metric_value(metric, validation_labels, model.predict(validation), classes)
        if best is None or score > best[2]:
            best = (model, strength, score)
    assert best is not None
    return best


def linear_probe(
    cfg: Config,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    output_dir: str | Path,
    train_features: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Probe the pretrained encoder in `base_model_dir` and its random init; write probe.json and the test
    predictions of both probes to `output_dir`. `train_features` ({pretrained, random_init}) are the
    pre-screen's features of the same training rows, when it computed them."""
    from warmstart.artifacts import load_card
    from warmstart.fetch_model.transferability import features_of_splits

    dataset_dir, base_model_dir = Path(dataset_dir), Path(base_model_dir)
    started = time.perf_counter()
    card = load_card(dataset_dir)
    modality, names = card.get("modality", "text"), card["label_names"]
    classes = len(names)
    seed = cfg.train.run_seeds()[0]
    splits = {
        "train": split_rows(dataset_dir, "train", cfg.model.screen_rows, cfg.train.seed),
        "validation": split_rows(dataset_dir, "validation"),
        "test": split_rows(dataset_dir, "test"),
    }
    labels = {split: np.asarray(rows["label"]) for split, rows in splits.items()}
    precision = feature_precision(cfg)
    results: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for arm in ARMS:
        reused = (train_features or {}).get(arm)
        features = features_of_splits(
            base_model_dir,
            {split: rows for split, rows in splits.items() if not (split == "train" and reused is not None)},
            cfg.model.max_length,
            modality,
            random_init=arm == "random_init",
            seed=seed,
            name="model.source",
            precision=precision,
        )
        if reused is not None:
            features["train"] = reused
        model, strength, validation_score = fit_probe(
            features["train"],
            labels["train"],
            features["validation"],
            labels["validation"],
            cfg.gate.metric,
            classes,
        )
        predictions[arm] = model.predict(features["test"]).astype(np.int64)
        results[arm] = {
            **all_metrics(labels["test"], predictions[arm], classes),
            "C": strength,
            "validation": validation_score,
        }
    probe = {
        "method": METHOD,
        "metric": cfg.gate.metric,
        "rows": {split: len(rows) for split, rows in splits.items()},
        "random_init_seed": seed,
        "precision": precision,
        "test_fingerprint": card["fingerprints"]["test"],
        "seconds": round(time.perf_counter() - started, 2),
        **results,
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / PROBE_FILE).write_text(json.dumps(probe, indent=2))
    pq.write_table(
        pa.table(
            {
                "id": splits["test"].with_format(None)["id"],
                "label": pa.array(labels["test"], pa.int64()),
                **{arm: pa.array(predictions[arm], pa.int64()) for arm in ARMS},
            }
        ),
        output_dir / PROBE_PREDICTIONS_FILE,
    )
    return probe
