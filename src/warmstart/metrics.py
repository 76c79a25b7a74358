"""Classification metrics on label vectors, and the same metrics over bootstrap weight matrices."""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "macro_f1")


def weighted_metric(
    name: str, labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray, classes: int
) -> np.ndarray:
    """`name` for every row of `weights` (R × n counts of how often each example is drawn).

    Each metric is a function of per-example sums, so a whole batch of bootstrap resamples is one
    matrix product: the weights times per-example indicator columns.
    """
    weights = np.atleast_2d(weights).astype(np.float64)
    if name == "accuracy":
        return weights @ (labels == predicted).astype(np.float64) / weights.sum(axis=1)
    if name == "macro_f1":
        onehot_true = np.eye(classes)[labels]
        onehot_pred = np.eye(classes)[predicted]
        true_pos = weights @ (onehot_true * onehot_pred)
        support = weights @ onehot_true
        claimed = weights @ onehot_pred
        denominator = support + claimed
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
        present = (support > 0) | (claimed > 0)
        return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def metric(name: str, labels: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    return float(weighted_metric(name, labels, predicted, np.ones(len(labels)), classes)[0])


def all_metrics(labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, float]:
    return {name: metric(name, labels, predicted, classes) for name in METRICS}
