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
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.config import GateConfig
from warmstart.errors import WarmstartError
from warmstart.finetune import SUMMARY_FILE, load_evaluation
from warmstart.metrics import METRICS, all_metrics, weighted_metric
from warmstart.metrics import metric as metric_value

RESULT_FILE = "gate_result.json"
# The learning-curve tests and how reports name them.
CURVE_TESTS = {
    "start": "start (step 0)",
    "slope": "slope (normalised area under the curve)",
    "asymptote": "asymptote (mean of the last quarter)",
}
REPORT_FILE = "report.md"
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
    rng = np.random.default_rng(seed)
    gains = np.empty(samples)
    block = max(1, min(samples, BLOCK_CELLS // max(n, 1)))
    for start in range(0, samples, block):
        rows = min(block, samples - start)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        per_run = np.stack(
            [
                weighted_metric(metric, labels, pretrained[i], weights, classes)
                - weighted_metric(metric, labels, scratch[i], weights, classes)
                for i in range(runs)
            ],
            axis=1,
        )  # (rows, runs)
        if runs > 1:
            per_run = np.take_along_axis(per_run, rng.integers(0, runs, size=(rows, runs)), axis=1)
        gains[start : start + rows] = per_run.mean(axis=1)
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


def curve_tests(
    pretrained: list[dict[str, Any]], scratch: list[dict[str, Any]], metric: str
) -> dict[str, Any]:
    """Higher start (step 0), steeper slope (normalised area under the curve), higher asymptote (mean
    of the last quarter of the points), and `match`: the first evaluated step at which scratch reached
    the pretrained arm's asymptote (None when it never did within the budget)."""

    def measures(curve: list[dict[str, Any]]) -> dict[str, float]:
        steps = np.array([point["step"] for point in curve], dtype=float)
        values = np.array([point[metric] for point in curve], dtype=float)
        span = steps[-1] - steps[0]
        area = float(np.trapezoid(values, steps) / span) if span > 0 else float(values.mean())
        tail = max(1, round(len(values) / 4))
        return {"start": float(values[0]), "slope": area, "asymptote": float(values[-tail:].mean())}

    if not pretrained or not scratch:
        raise WarmstartError("a learning curve is empty; rerun finetune for both arms")
    p, s = measures(pretrained), measures(scratch)
    tests: dict[str, Any] = {
        name: {
            "pretrained": p[name],
            "scratch": s[name],
            "difference": p[name] - s[name],
            "higher": p[name] > s[name],
        }
        for name in ("start", "slope", "asymptote")
    }
    reached = [point["step"] for point in scratch if point[metric] >= p["asymptote"]]
    tests["match"] = {
        "pretrained_asymptote": p["asymptote"],
        "scratch_steps": reached[0] if reached else None,
        "budget_steps": scratch[-1]["step"],
    }
    return tests


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


Evaluation = tuple[dict[str, Any], Any]  # (finetune summary, test predictions table)


def _directories(dirs: str | Path | list[str | Path]) -> list[Path]:
    return [Path(d) for d in dirs] if isinstance(dirs, list | tuple) else [Path(dirs)]


def paired_runs(
    pretrained_dirs: str | Path | list[str | Path], scratch_dirs: str | Path | list[str | Path]
) -> list[tuple[Evaluation, Evaluation]]:
    """The finetune evaluations of both arms, paired by training seed and checked to be comparable."""
    pretrained = [load_evaluation(d) for d in _directories(pretrained_dirs)]
    scratch = [load_evaluation(d) for d in _directories(scratch_dirs)]
    if not pretrained or not scratch:
        raise WarmstartError("gate needs at least one evaluation of each arm; rerun finetune for both arms")
    for arm, runs in (("pretrained", pretrained), ("scratch", scratch)):
        inits = sorted({summary["init"] for summary, _ in runs})
        if inits != [arm]:
            raise WarmstartError(
                f"the gate's {arm} input holds evaluations of init={', '.join(inits)}; "
                f"pass the evaluations of the finetune steps with init={arm}"
            )
    seeds = {
        arm: [summary["seed"] for summary, _ in runs]
        for arm, runs in (("pretrained", pretrained), ("scratch", scratch))
    }
    if sorted(seeds["pretrained"]) != sorted(seeds["scratch"]) or len(set(seeds["pretrained"])) != len(
        pretrained
    ):
        raise WarmstartError(
            f"the arms were trained with different seeds (pretrained {seeds['pretrained']}, scratch "
            f"{seeds['scratch']}); rerun both finetune steps with the same train.seeds"
        )
    if not all(_same_test_rows(pretrained[0], other) for other in [*pretrained[1:], *scratch]):
        raise WarmstartError(
            "the evaluations were made on different test splits (fingerprint mismatch); "
            "rerun every finetune step on the same ingest output"
        )
    by_seed = {summary["seed"]: (summary, table) for summary, table in scratch}
    return [(run, by_seed[run[0]["seed"]]) for run in pretrained]


def _validation_score(summary: dict[str, Any], metric: str) -> float:
    """The validation metric of the model a run kept: its last learning-curve point."""
    return float(summary["learning_curve"][-1][metric])


def _seed_runs(
    pairs: list[tuple[Evaluation, Evaluation]], labels: np.ndarray, metric: str, classes: int
) -> list[dict[str, Any]]:
    """Per training seed: both arms' test metrics and final validation metric, the gain, McNemar's p."""
    runs = []
    for (p_summary, p_preds), (s_summary, s_preds) in pairs:
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

    Each arm is one finetune evaluation directory, or a list of them, one per training seed.
    `screening_dir` holds fetch_model's pre-screen of the candidates, for the reports.
    """
    from warmstart.ingest import load_card
    from warmstart.report import write_report
    from warmstart.screen import load_screening

    pairs = paired_runs(pretrained_dirs, scratch_dirs)
    labels = pairs[0][0][1].column("label").to_numpy()
    names = pairs[0][0][0]["label_names"]
    classes = len(names)
    predictions = {
        arm: np.stack([pair[i][1].column("predicted").to_numpy() for pair in pairs])
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
    # The model to register: the pretrained run with the best validation metric (first seed on ties).
    chosen = max(range(len(pairs)), key=lambda i: (_validation_score(pairs[i][0][0], cfg.metric), -i))
    (p_summary, p_preds), (s_summary, s_preds) = pairs[chosen]
    p_pred, s_pred = predictions["pretrained"][chosen], predictions["scratch"][chosen]
    champion = compare_champion(cfg, pairs[chosen][0], champion_dir)
    curves = {
        arm: [pair[i][0]["learning_curve"] for pair in pairs]
        for i, arm in enumerate(("pretrained", "scratch"))
    }
    pretrained_curve, scratch_curve = mean_curve(curves["pretrained"]), mean_curve(curves["scratch"])
    seed_values = [pair[0][0]["seed"] for pair in pairs]
    result = {
        **apply_policy(verdict, transfer_reason, champion, cfg.champion_tolerance),
        "verdict": verdict,
        "decision_rule": decision_rule(cfg, len(pairs)),
        "metric": cfg.metric,
        "gain": gain,
        "mcnemar": {**mcnemar(labels, p_pred, s_pred), "seed": p_summary["seed"]},
        "seeds": {
            "count": len(pairs),
            "values": seed_values,
            "chosen": p_summary["seed"],
            "chosen_by": f"the best final validation {cfg.metric} of the pretrained arm",
            "runs": _seed_runs(pairs, labels, cfg.metric, classes),
        },
        "champion": champion,
        "pretrained": {**_arm(p_summary, labels, p_pred, classes), "seed": p_summary["seed"]},
        "scratch": {**_arm(s_summary, labels, s_pred, classes), "seed": s_summary["seed"]},
        "curves": {
            "tests": curve_tests(pretrained_curve, scratch_curve, cfg.metric),
            "pretrained": pretrained_curve,
            "scratch": scratch_curve,
            "runs": curves,
        },
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
    write_report(result, output_dir, load_card(dataset_dir) if dataset_dir else None, cfg.min_gain)
    return result


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
        *screening_lines(result),
        *champion_lines(result),
        f"## Learning curves (validation {result['metric']}{mean_of})",
        "",
        "| test | pretrained | scratch | difference | pretrained higher |",
        "|---|---:|---:|---:|:---:|",
    ]
    for name, label in CURVE_TESTS.items():
        row = tests[name]
        lines.append(
            f"| {label} | {row['pretrained']:.4f} | {row['scratch']:.4f} | {row['difference']:+.4f} | "
            f"{'yes' if row['higher'] else 'no'} |"
        )
    lines += ["", match_sentence(tests["match"]), "", "| step | pretrained | scratch |", "|---:|---:|---:|"]
    scratch_by_step = {p["step"]: p[result["metric"]] for p in result["curves"]["scratch"]}
    for point in result["curves"]["pretrained"]:
        other = scratch_by_step.get(point["step"])
        lines.append(
            f"| {point['step']} | {point[result['metric']]:.4f} | {'' if other is None else f'{other:.4f}'} |"
        )
    return "\n".join(lines) + "\n"
