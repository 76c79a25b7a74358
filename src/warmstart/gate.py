"""gate: decide whether the pretrained start beat training from scratch, with a confidence interval.

Both arms predicted the same test examples, so the comparison is paired: the transfer gain
(pretrained − scratch) is re-measured on bootstrap resamples of the test set, each resample drawn
once and applied to both arms (Efron & Tibshirani 1993, ch. 16; Koehn 2004 for NLP). With several
training seeds (`train.seeds`) the gain is the mean over seeds of the paired difference, and each
resample also redraws the seeds with replacement, so the interval holds seed variance as well as
test-set sampling: the Multi-Bootstrap of Sellam et al. 2022 (The MultiBERTs, ICLR), here with the
two arms paired by seed. When seeds matter and there are few, this interval runs narrow (a
bootstrap over k seeds sees (k − 1)/k of their variance); when they barely matter it runs wide, as
it counts some test-row noise twice (bench/seeds_coverage.py measures both). The
registered model is the pretrained run with the best final validation metric; choosing on the
test split would bias the numbers reported for it. The verdict:
positive when the whole interval lies above `gate.min_gain`, negative when it lies below zero
(pretraining hurt: negative transfer), neutral otherwise. Only a positive verdict passes. McNemar's
exact test on the examples where the arms disagree (McNemar 1947; Dietterich 1998 for comparing
classifiers) is reported beside the interval. The learning curves add the three classic questions
of transfer (Torrey & Shavlik 2009): a higher start, a steeper slope, a higher asymptote; and how
many steps scratch needed to reach the pretrained arm's plateau, when it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from warmstart.config import GateConfig
from warmstart.errors import WarmstartError
from warmstart.finetune import SUMMARY_FILE, load_evaluation, load_validation_predictions
from warmstart.metrics import METRICS, all_metrics, weighted_metric
from warmstart.metrics import metric as metric_value
from warmstart.tuning import edge_warning, middle, ranking

RESULT_FILE = "gate_result.json"
# The learning-curve tests and how reports name them (the start's, when a linear probe measured it:
# PROBE_START).
CURVE_TESTS = {
    "start": "start (step 0 of the learning curve)",
    "slope": "slope (normalised area under the curve)",
    "asymptote": "asymptote (mean of the last quarter)",
}
REPORT_FILE = "report.md"
PROBE_START = "start (linear probe on frozen features)"
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


def decide(gain: dict[str, float], min_gain: float) -> tuple[str, str]:
    """The verdict and one sentence saying why."""
    level = f"{gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"
    if gain["ci_low"] > min_gain:
        return (
            "positive",
            f"positive transfer: the {level} of the gain lies above the minimum gain {min_gain:+.4f}",
        )
    if gain["ci_high"] < 0:
        return "negative", f"negative transfer: pretraining hurt, the whole {level} of the gain is below zero"
    return "neutral", (
        f"neutral: the {level} of the gain does not clear the minimum gain {min_gain:+.4f}, "
        f"so the data do not show that pretraining helped"
    )


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


def _confusion(labels: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix.tolist()


def _same_test_rows(first: tuple[dict, Any], second: tuple[dict, Any]) -> bool:
    return first[0]["test_fingerprint"] == second[0]["test_fingerprint"] and first[1].column("id").equals(
        second[1].column("id")
    )


def _arm(summary: dict[str, Any], labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, Any]:
    return {
        **all_metrics(labels, predicted, classes),
        **{
            key: summary[key]
            for key in ("learning_rate", "steps", "train_rows", "train_seconds", "model_sha256")
        },
        "confusion_matrix": _confusion(labels, predicted, classes),
    }


def compare_champion(
    cfg: GateConfig, challenger: tuple[dict, Any], champion_dir: str | Path | None
) -> dict[str, Any] | None:
    """Challenger − champion on the same test rows, with its CI; None when there is no champion."""
    if champion_dir is None:
        return None
    summary = json.loads((Path(champion_dir) / SUMMARY_FILE).read_text())
    if summary.get("version") is None:
        return None
    found = {"version": summary["version"], "comparable": summary["comparable"], "reason": summary["reason"]}
    if not summary["comparable"]:
        return found
    champion = load_evaluation(champion_dir)
    if not _same_test_rows(challenger, champion):
        raise WarmstartError(
            "the champion was evaluated on another test split than the challenger (fingerprint mismatch); "
            "rerun evaluate_champion on this run's ingest output"
        )
    labels = challenger[1].column("label").to_numpy()
    ours, theirs = challenger[1].column("predicted").to_numpy(), champion[1].column("predicted").to_numpy()
    classes = len(challenger[0]["label_names"])
    gain = paired_bootstrap(
        cfg.metric, labels, ours, theirs, classes, cfg.bootstrap_samples, cfg.confidence, cfg.seed + 1
    )
    return {
        **found,
        "model_sha256": summary["model_sha256"],
        "challenger": metric_value(cfg.metric, labels, ours, classes),
        "champion": metric_value(cfg.metric, labels, theirs, classes),
        "gain": gain,
        "non_inferior": gain["ci_low"] > -cfg.champion_tolerance,
        "superior": gain["ci_low"] > 0,
    }


def apply_policy(
    verdict: str, transfer_reason: str, champion: dict[str, Any] | None, tolerance: float
) -> dict[str, Any]:
    """Whether to register and whether to promote to champion, which check decided, and why."""
    if verdict != "positive":
        return {"passed": False, "promote": False, "decided_by": "transfer", "reason": transfer_reason}
    if champion is None:
        return {
            "passed": True,
            "promote": True,
            "decided_by": "transfer",
            "reason": f"{transfer_reason}; there is no champion yet, so this model becomes champion",
        }
    if not champion["comparable"]:
        return {
            "passed": True,
            "promote": False,
            "decided_by": "transfer",
            "reason": f"{transfer_reason}; {champion['reason']}, so the champion alias stays",
        }
    gain = champion["gain"]
    versus = (
        f"challenger − champion (version {champion['version']}) {gain['estimate']:+.4f}, "
        f"{gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"
    )
    if not champion["non_inferior"]:
        return {
            "passed": False,
            "promote": False,
            "decided_by": "champion",
            "reason": f"{transfer_reason}, but the challenger may be worse than the champion by more than "
            f"the tolerance {tolerance:.4f}: {versus}",
        }
    if champion["superior"]:
        return {
            "passed": True,
            "promote": True,
            "decided_by": "champion",
            "reason": f"{transfer_reason}, and the challenger beats the champion: {versus}",
        }
    return {
        "passed": True,
        "promote": False,
        "decided_by": "champion",
        "reason": f"{transfer_reason}; the challenger is not worse than the champion but not shown better "
        f"({versus}), so it is registered and the champion stays",
    }


def _directories(dirs: str | Path | list[str | Path]) -> list[Path]:
    return [Path(d) for d in dirs] if isinstance(dirs, list | tuple) else [Path(dirs)]


class Evaluation(NamedTuple):
    """One finetune run as the gate reads it: its summary, its test predictions, and its per-row
    validation predictions along the learning curve (labels, predicted; None for an older run)."""

    summary: dict[str, Any]
    predictions: Any
    validation: tuple[np.ndarray, np.ndarray] | None = None


def _load(directory: Path) -> Evaluation:
    summary, predictions = load_evaluation(directory)
    return Evaluation(summary, predictions, load_validation_predictions(directory))


def _fraction(summary: dict[str, Any]) -> float:
    return float(summary.get("data_fraction", 1.0))


def finalists(runs: list[Evaluation], metric: str) -> dict[tuple[int, float], Evaluation]:
    """Per (seed, data fraction), the run with the best final validation metric (ties as in
    warmstart.tuning.ranking): when an arm's tuning grid was split over several tasks
    (tune.parallel_trials), each brought its own best rate, and the best of those is the arm's."""
    slots: dict[tuple[int, float], list[Evaluation]] = {}
    for run in runs:
        slots.setdefault((run.summary["seed"], _fraction(run.summary)), []).append(run)
    best: dict[tuple[int, float], Evaluation] = {}
    for slot, candidates in slots.items():
        first = candidates[0].summary
        rates = first.get("tuning", {}).get("grid") or [first["learning_rate"]]
        trials = [
            {
                "learning_rate": run.summary["learning_rate"],
                "validation": {"loss": 0.0, **run.summary["learning_curve"][-1]},
            }
            for run in candidates
        ]
        rows = int(first.get("validation_rows") or 0)
        best[slot] = candidates[ranking(trials, metric, middle(rates), rows)[0]]
    return best


