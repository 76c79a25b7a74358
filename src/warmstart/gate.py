"""gate: decide whether the pretrained start beat training from scratch, with a confidence interval.

Both arms predicted the same test examples, so the comparison is paired: the transfer gain
(pretrained − scratch) is re-measured on bootstrap resamples of the test set, each resample drawn
once and applied to both arms (Efron & Tibshirani 1993, ch. 16; Koehn 2004 for NLP). The verdict:
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
) -> dict[str, float]:
    """Gain estimate and percentile interval, every resample shared by both arms (vectorised)."""
    n = len(labels)
    rng = np.random.default_rng(seed)
    gains = np.empty(samples)
    block = max(1, min(samples, BLOCK_CELLS // max(n, 1)))
    for start in range(0, samples, block):
        rows = min(block, samples - start)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        weights = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        gains[start : start + rows] = weighted_metric(
            metric, labels, pretrained, weights, classes
        ) - weighted_metric(metric, labels, scratch, weights, classes)
    tail = (1 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    estimate = metric_value(metric, labels, pretrained, classes) - metric_value(
        metric, labels, scratch, classes
    )
    counts, edges = _histogram(gains, step=1 / n if metric == "accuracy" else None)
    return {
        "estimate": float(estimate),
        "ci_low": float(low),
        "ci_high": float(high),
        "confidence": confidence,
        "bootstrap_samples": samples,
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


def gate(
    cfg: GateConfig,
    pretrained_dir: str | Path,
    scratch_dir: str | Path,
    output_dir: str | Path,
    champion_dir: str | Path | None = None,
    dataset_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Compare the arms (and the challenger with the champion); write the gate result and its reports
    (Markdown, and HTML with the data card of `dataset_dir` when given)."""
    from warmstart.ingest import load_card
    from warmstart.report import write_report

    pretrained, scratch = load_evaluation(pretrained_dir), load_evaluation(scratch_dir)
    (p_summary, p_preds), (s_summary, s_preds) = pretrained, scratch
    if (p_summary["init"], s_summary["init"]) != ("pretrained", "scratch"):
        raise WarmstartError(
            f"gate needs a pretrained and a scratch evaluation, got {p_summary['init']} and {s_summary['init']}"
        )
    if not _same_test_rows(pretrained, scratch):
        raise WarmstartError(
            "the two evaluations were made on different test splits (fingerprint mismatch); "
            "rerun both finetune steps on the same ingest output"
        )
    labels = p_preds.column("label").to_numpy()
    p_pred, s_pred = p_preds.column("predicted").to_numpy(), s_preds.column("predicted").to_numpy()
    names = p_summary["label_names"]
    classes = len(names)
    gain = paired_bootstrap(
        cfg.metric, labels, p_pred, s_pred, classes, cfg.bootstrap_samples, cfg.confidence, cfg.seed
    )
    verdict, transfer_reason = decide(gain, cfg.min_gain)
    champion = compare_champion(cfg, pretrained, champion_dir)
    result = {
        **apply_policy(verdict, transfer_reason, champion, cfg.champion_tolerance),
        "verdict": verdict,
        "decision_rule": (
            f"Register only if the {cfg.confidence:.0%} paired-bootstrap CI of the {cfg.metric} gain "
            f"(pretrained − scratch, {cfg.bootstrap_samples} resamples of the test set) lies entirely above "
            f"{cfg.min_gain:+.4f} (a CI entirely below zero is negative transfer) and, when there is a "
            f"champion, the CI of challenger − champion lies above −{cfg.champion_tolerance:.4f}; "
            f"the champion alias moves only when that CI lies above zero or there is no champion."
        ),
        "metric": cfg.metric,
        "gain": gain,
        "mcnemar": mcnemar(labels, p_pred, s_pred),
        "champion": champion,
        "pretrained": _arm(p_summary, labels, p_pred, classes),
        "scratch": _arm(s_summary, labels, s_pred, classes),
        "curves": {
            "tests": curve_tests(p_summary["learning_curve"], s_summary["learning_curve"], cfg.metric),
            "pretrained": p_summary["learning_curve"],
            "scratch": s_summary["learning_curve"],
        },
        "label_names": names,
        "test_rows": len(labels),
        "test_fingerprint": p_summary["test_fingerprint"],
        "data_fingerprint": p_summary["data_fingerprint"],
        "base_model": p_summary["base_model"],
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
    gain = result["gain"]
    lines = [
        "| | " + " | ".join(METRICS) + " | learning rate | steps | training rows |",
        "|---|" + "---:|" * (len(METRICS) + 3),
    ]
    for arm in ("pretrained", "scratch"):
        row = result[arm]
        lines.append(
            f"| {arm} | "
            + " | ".join(f"{row[m]:.4f}" for m in METRICS)
            + f" | {row['learning_rate']:g} | {row['steps']} | {row['train_rows']} |"
        )
    lines += [
        "",
        f"**Transfer gain** ({result['metric']}, pretrained − scratch): {gain['estimate']:+.4f}, "
        f"{gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}] "
        f"over {result['test_rows']} test examples.",
    ]
    if "mcnemar" in result:
        test = result["mcnemar"]
        lines += [
            "",
            f"**McNemar's exact test** (accuracy): {test['only_pretrained_right']} test examples only the "
            f"pretrained arm got right, {test['only_scratch_right']} only scratch got right; "
            f"p = {test['p_value']:.3g}.",
        ]
    return "\n".join(lines) + "\n"


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


def match_sentence(match: dict[str, Any]) -> str:
    level = f"the pretrained arm's plateau ({match['pretrained_asymptote']:.4f})"
    if match["scratch_steps"] is None:
        return f"Scratch never reached {level} within the budget of {match['budget_steps']} steps."
    return f"Scratch reached {level} at step {match['scratch_steps']} of {match['budget_steps']}."


def report_markdown(result: dict[str, Any]) -> str:
    tests = result["curves"]["tests"]
    lines = [
        f"# Transfer gate: {result['verdict']} ({'passed' if result['passed'] else 'not passed'})",
        "",
        result["reason"][0].upper() + result["reason"][1:] + ".",
        "",
        f"Decision rule: {result['decision_rule']}",
        "",
        results_table(result),
        *champion_lines(result),
        f"## Learning curves (validation {result['metric']})",
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
