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
from typing import Any, NamedTuple

import numpy as np

from warmstart.artifacts import (
    REPORT_FILE,
    RESULT_FILE,
    load_evaluation,
    load_summary,
    load_validation_predictions,
)
from warmstart.config import GateConfig
from warmstart.errors import WarmstartError
from warmstart.finetune.tuning import edge_warning, middle, ranking
from warmstart.gate.report_text import report_markdown
from warmstart.gate.stats import (
    curve_intervals,
    curve_tests,
    finding,
    floor,
    mcnemar,
    mean_curve,
    metric_interval,
    paired_bootstrap,
    rows_to_match,
)
from warmstart.metrics import all_metrics
from warmstart.metrics import metric as metric_value

PROBE_START = "start (linear probe on frozen features)"


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
        "augmentation": summary.get("augmentation"),
        "confusion_matrix": _confusion(labels, predicted, classes),
    }


def compare_champion(
    cfg: GateConfig, challenger: tuple[dict, Any], champion_dir: str | Path | None
) -> dict[str, Any] | None:
    """Challenger − champion on the same test rows, with its CI; None when there is no champion."""
    if champion_dir is None:
        return None
    summary = load_summary(champion_dir)
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
    warmstart.finetune.tuning.ranking): when an arm's tuning grid was split over several tasks
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
        init = load_summary(directory)["init"]  # the summary alone: the predictions are read once, later
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
        f"{cfg.min_gain:+.4f} (a CI entirely below zero is negative transfer), the fine-tuned model's own CI "
        f"lies above the floor of a model that learned nothing, and, when there is a "
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
    from warmstart.artifacts import load_card, load_screening
    from warmstart.gate.report import write_report

    arms = load_arms(pretrained_dirs, scratch_dirs)
    pairs = paired_runs(arms, metric=cfg.metric)
    test = _TestSplit.of(pairs, load_card(dataset_dir) if dataset_dir else None)
    gain = paired_bootstrap(
        cfg.metric,
        test.labels,
        test.predictions["pretrained"],
        test.predictions["scratch"],
        test.classes,
        cfg.bootstrap_samples,
        cfg.confidence,
        cfg.seed,
    )
    verdict, transfer_reason = decide(gain, cfg.min_gain)
    found = baselines(cfg, test.labels, test.predictions, test.names, test.card)
    # The model to register: the pretrained run with the best validation metric (first seed on ties).
    chosen = max(range(len(pairs)), key=lambda i: (_validation_score(pairs[i][0].summary, cfg.metric), -i))
    champion = compare_champion(cfg, pairs[chosen][0], champion_dir)
    policy = apply_policy(verdict, transfer_reason, champion, cfg.champion_tolerance)
    result = {
        **baseline_policy(policy, found, cfg.require_learned_baseline),
        "verdict": verdict,
        "decision_rule": decision_rule(cfg, len(pairs)),
        "metric": cfg.metric,
        "gain": gain,
        "baselines": found,
        **_chosen_runs(pairs, chosen, test, cfg.metric),
        "tuning": tuning_summary(arms, pairs, cfg.metric),
        "champion": champion,
        "curves": _curves(cfg, pairs, chosen, test, screening_dir),
        "data_efficiency": data_efficiency(arms, cfg.metric, test.labels, test.classes),
        "label_names": test.names,
        "test_rows": len(test.labels),
        **_provenance(pairs[chosen][0].summary),
        "screening": load_screening(screening_dir),
    }
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    (output_dir / REPORT_FILE).write_text(report_markdown(result))
    write_report(result, output_dir, test.card, cfg.min_gain)
    return result


class _TestSplit(NamedTuple):
    """The test split as the gate compares on it: labels, class names, every run's predictions per arm
    (runs × rows), and the data card when there is one."""

    labels: np.ndarray
    names: list[str]
    predictions: dict[str, np.ndarray]
    card: dict[str, Any] | None

    @property
    def classes(self) -> int:
        return len(self.names)

    @classmethod
    def of(cls, pairs: list[tuple[Evaluation, Evaluation]], card: dict[str, Any] | None) -> _TestSplit:
        first = pairs[0][0]
        predictions = {
            arm: np.stack([pair[i].predictions.column("predicted").to_numpy() for pair in pairs])
            for i, arm in enumerate(("pretrained", "scratch"))
        }
        return cls(
            first.predictions.column("label").to_numpy(), first.summary["label_names"], predictions, card
        )