def split_arms(evaluation_dirs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Finetune evaluations of both arms, in any order, as (pretrained, scratch) directories, each read
    from the init its summary names."""
    arms: dict[str, list[Path]] = {"pretrained": [], "scratch": []}
    for directory in _directories(list(evaluation_dirs)):
        init = load_evaluation(directory)[0]["init"]
        if init not in arms:
            raise WarmstartError(
                f"{directory} is an evaluation of init={init!r}, neither pretrained nor scratch"
            )
        arms[init].append(directory)
    return arms["pretrained"], arms["scratch"]


def load_arms(
    pretrained_dirs: str | Path | list[str | Path], scratch_dirs: str | Path | list[str | Path]
) -> dict[str, list[Evaluation]]:
    """Every finetune evaluation of each arm, checked to be of that arm and of one test split."""
    arms = {
        "pretrained": [_load(d) for d in _directories(pretrained_dirs)],
        "scratch": [_load(d) for d in _directories(scratch_dirs)],
    }
    if not arms["pretrained"] or not arms["scratch"]:
        raise WarmstartError("gate needs at least one evaluation of each arm; rerun finetune for both arms")
    for arm, runs in arms.items():
        inits = sorted({run.summary["init"] for run in runs})
        if inits != [arm]:
            raise WarmstartError(
                f"the gate's {arm} input holds evaluations of init={', '.join(inits)}; "
                f"pass the evaluations of the finetune steps with init={arm}"
            )
    first, *others = [*arms["pretrained"], *arms["scratch"]]
    if not all(_same_test_rows(first, other) for other in others):
        raise WarmstartError(
            "the evaluations were made on different test splits (fingerprint mismatch); "
            "rerun every finetune step on the same ingest output"
        )
    return arms


def paired_runs(
    pretrained_dirs: str | Path | list[str | Path] | dict[str, list[Evaluation]],
    scratch_dirs: str | Path | list[str | Path] | None = None,
    metric: str = "accuracy",
    fraction: float = 1.0,
) -> list[tuple[Evaluation, Evaluation]]:
    """Both arms' chosen runs on `fraction` of the training rows, paired by training seed and checked
    to be comparable. Takes the evaluation directories, or what `load_arms` read from them."""
    arms = pretrained_dirs if isinstance(pretrained_dirs, dict) else load_arms(pretrained_dirs, scratch_dirs)
    chosen = {
        arm: {seed: run for (seed, share), run in finalists(runs, metric).items() if share == fraction}
        for arm, runs in arms.items()
    }
    seeds = {
        arm: sorted(run.summary["seed"] for run in runs if _fraction(run.summary) == fraction)
        for arm, runs in arms.items()
    }
    tasks = {
        arm: {
            (run.summary["seed"], run.summary["learning_rate"])
            for run in runs
            if _fraction(run.summary) == fraction
        }
        for arm, runs in arms.items()
    }
    repeated = any(len(tasks[arm]) < len(seeds[arm]) for arm in arms)
    if not chosen["pretrained"] or sorted(chosen["pretrained"]) != sorted(chosen["scratch"]) or repeated:
        raise WarmstartError(
            f"the arms were trained with different seeds (pretrained {seeds['pretrained']}, scratch "
            f"{seeds['scratch']}); rerun both finetune steps with the same train.seeds"
        )
    return [(chosen["pretrained"][seed], chosen["scratch"][seed]) for seed in sorted(chosen["pretrained"])]


def _validation_score(summary: dict[str, Any], metric: str) -> float:
    """The validation metric of the model a run kept: its last learning-curve point."""
    return float(summary["learning_curve"][-1][metric])


def _seed_runs(
    pairs: list[tuple[Evaluation, Evaluation]], labels: np.ndarray, metric: str, classes: int
) -> list[dict[str, Any]]:
    """Per training seed: both arms' test metrics and final validation metric, the gain, McNemar's p."""
    runs = []
    for (p_summary, p_preds, _), (s_summary, s_preds, _) in pairs:
        p_pred, s_pred = p_preds.column("predicted").to_numpy(), s_preds.column("predicted").to_numpy()
        arms = {
            arm: {**all_metrics(labels, predicted, classes), "validation": _validation_score(summary, metric)}
            for arm, summary, predicted in (("pretrained", p_summary, p_pred), ("scratch", s_summary, s_pred))
        }
        runs.append(
            {
                "seed": p_summary["seed"],
                **arms,
                "gain": arms["pretrained"][metric] - arms["scratch"][metric],
                "mcnemar_p": mcnemar(labels, p_pred, s_pred)["p_value"],
            }
        )
    return runs


def decision_rule(cfg: GateConfig, seeds: int) -> str:
    """The rule the verdict follows, in one sentence."""
    gain = (
        f"the {cfg.metric} gain (pretrained − scratch, {cfg.bootstrap_samples} resamples of the test set)"
        if seeds == 1
        else f"the mean {cfg.metric} gain over {seeds} seeds (pretrained − scratch, {cfg.bootstrap_samples} "
        f"resamples of seeds and test examples)"
    )
    return (
        f"Register only if the {cfg.confidence:.0%} paired-bootstrap CI of {gain} lies entirely above "
        f"{cfg.min_gain:+.4f} (a CI entirely below zero is negative transfer) and, when there is a "
        f"champion, the CI of challenger − champion lies above −{cfg.champion_tolerance:.4f}; "
        f"the champion alias moves only when that CI lies above zero or there is no champion."
    )


def gate(
    cfg: GateConfig,
    pretrained_dirs: str | Path | list[str | Path],
    scratch_dirs: str | Path | list[str | Path],
    output_dir: str | Path,
    champion_dir: str | Path | None = None,
    dataset_dir: str | Path | None = None,
    screening_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compare the arms (and the challenger with the champion); write the gate result and its reports
    (Markdown, and HTML with the data card of `dataset_dir` when given).

    Each arm is one finetune evaluation directory, or a list of them: one per training seed, and per
    data fraction and share of the tuning grid when there are several. `screening_dir` holds
    fetch_model's pre-screen of the candidates and its linear probe of the start.
    """
    from warmstart.ingest import load_card
    from warmstart.probe import load_probe
    from warmstart.report import write_report
    from warmstart.screen import load_screening

    arms = load_arms(pretrained_dirs, scratch_dirs)
    pairs = paired_runs(arms, metric=cfg.metric)
    labels = pairs[0][0].predictions.column("label").to_numpy()
    names = pairs[0][0].summary["label_names"]
    classes = len(names)
    card = load_card(dataset_dir) if dataset_dir else None
    predictions = {
        arm: np.stack([pair[i].predictions.column("predicted").to_numpy() for pair in pairs])
        for i, arm in enumerate(("pretrained", "scratch"))
    }
    gain = paired_bootstrap(
        cfg.metric,
        labels,
        predictions["pretrained"],
        predictions["scratch"],
        classes,
        cfg.bootstrap_samples,
        cfg.confidence,
        cfg.seed,
    )
    verdict, transfer_reason = decide(gain, cfg.min_gain)
    found = baselines(cfg, labels, predictions, names, card)
    # The model to register: the pretrained run with the best validation metric (first seed on ties).
    chosen = max(range(len(pairs)), key=lambda i: (_validation_score(pairs[i][0].summary, cfg.metric), -i))
    (p_summary, p_preds, _), (s_summary, s_preds, _) = pairs[chosen]
    p_pred, s_pred = predictions["pretrained"][chosen], predictions["scratch"][chosen]
    champion = compare_champion(cfg, pairs[chosen][0], champion_dir)
    curves = {
        arm: [pair[i].summary["learning_curve"] for pair in pairs]
        for i, arm in enumerate(("pretrained", "scratch"))
    }
    pretrained_curve, scratch_curve = mean_curve(curves["pretrained"]), mean_curve(curves["scratch"])
    intervals = curve_intervals(
        *([_curve_run(pair[i]) for pair in pairs] for i in (0, 1)),
        cfg.metric,
        classes,
        cfg.bootstrap_samples,
        cfg.confidence,
        cfg.seed + 2,
    )
    tests = curve_tests(pretrained_curve, scratch_curve, cfg.metric, intervals)
    probe = load_probe(screening_dir)
    if probe is not None:
        tests["start"] = probe_start(cfg, probe, p_preds, classes)
    seed_values = [pair[0].summary["seed"] for pair in pairs]
    policy = apply_policy(verdict, transfer_reason, champion, cfg.champion_tolerance)
    policy = baseline_policy(policy, found, cfg.require_learned_baseline)
    result = {
        **policy,
        "verdict": verdict,
        "decision_rule": decision_rule(cfg, len(pairs)),
        "metric": cfg.metric,
        "gain": gain,
        "baselines": found,
        "mcnemar": {**mcnemar(labels, p_pred, s_pred), "seed": p_summary["seed"]},
        "seeds": {
            "count": len(pairs),
            "values": seed_values,
            "chosen": p_summary["seed"],
            "chosen_by": f"the best final validation {cfg.metric} of the pretrained arm",
            "runs": _seed_runs(pairs, labels, cfg.metric, classes),
        },
        "tuning": tuning_summary(arms, pairs, cfg.metric),
        "champion": champion,
        "pretrained": {**_arm(p_summary, labels, p_pred, classes), "seed": p_summary["seed"]},
        "scratch": {**_arm(s_summary, labels, s_pred, classes), "seed": s_summary["seed"]},
        "curves": {
            "tests": tests,
            "pretrained": pretrained_curve,
            "scratch": scratch_curve,
            "runs": curves,
        },
        "data_efficiency": data_efficiency(arms, cfg.metric, labels, classes),
        "label_names": names,
        "test_rows": len(labels),
        "test_fingerprint": p_summary["test_fingerprint"],
        "data_fingerprint": p_summary["data_fingerprint"],
        "base_model": p_summary["base_model"],
        "base_model_revision": p_summary.get("base_model_revision"),
        "screening": load_screening(screening_dir),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    (output_dir / REPORT_FILE).write_text(report_markdown(result))
    write_report(result, output_dir, card, cfg.min_gain)
    return result


def _curve_run(run: Evaluation) -> dict[str, Any]:
    labels, predicted = run.validation if run.validation is not None else (None, None)
    return {"curve": run.summary["learning_curve"], "labels": labels, "predicted": predicted}


def probe_start(
    cfg: GateConfig, probe: tuple[dict[str, Any], Any], test_rows: Any, classes: int
) -> dict[str, Any]:
    """The start test from fetch_model's linear probe: pretrained features against the random init's,
    paired on the test rows."""
    record, table = probe
    if not table.column("id").equals(test_rows.column("id")):
        raise WarmstartError(
            "the linear probe was scored on another test split than the finetune runs; rerun the pipeline "
            "from fetch_model on this run's ingest output"
        )
    labels = table.column("label").to_numpy()
    interval = paired_bootstrap(
        cfg.metric,
        labels,
        table.column("pretrained").to_numpy(),
        table.column("random_init").to_numpy(),
        classes,
        cfg.bootstrap_samples,
        cfg.confidence,
        cfg.seed + 3,
    )
    found = finding(interval)
    return {
        "pretrained": record["pretrained"][cfg.metric],
        "scratch": record["random_init"][cfg.metric],
        "difference": interval["estimate"],
        **{k: interval[k] for k in ("ci_low", "ci_high", "confidence")},
        "finding": found,
        "higher": found == "higher",
        "measured_by": PROBE_START,
        "method": record["method"],
        "rows": record["rows"],
    }


def baselines(
    cfg: GateConfig,
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    names: list[str],
    card: dict[str, Any] | None,
) -> dict[str, Any]:
    """The floor, and whether each arm's interval clears it (`learned`)."""
    classes = len(names)
    known = (card or {}).get("label_distribution", {}).get("train", {})
    if set(names) <= set(known):
        train_counts = np.array([known[name] for name in names], float)
    else:  # no data card of these labels given: the test split's own counts
        train_counts = np.bincount(labels, minlength=classes).astype(float)
    found = floor(cfg.metric, labels, train_counts, names)
    for index, arm in enumerate(("pretrained", "scratch")):
        interval = metric_interval(
            cfg.metric,
            labels,
            predictions[arm],
            classes,
            cfg.bootstrap_samples,
            cfg.confidence,
            cfg.seed + 4 + index,
        )
        found[arm] = {**interval, "clears_floor": interval["ci_low"] > found["value"]}
    found["learned"] = found["scratch"]["clears_floor"]
    return found


def floor_sentence(found: dict[str, Any]) -> str:
    """Why the scratch arm's interval does not clear the floor, in words; '' when it does."""
    if found["learned"]:
        return ""
    scratch = found["scratch"]
    return (
        f"the scratch arm did not clear the floor: its {found['metric']} {scratch['estimate']:.4f}, "
        f"{scratch['confidence']:.0%} CI [{scratch['ci_low']:.4f}, {scratch['ci_high']:.4f}], does not lie "
        f"above {found['value']:.4f} ({found['by']}, a model that learned nothing), so the gain is over a "
        f"baseline that learned nothing after its tuning budget"
    )


def baseline_policy(policy: dict[str, Any], found: dict[str, Any], required: bool) -> dict[str, Any]:
    """The policy with the floor said in its reason; not passed when `required` and the baseline did not learn."""
    sentence = floor_sentence(found)
    if not sentence:
        return policy
    if required and policy["passed"]:
        return {
            **policy,
            "passed": False,
            "promote": False,
            "decided_by": "baseline",
            "reason": f"{policy['reason']}; but {sentence}, and gate.require_learned_baseline is true",
        }
    return {**policy, "reason": f"{policy['reason']}; note: {sentence}"}


def tuning_summary(
    arms: dict[str, list[Evaluation]], pairs: list[tuple[Evaluation, Evaluation]], metric: str
) -> dict[str, Any]:
    """Every trial of both arms (seed, data fraction, rate, steps, validation metric), the rates chosen,
    a warning for a chosen rate at the edge of its grid, and what the search cost in optimizer steps."""
    finalist_ids = {id(run.summary) for pair in pairs for run in pair}
    finals = {id(run.summary) for runs in arms.values() for run in finalists(runs, metric).values()}
    trials, arms_out, spent, untuned = [], {}, 0, 0
    for arm, runs in arms.items():
        rates = sorted({rate for run in runs for rate in run.summary.get("tuning", {}).get("grid", [])})
        rates = rates or sorted({run.summary["learning_rate"] for run in runs})
        chosen = {
            str(run.summary["seed"]): run.summary["learning_rate"]
            for pair in pairs
            for run in pair
            if run.summary["init"] == arm
        }
        warnings = sorted(
            {warning for rate in chosen.values() if (warning := edge_warning(arm, rates, rate)) is not None}
        )
        arms_out[arm] = {"grid": rates, "chosen": chosen, "warnings": warnings}
        # One untuned run per seed and data fraction costs the step budget; the search costs every trial's steps.
        untuned += sum(run.summary["steps"] for run in finalists(runs, metric).values())
        for run in runs:
            tuning = run.summary.get("tuning") or {}
            spent += tuning.get("steps", run.summary["steps"])
            for trial in tuning.get("trials", []):
                trials.append(
                    {
                        "arm": arm,
                        "seed": run.summary["seed"],
                        "data_fraction": _fraction(run.summary),
                        "learning_rate": trial["learning_rate"],
                        "steps": trial["steps"],
                        "validation": trial["validation"][metric],
                        "validation_loss": trial["validation"].get("loss"),
                        "chosen": trial["chosen"] and id(run.summary) in finals,
                        "in_verdict": trial["chosen"] and id(run.summary) in finalist_ids,
                    }
                )
    first = next((run.summary.get("tuning") for runs in arms.values() for run in runs), None) or {}
    return {
        "enabled": bool(first.get("enabled", False)),
        "search": f"successive halving (reduction {first.get('reduction', 3)}) on the validation split, "
        f"ranked by {first.get('rule', 'the validation metric')}",
        "arms": arms_out,
        "trials": sorted(trials, key=lambda t: (t["arm"], t["data_fraction"], t["seed"], t["learning_rate"])),
        "warnings": [warning for arm in arms_out.values() for warning in arm["warnings"]],
        "cost": {
            "steps": spent,
            "untuned_steps": untuned,
            "ratio": round(spent / untuned, 3) if untuned else None,
        },
    }


def data_efficiency(
    arms: dict[str, list[Evaluation]], metric: str, labels: np.ndarray, classes: int
) -> dict[str, Any] | None:
    """What pretraining is worth in labelled rows (Hernandez et al., *Scaling Laws for Transfer*, 2021):
    at each training-set size, how many rows the scratch arm needed to match the pretrained arm's test
    metric, interpolated on the scratch curve (log rows), or a bound when it never matched. None when
    only the whole training split was trained on."""
    chosen = {arm: finalists(runs, metric) for arm, runs in arms.items()}
    fractions = sorted({fraction for _, fraction in chosen["pretrained"]})
    if len(fractions) < 2:
        return None
    sizes, values = [], {"pretrained": [], "scratch": []}
    for fraction in fractions:
        for arm in values:
            runs = [run for (_, share), run in chosen[arm].items() if share == fraction]
            values[arm].append(
                float(
                    np.mean(
                        [
                            metric_value(
                                metric, labels, run.predictions.column("predicted").to_numpy(), classes
                            )
                            for run in runs
                        ]
                    )
                )
            )
            if arm == "pretrained":
                sizes.append(int(np.mean([run.summary["train_rows"] for run in runs])))
    points = []
    for size, fraction, target in zip(sizes, fractions, values["pretrained"], strict=True):
        needed = rows_to_match(sizes, values["scratch"], target)
        point = {
            "data_fraction": fraction,
            "train_rows": size,
            "pretrained": target,
            "scratch": values["scratch"][fractions.index(fraction)],
            "scratch_rows_to_match": needed,
        }
        if needed is None:
            point["multiplier"] = None
            point["bound"] = f"more than {max(sizes)} rows ({max(sizes) / size:.3g}×)"
            point["effective_data_transferred"] = None
        else:
            point["multiplier"] = needed / size
            point["bound"] = None
            point["effective_data_transferred"] = needed - size
        points.append(point)
    return {
        "metric": metric,
        "method": "test metric against training rows for both arms (mean over seeds); scratch's rows to match "
        "interpolated linearly in log rows between the sizes trained",
        "points": points,
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


def load_result(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    return json.loads((path / RESULT_FILE if path.is_dir() else path).read_text())


def results_table(result: dict[str, Any]) -> str:
    """Metrics of both arms and the gain with its CI, as a Markdown table."""
    several = result["seeds"]["count"] > 1
    lines = [
        "| | " + " | ".join(METRICS) + " | learning rate | steps | training rows |",
        "|---|" + "---:|" * (len(METRICS) + 3),
    ]
    for arm in ("pretrained", "scratch"):
        row = result[arm]
        label = f"{arm} (seed {row['seed']})" if several else arm
        lines.append(
            f"| {label} | "
            + " | ".join(f"{row[m]:.4f}" for m in METRICS)
            + f" | {row['learning_rate']:g} | {row['steps']} | {row['train_rows']} |"
        )
    lines += ["", gain_sentence(result), "", mcnemar_sentence(result)]
    if result["seeds"]["count"] > 1:
        lines += ["", seeds_table(result)]
    return "\n".join(lines) + "\n"


def gain_sentence(result: dict[str, Any]) -> str:
    gain, seeds = result["gain"], result["seeds"]
    over = f"{result['test_rows']} test examples" + (
        f" and {seeds['count']} seeds ({', '.join(map(str, seeds['values']))})" if seeds["count"] > 1 else ""
    )
    return (
        f"**Transfer gain** ({result['metric']}, pretrained − scratch"
        f"{', mean over seeds' if seeds['count'] > 1 else ''}): {gain['estimate']:+.4f}, "
        f"{gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}] over {over}."
    )


def mcnemar_sentence(result: dict[str, Any]) -> str:
    test, seeds = result["mcnemar"], result["seeds"]
    of = (
        f" (seed {test['seed']}, the seed whose model is registered if the gate passes)"
        if seeds["count"] > 1
        else ""
    )
    return (
        f"**McNemar's exact test** (accuracy{of}): {test['only_pretrained_right']} test examples only the "
        f"pretrained arm got right, {test['only_scratch_right']} only scratch got right; "
        f"p = {test['p_value']:.3g}."
    )


def seeds_table(result: dict[str, Any]) -> str:
    """One row per training seed: both arms' test and validation metric, the gain, McNemar's p."""
    metric, seeds = result["metric"], result["seeds"]
    lines = [
        f"Per seed ({metric}; the {'registered' if result['passed'] else 'candidate'} model is seed "
        f"{seeds['chosen']}, chosen by {seeds['chosen_by']}):",
        "",
        "| seed | pretrained test | scratch test | gain | McNemar p | pretrained validation | scratch validation |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in seeds["runs"]:
        lines.append(
            f"| {run['seed']} | {run['pretrained'][metric]:.4f} | {run['scratch'][metric]:.4f} | "
            f"{run['gain']:+.4f} | {run['mcnemar_p']:.3g} | {run['pretrained']['validation']:.4f} | "
            f"{run['scratch']['validation']:.4f} |"
        )
    return "\n".join(lines)


def champion_lines(result: dict[str, Any]) -> list[str]:
    """The champion check as a report section (nothing when there was no champion)."""
    champion = result.get("champion")
    if not champion:
        return []
    lines = ["## Challenger vs champion", ""]
    if not champion["comparable"]:
        return [*lines, f"Champion version {champion['version']}: {champion['reason']}.", ""]
    gain = champion["gain"]
    return [
        *lines,
        f"Champion version {champion['version']}: {result['metric']} {champion['champion']:.4f}; "
        f"challenger {champion['challenger']:.4f}. Challenger − champion {gain['estimate']:+.4f}, "
        f"{gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]: "
        f"{'non-inferior' if champion['non_inferior'] else 'possibly worse'}, "
        f"{'superior' if champion['superior'] else 'not shown superior'}. Decided by: {result['decided_by']} check.",
        "",
    ]


def screening_lines(result: dict[str, Any]) -> list[str]:
    """The pre-screen's ranking as a report section (nothing when there was none)."""
    screening = result.get("screening")
    if not screening or not screening["screened"]:
        return []
    lines = [
        "## Pre-screen of the candidates",
        "",
        f"{screening['method']}, {screening['rows']} rows; higher is better. Chosen: `{screening['chosen']}`.",
        "",
        "| rank | model | LogME | vs random init |",
        "|---:|---|---:|---|",
    ]
    for rank, entry in enumerate(screening["ranking"], start=1):
        versus = "floor" if entry["floor"] else ("above" if entry["above_floor"] else "below")
        lines.append(f"| {rank} | {entry['source']} | {entry['logme']:.4f} | {versus} |")
    return [*lines, ""]


def match_sentence(match: dict[str, Any]) -> str:
    level = f"the pretrained arm's plateau ({match['pretrained_asymptote']:.4f})"
    if match["scratch_steps"] is None:
        return f"Scratch never reached {level} within the budget of {match['budget_steps']} steps."
    return f"Scratch reached {level} at step {match['scratch_steps']} of {match['budget_steps']}."


def interval_text(row: dict[str, Any]) -> str:
    """'[low, high]' of a test's pretrained − scratch interval, or 'no interval'."""
    return f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]" if "ci_low" in row else "no interval"


def floor_lines(result: dict[str, Any]) -> list[str]:
    """The floor and both arms against it, as a report section."""
    found = result.get("baselines")
    if not found:
        return []
    majority, guess = found["majority_class"], found["stratified_guess"]
    lines = [
        "## Floor: a model that learned nothing",
        "",
        f"Floor ({found['metric']}, test split): {found['value']:.4f}, from the {found['by']}. Majority class "
        f"'{majority['label']}' of the training split: accuracy {majority['accuracy']:.4f}, macro-F1 "
        f"{majority['macro_f1']:.4f}; a guess at the training split's class shares: accuracy "
        f"{guess['accuracy']:.4f}, macro-F1 {guess['macro_f1']:.4f}.",
        "",
        "| arm | " + found["metric"] + " | interval | clears the floor |",
        "|---|---:|---|:---:|",
    ]
    for arm in ("pretrained", "scratch"):
        row = found[arm]
        lines.append(
            f"| {arm} | {row['estimate']:.4f} | [{row['ci_low']:.4f}, {row['ci_high']:.4f}] | "
            f"{'yes' if row['clears_floor'] else 'no'} |"
        )
    return [*lines, ""]


def chosen_rates(tuning: dict[str, Any]) -> str:
    """Each arm's chosen rate per seed, of its grid (the Markdown and the HTML report say it alike)."""
    return "; ".join(
        f"{arm}: {', '.join(f'seed {seed} → {rate:g}' for seed, rate in info['chosen'].items())} of "
        f"[{', '.join(f'{rate:g}' for rate in info['grid'])}]"
        for arm, info in tuning["arms"].items()
    )


def tuning_cost(tuning: dict[str, Any]) -> str:
    """What the search cost, in optimizer steps against untuned runs ('' without a ratio)."""
    cost = tuning["cost"]
    if cost["ratio"] is None:
        return ""
    return (
        f"It trained {cost['steps']} optimizer steps in all, {cost['ratio']:.2f}× the "
        f"{cost['untuned_steps']} of untuned runs."
    )


def tuning_lines(result: dict[str, Any]) -> list[str]:
    """The learning-rate search of both arms as a report section."""
    tuning = result.get("tuning")
    if not tuning or not tuning["trials"]:
        return []
    metric = result["metric"]
    lines = [
        "## Tuning: both arms' learning rates, on the validation split",
        "",
        f"{'Search' if tuning['enabled'] else 'No search (tune.enabled is false)'}: {tuning['search']}. "
        f"Chosen rates: {chosen_rates(tuning)}.",
        "",
    ]
    if tuning_cost(tuning):
        lines += [tuning_cost(tuning), ""]
    lines += [f"**Warning:** {warning}." for warning in tuning["warnings"]]
    lines += [
        "",
        f"| arm | seed | rows | learning rate | steps | validation {metric} | validation loss | chosen |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for trial in tuning["trials"]:
        loss = trial["validation_loss"]
        lines.append(
            f"| {trial['arm']} | {trial['seed']} | {trial['data_fraction']:g} | {trial['learning_rate']:g} | "
            f"{trial['steps']} | {trial['validation']:.4f} | {'' if loss is None else f'{loss:.4f}'} | "
            f"{'yes' if trial['chosen'] else ''} |"
        )
    return [*lines, ""]


def efficiency_sentence(point: dict[str, Any]) -> str:
    """What the pretrained arm's score at one size was worth in scratch's rows."""
    start = f"With {point['train_rows']} rows the pretrained arm scored {point['pretrained']:.4f}; scratch "
    if point["scratch_rows_to_match"] is None:
        return start + f"never matched it within the sizes trained: it would need {point['bound']}."
    if point["multiplier"] <= 1:
        return start + f"matched it with {point['scratch_rows_to_match']:.0f} rows (no more rows needed)."
    return start + (
        f"needed about {point['scratch_rows_to_match']:.0f} rows to match it ({point['multiplier']:.2f}× the rows; "
        f"effective data transferred {point['effective_data_transferred']:.0f} rows)."
    )


def efficiency_lines(result: dict[str, Any]) -> list[str]:
    found = result.get("data_efficiency")
    if not found:
        return []
    lines = [
        "## What pretraining is worth in labelled rows",
        "",
        f"Test {found['metric']} by training rows ({found['method']}).",
        "",
        "| share | training rows | pretrained | scratch | scratch rows to match |",
        "|---:|---:|---:|---:|---:|",
    ]
    for point in found["points"]:
        needed = point["scratch_rows_to_match"]
        lines.append(
            f"| {point['data_fraction']:g} | {point['train_rows']} | {point['pretrained']:.4f} | "
            f"{point['scratch']:.4f} | {point['bound'] if needed is None else f'{needed:.0f}'} |"
        )
    return [*lines, "", *(efficiency_sentence(point) for point in found["points"]), ""]


def report_markdown(result: dict[str, Any]) -> str:
    tests = result["curves"]["tests"]
    count = result["seeds"]["count"]
    mean_of = f", mean of {count} seeds" if count > 1 else ""
    lines = [
        f"# Transfer gate: {result['verdict']} ({'passed' if result['passed'] else 'not passed'})",
        "",
        result["reason"][0].upper() + result["reason"][1:] + ".",
        "",
        f"Decision rule: {result['decision_rule']}",
        "",
        results_table(result),
        *floor_lines(result),
        *tuning_lines(result),
        *screening_lines(result),
        *champion_lines(result),
        f"## Learning curves: start, slope, asymptote (validation {result['metric']}{mean_of}; the start by "
        "linear probe on the test split when measured)",
        "",
        "| test | pretrained | scratch | difference | interval | finding |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name in CURVE_TESTS:
        row = tests[name]
        lines.append(
            f"| {row['measured_by']} | {row['pretrained']:.4f} | {row['scratch']:.4f} | {row['difference']:+.4f} | "
            f"{interval_text(row)} | {row['finding']} |"
        )
    lines += ["", match_sentence(tests["match"]), "", "| step | pretrained | scratch |", "|---:|---:|---:|"]
    scratch_by_step = {p["step"]: p[result["metric"]] for p in result["curves"]["scratch"]}
    for point in result["curves"]["pretrained"]:
        other = scratch_by_step.get(point["step"])
        lines.append(
            f"| {point['step']} | {point[result['metric']]:.4f} | {'' if other is None else f'{other:.4f}'} |"
        )
    lines += ["", *efficiency_lines(result)]
    return "\n".join(lines) + "\n"
