"""The gate's result in words: the Markdown report (gate's `report.md` and the KFP UI's Markdown) and the
sentences and tables the model card and the HTML report reuse. Reads only the gate's result dict.
"""

from __future__ import annotations

from typing import Any

from warmstart.gate.stats import CURVE_TESTS
from warmstart.metrics import METRICS


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
    if augmented := augmentation_sentence(result):
        lines += ["", augmented]
    if result["seeds"]["count"] > 1:
        lines += ["", seeds_table(result)]
    return "\n".join(lines) + "\n"


def augmentation_sentence(result: dict[str, Any]) -> str:
    """What train.augment did to the training rows of both arms ('' when it was off)."""
    kinds = {result[arm].get("augmentation") for arm in ("pretrained", "scratch")}
    if kinds == {None}:
        return ""
    if len(kinds) > 1:  # each arm trained by its own config: say what each had
        return "Augmentation differed between the arms: " + "; ".join(
            f"{arm}: {result[arm].get('augmentation') or 'none'}" for arm in ("pretrained", "scratch")
        )
    return (
        f"Training rows of both arms were augmented the same way (seeded by seed, epoch and row; validation and "
        f"test rows never): {kinds.pop()}."
    )


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
