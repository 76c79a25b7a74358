"""The gate's statistics: the paired bootstrap of the transfer gain (over test rows, and over seeds
when there are several: the Multi-Bootstrap), intervals of one arm's metric, the floor a model that
learned nothing scores, McNemar's exact test, and the learning-curve tests (start, slope, asymptote)
with their bootstrap intervals. Pure functions of predictions and labels; the gate's policy
(warmstart.gate.policy) and both reports (warmstart.gate.report_text, warmstart.gate.report) build on them.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np

from warmstart.errors import WarmstartError
from warmstart.metrics import METRICS, weighted_metric
from warmstart.metrics import metric as metric_value

# The learning-curve tests and how reports name them (the start's, when a linear probe measured it:
# PROBE_START).
CURVE_TESTS = {
    "start": "start (step 0 of the learning curve)",
    "slope": "slope (normalised area under the curve)",
    "asymptote": "asymptote (mean of the last quarter)",
}


# Bootstrap weights are built in blocks of at most this many cells, to bound memory on big test sets.
BLOCK_CELLS = 20_000_000


def paired_bootstrap(
    metric: str,
    labels: np.ndarray,
    pretrained: np.ndarray,
    scratch: np.ndarray,
    classes: int,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Gain estimate and percentile interval, every resample shared by both arms (vectorised).

    `pretrained` and `scratch` are one prediction per test row, or one row of predictions per
    training seed (seed i of one arm paired with seed i of the other). With several seeds the
    estimate is the mean of the per-seed gains and every resample also draws the seeds with
    replacement (Multi-Bootstrap).
    """
    pretrained, scratch = np.atleast_2d(pretrained), np.atleast_2d(scratch)
    runs, n = pretrained.shape
    gains = multi_bootstrap(
        lambda i, weights: (
            weighted_metric(metric, labels, pretrained[i], weights, classes)
            - weighted_metric(metric, labels, scratch[i], weights, classes)
        ),
        runs,
        n,
        samples,
        seed,
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    estimate = np.mean(
        [
            metric_value(metric, labels, pretrained[i], classes)
            - metric_value(metric, labels, scratch[i], classes)
            for i in range(runs)
        ]
    )
    counts, edges = _histogram(gains, step=1 / (n * runs) if metric == "accuracy" else None)
    return {
        "estimate": float(estimate),
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "bootstrap_samples": samples,
        "seeds": runs,
        "standard_error": float(gains.std(ddof=1)),
        "distribution": {"edges": edges.tolist(), "counts": counts.tolist()},  # for the report's plot
    }


def resample_weights(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """`rows` bootstrap resamples of n examples, as counts: how often each example is drawn (rows × n)."""
    draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)


def multi_bootstrap(
    statistic: Callable[[int, np.ndarray], np.ndarray], runs: int, n: int, samples: int, seed: int
) -> np.ndarray:
    """`samples` bootstrap replicates of the mean over `runs` seeds of `statistic(run, weights)`, which
    gives one value per resample of the n test rows (weights: rows × n draw counts). With several
    seeds each replicate also redraws the seeds with replacement (Multi-Bootstrap). Vectorised in
    blocks of resamples."""
    rng = np.random.default_rng(seed)
    replicates = np.empty(samples)
    block = max(1, min(samples, BLOCK_CELLS // max(n, 1)))
    for start in range(0, samples, block):
        rows = min(block, samples - start)
        weights = resample_weights(rng, rows, n)
        per_run = np.stack([statistic(i, weights) for i in range(runs)], axis=1)  # (rows, runs)
        if runs > 1:
            per_run = np.take_along_axis(per_run, rng.integers(0, runs, size=(rows, runs)), axis=1)
        replicates[start : start + rows] = per_run.mean(axis=1)
    return replicates


def metric_interval(
    metric: str,
    labels: np.ndarray,
    predicted: np.ndarray,
    classes: int,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, float]:
    """One arm's metric with its percentile bootstrap interval; with one row of predictions per seed,
    the mean over seeds, each resample redrawing the seeds too (as `paired_bootstrap`)."""
    predicted = np.atleast_2d(predicted)
    runs, n = predicted.shape
    values = multi_bootstrap(
        lambda i, weights: weighted_metric(metric, labels, predicted[i], weights, classes),
        runs,
        n,
        samples,
        seed,
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    estimate = float(np.mean([metric_value(metric, labels, predicted[i], classes) for i in range(runs)]))
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high), "confidence": confidence}


def _stratified_guess(name: str, support: np.ndarray, shares: np.ndarray) -> float:
    """The expected `name` of guessing each row's class at random, at the training split's class
    shares (macro-F1 to first order: per class 2·E[true positives] / (support + E[predicted]))."""
    n = support.sum()
    if name == "accuracy":
        return float(support @ shares / n)
    denominator = support + n * shares
    f1 = np.divide(2 * support * shares, denominator, out=np.zeros(len(support)), where=denominator > 0)
    return float(f1[(support > 0) | (shares > 0)].mean())


def floor(metric: str, labels: np.ndarray, train_counts: np.ndarray, names: list[str]) -> dict[str, Any]:
    """What a model that learned nothing scores on the test split: the training split's majority class
    predicted for every row, any other constant class, and a guess drawn at the training split's class
    shares. The floor is the best of them on `metric`: a model at or below it has learned nothing that
    the counts of the labels do not already say."""
    classes = len(names)
    shares = train_counts / max(train_counts.sum(), 1)
    support = np.bincount(labels, minlength=classes).astype(float)
    majority = int(np.argmax(train_counts))
    candidates = {
        f"constant '{name}'": metric_value(metric, labels, np.full(len(labels), c), classes)
        for c, name in enumerate(names)
    }
    candidates["stratified guess"] = _stratified_guess(metric, support, shares)
    by = max(candidates, key=lambda key: candidates[key])
    return {
        "metric": metric,
        "value": candidates[by],
        "by": by,
        "majority_class": {
            "label": names[majority],
            **{m: metric_value(m, labels, np.full(len(labels), majority), classes) for m in METRICS},
        },
        "stratified_guess": {m: _stratified_guess(m, support, shares) for m in METRICS},
    }


def _histogram(values: np.ndarray, step: float | None, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """About `bins` bins; when the values lie on a grid of `step` (accuracy gains are multiples of 1/n),
    every bin holds the same number of grid points, so the histogram shows no comb pattern."""
    low, high = float(values.min()), float(values.max())
    if step is None or high == low:
        return np.histogram(values, bins=bins)
    width = step * max(1, int(np.ceil((high - low) / step / bins)))
    return np.histogram(values, bins=np.arange(low - step / 2, high + width, width))


def mcnemar(labels: np.ndarray, pretrained: np.ndarray, scratch: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test: are the examples only one arm gets right split evenly between the arms?

    Two-sided exact binomial test on the discordant pairs: under "both arms are equally accurate",
    the number only the pretrained arm gets right is Binomial(discordant, 1/2).
    """
    from scipy.stats import binomtest

    right_p, right_s = pretrained == labels, scratch == labels
    only_pretrained, only_scratch = int(np.sum(right_p & ~right_s)), int(np.sum(right_s & ~right_p))
    discordant = only_pretrained + only_scratch
    p_value = binomtest(only_pretrained, discordant, 0.5).pvalue if discordant else 1.0
    return {
        "only_pretrained_right": only_pretrained,
        "only_scratch_right": only_scratch,
        "p_value": float(p_value),
    }


def aligned_curves(curves: list[list[dict[str, Any]]], metric: str) -> tuple[list[int], np.ndarray]:
    """Every seed's curve on the union of their evaluated steps: (steps, one row per seed).

    A run stopped early keeps its last value for the steps after it, as the model it kept does.
    """
    steps = sorted({point["step"] for curve in curves for point in curve})
    rows = []
    for curve in curves:
        known = {point["step"]: point[metric] for point in curve}
        value, row = known[min(known)], []
        for step in steps:
            value = known.get(step, value)
            row.append(value)
        rows.append(row)
    return steps, np.array(rows, dtype=float)


def mean_curve(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The seeds' mean learning curve, each point with both metrics (one seed: its own curve)."""
    if len(curves) == 1:
        return curves[0]
    points: dict[int, dict[str, Any]] = {}
    for name in METRICS:
        steps, values = aligned_curves(curves, name)
        for step, value in zip(steps, values.mean(axis=0), strict=True):
            points.setdefault(step, {"step": step})[name] = float(value)
    return [points[step] for step in sorted(points)]


def curve_measures(steps: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """Start (the first point), slope (area under the curve over the budget, normalised by its span)
    and asymptote (mean of the last quarter of the points) of curves `values` (… × points)."""
    span = steps[-1] - steps[0]
    area = np.trapezoid(values, steps, axis=-1) / span if span > 0 else values.mean(axis=-1)
    tail = max(1, round(values.shape[-1] / 4))
    return {"start": values[..., 0], "slope": area, "asymptote": values[..., -tail:].mean(axis=-1)}


def finding(interval: dict[str, float] | None) -> str:
    """'higher' or 'lower' when the interval of pretrained − scratch excludes zero, else 'not distinguishable'
    (also when there is no interval to go by)."""
    if interval is None:
        return "not distinguishable"
    if interval["ci_low"] > 0:
        return "higher"
    if interval["ci_high"] < 0:
        return "lower"
    return "not distinguishable"


def curve_tests(
    pretrained: list[dict[str, Any]],
    scratch: list[dict[str, Any]],
    metric: str,
    intervals: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """Higher start, steeper slope (normalised area under the curve), higher asymptote (mean of the last
    quarter of the points), each pretrained − scratch with its interval from `curve_intervals`:
    `higher` only when the interval lies above zero. And `match`: the first evaluated step at which
    scratch reached the pretrained arm's asymptote (None when it never did within the budget)."""
    if not pretrained or not scratch:
        raise WarmstartError("a learning curve is empty; rerun finetune for both arms")

    def measures(curve: list[dict[str, Any]]) -> dict[str, float]:
        steps = np.array([point["step"] for point in curve], dtype=float)
        values = np.array([point[metric] for point in curve], dtype=float)
        return {name: float(value) for name, value in curve_measures(steps, values).items()}

    p, s = measures(pretrained), measures(scratch)
    tests: dict[str, Any] = {}
    for name in ("start", "slope", "asymptote"):
        interval = (intervals or {}).get(name)
        found = finding(interval)
        tests[name] = {
            "pretrained": p[name],
            "scratch": s[name],
            "difference": p[name] - s[name],
            **({k: interval[k] for k in ("ci_low", "ci_high", "confidence")} if interval else {}),
            "finding": found,
            "higher": found == "higher",
            "measured_by": CURVE_TESTS[name],
        }
    reached = [point["step"] for point in scratch if point[metric] >= p["asymptote"]]
    tests["match"] = {
        "pretrained_asymptote": p["asymptote"],
        "scratch_steps": reached[0] if reached else None,
        "budget_steps": scratch[-1]["step"],
    }
    return tests


def _on_steps(curve: list[dict[str, Any]], predicted: np.ndarray, steps: list[int]) -> np.ndarray:
    """Per-row predictions (rows × the curve's points) on `steps`: each step takes the latest point at or
    before it (the first point before the curve starts; a run stopped early keeps its last)."""
    own = np.array([point["step"] for point in curve])
    columns = np.clip(np.searchsorted(own, steps, side="right") - 1, 0, len(own) - 1)
    return predicted[:, columns]


def curve_intervals(
    pretrained: list[dict[str, Any]],
    scratch: list[dict[str, Any]],
    metric: str,
    classes: int,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, float]] | None:
    """Bootstrap intervals of pretrained − scratch for the start, slope and asymptote of the validation
    curves: each resample draws the validation rows (shared by the two arms of a seed) and, with
    several seeds, the seeds as well. Each run is {curve, labels, predicted}, predicted holding the
    class of every validation row at every point of the curve; None when a run lacks them."""
    runs = [*pretrained, *scratch]
    if any(run.get("predicted") is None for run in runs):
        return None
    steps = sorted({point["step"] for run in runs for point in run["curve"]})
    axis = np.array(steps, dtype=float)
    rng = np.random.default_rng(seed)
    per_seed = []
    for p, s in zip(pretrained, scratch, strict=True):
        labels = p["labels"]
        if len(labels) != len(s["labels"]) or not np.array_equal(labels, s["labels"]):
            return None  # not the same validation rows: nothing to pair
        arms = [_on_steps(run["curve"], run["predicted"], steps) for run in (p, s)]
        n = len(labels)
        differences = np.empty((samples, 3))
        block = max(1, min(samples, BLOCK_CELLS // max(n, 1)))
        for start in range(0, samples, block):
            rows = min(block, samples - start)
            weights = resample_weights(rng, rows, n)
            values = [
                np.stack(
                    [weighted_metric(metric, labels, arm[:, t], weights, classes) for t in range(len(steps))],
                    axis=1,
                )
                for arm in arms
            ]
            mp, ms = curve_measures(axis, values[0]), curve_measures(axis, values[1])
            differences[start : start + rows] = np.stack([mp[k] - ms[k] for k in CURVE_TESTS], axis=1)
        per_seed.append(differences)
    stacked = np.stack(per_seed, axis=1)  # resamples × seeds × tests
    if stacked.shape[1] > 1:
        draw = rng.integers(0, stacked.shape[1], size=stacked.shape[:2])
        stacked = np.take_along_axis(stacked, draw[..., None], axis=1)
    means = stacked.mean(axis=1)
    tail = (1 - confidence) / 2
    return {
        name: {
            "ci_low": float(np.quantile(means[:, i], tail)),
            "ci_high": float(np.quantile(means[:, i], 1 - tail)),
            "confidence": confidence,
        }
        for i, name in enumerate(CURVE_TESTS)
    }


def rows_to_match(sizes: list[int], scratch: list[float], target: float) -> float | None:
    """The fewest training rows at which the scratch curve (linear in log rows between measured sizes)
    reaches `target`; None when it never does within the sizes measured."""
    if scratch[0] >= target:
        return float(sizes[0])
    for (n0, s0), (n1, s1) in pairwise(zip(sizes, scratch, strict=True)):
        if s0 < target <= s1:
            share = (target - s0) / (s1 - s0)
            return float(np.exp(np.log(n0) + share * (np.log(n1) - np.log(n0))))
    return None