def _chosen_runs(
    pairs: list[tuple[Evaluation, Evaluation]], chosen: int, test: _TestSplit, metric: str
) -> dict[str, Any]:
    """Each arm's chosen run on the test split, McNemar's test between them, and the seeds behind it."""
    (p_summary, _, _), (s_summary, _, _) = pairs[chosen]
    p_pred, s_pred = test.predictions["pretrained"][chosen], test.predictions["scratch"][chosen]
    return {
        "mcnemar": {**mcnemar(test.labels, p_pred, s_pred), "seed": p_summary["seed"]},
        "seeds": {
            "count": len(pairs),
            "values": [pair[0].summary["seed"] for pair in pairs],
            "chosen": p_summary["seed"],
            "chosen_by": f"the best final validation {metric} of the pretrained arm",
            "runs": _seed_runs(pairs, test.labels, metric, test.classes),
        },
        "pretrained": {**_arm(p_summary, test.labels, p_pred, test.classes), "seed": p_summary["seed"]},
        "scratch": {**_arm(s_summary, test.labels, s_pred, test.classes), "seed": s_summary["seed"]},
    }


def _curves(
    cfg: GateConfig,
    pairs: list[tuple[Evaluation, Evaluation]],
    chosen: int,
    test: _TestSplit,
    screening_dir: str | Path | None,
) -> dict[str, Any]:
    """Both arms' learning curves (every run's and their mean) and the transfer tests on them, with the
    start measured by the linear probe when fetch_model ran one."""
    from warmstart.artifacts import load_probe

    curves = {
        arm: [pair[i].summary["learning_curve"] for pair in pairs]
        for i, arm in enumerate(("pretrained", "scratch"))
    }
    pretrained_curve, scratch_curve = mean_curve(curves["pretrained"]), mean_curve(curves["scratch"])
    intervals = curve_intervals(
        *([_curve_run(pair[i]) for pair in pairs] for i in (0, 1)),
        cfg.metric,
        test.classes,
        cfg.bootstrap_samples,
        cfg.confidence,
        cfg.seed + 2,
    )
    tests = curve_tests(pretrained_curve, scratch_curve, cfg.metric, intervals)
    probe = load_probe(screening_dir)
    if probe is not None:
        tests["start"] = probe_start(cfg, probe, pairs[chosen][0].predictions, test.classes)
    return {"tests": tests, "pretrained": pretrained_curve, "scratch": scratch_curve, "runs": curves}


def _provenance(summary: dict[str, Any]) -> dict[str, Any]:
    """Which data and which base model the compared runs trained on."""
    return {
        "test_fingerprint": summary["test_fingerprint"],
        "data_fingerprint": summary["data_fingerprint"],
        "base_model": summary["base_model"],
        "base_model_revision": summary.get("base_model_revision"),
    }


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
    """The policy with the floor said in its reason; not passed when the fine-tuned model itself does
    not clear the floor (whatever it gained over scratch, it is no better than a model that learned
    nothing), nor when `required` and the baseline did not learn."""
    pretrained = found["pretrained"]
    if policy["passed"] and not pretrained["clears_floor"]:
        return {
            **policy,
            "passed": False,
            "promote": False,
            "decided_by": "floor",
            "reason": f"{policy['reason']}; but the fine-tuned model does not clear the floor: its "
            f"{found['metric']} {pretrained['estimate']:.4f}, {pretrained['confidence']:.0%} CI "
            f"[{pretrained['ci_low']:.4f}, {pretrained['ci_high']:.4f}], does not lie above {found['value']:.4f} "
            f"({found['by']}, a model that learned nothing), so it is not registered",
        }
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
