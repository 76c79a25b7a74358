"""report: the gate's result as one self-contained HTML page that a person reads at a glance.

The verdict and the decision rule come first; then the numbers, the learning curves of both arms,
the bootstrap distribution of the gain (its interval and the zero line marked), both confusion
matrices, the data card and the lineage. Plots are drawn with matplotlib and embedded as PNG data
URIs, so the page needs no network, no script and no other file: it can be mailed, attached to a
KFP run as an HTML artifact, or opened from disk.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from warmstart.artifacts import HTML_FILE
from warmstart.errors import WarmstartError
from warmstart.gate.report_text import (
    augmentation_sentence,
    chosen_rates,
    efficiency_sentence,
    interval_text,
    match_sentence,
    tuning_cost,
)
from warmstart.gate.stats import CURVE_TESTS, aligned_curves
from warmstart.ingest.card import audio_facts

# One colour per arm, everywhere.
COLORS = {"pretrained": "#1f66b3", "scratch": "#e07b00", "champion": "#6a3d9a"}
VERDICT_COLORS = {"positive": "#1b7f3b", "neutral": "#6b6b6b", "negative": "#b3261e"}


def _png(figure: Any) -> str:
    """A matplotlib figure as a data URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display in a pod
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def curves_figure(result: dict[str, Any]) -> str:
    """Validation metric over the training budget, both arms, step 0 included. With several seeds:
    the mean as a line, every seed as a faint line, and the band between the lowest and highest seed."""
    plt = _pyplot()
    metric = result["metric"]
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    for arm in ("pretrained", "scratch"):
        runs = result["curves"]["runs"][arm]
        steps, values = aligned_curves(runs, metric)
        several = len(runs) > 1
        if several:
            axes.fill_between(
                steps, values.min(axis=0), values.max(axis=0), color=COLORS[arm], alpha=0.15, linewidth=0
            )
            for row in values:
                axes.plot(steps, row, color=COLORS[arm], linewidth=0.8, alpha=0.45)
        axes.plot(
            steps,
            values.mean(axis=0),
            marker="o",
            markersize=4,
            linewidth=2,
            color=COLORS[arm],
            label=f"{arm} (mean of {len(runs)} seeds, band: lowest to highest)" if several else arm,
        )
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(f"validation {metric}")
    axes.set_title("Learning curves")
    axes.grid(alpha=0.3)
    if len(result["curves"]["runs"]["pretrained"]) > 1:  # long labels: below the plot, off the curves
        axes.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    else:
        axes.legend(frameon=False)
    return _png(figure)


def gain_figure(result: dict[str, Any], min_gain: float = 0.0) -> str:
    """The bootstrap distribution of the gain, with its interval, the estimate and zero marked."""
    plt = _pyplot()
    gain = result["gain"]
    distribution = gain["distribution"]
    edges, counts = distribution["edges"], distribution["counts"]
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    axes.bar(edges[:-1], counts, width=widths, align="edge", color=COLORS["pretrained"], alpha=0.55)
    axes.axvspan(gain["ci_low"], gain["ci_high"], color=COLORS["pretrained"], alpha=0.12, label="CI")
    axes.axvline(gain["estimate"], color=COLORS["pretrained"], linewidth=2, label="estimate")
    axes.axvline(0, color="black", linewidth=1.5, linestyle="--", label="no gain")
    if min_gain > 0:
        axes.axvline(min_gain, color="#1b7f3b", linewidth=1.2, linestyle=":", label="minimum gain")
    axes.set_xlabel(f"gain in {result['metric']} (pretrained − scratch)")
    axes.set_ylabel("bootstrap resamples")
    axes.set_title(
        f"Gain: {gain['estimate']:+.4f}, {gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"
    )
    axes.legend(frameon=False, fontsize=8)
    return _png(figure)


def confusion_figure(result: dict[str, Any]) -> str:
    """Both arms' confusion matrices side by side, rows = true label, columns = predicted."""
    import numpy as np

    plt = _pyplot()
    names = result["label_names"]
    size = min(9.0, 2.6 + 0.45 * len(names))
    figure, axes = plt.subplots(1, 2, figsize=(2 * size, size * 0.85))
    for axis, arm in zip(axes, ("pretrained", "scratch"), strict=True):
        matrix = np.asarray(result[arm]["confusion_matrix"])
        colormap = "Blues" if arm == "pretrained" else "Oranges"
        axis.imshow(matrix, cmap=colormap, vmin=0, vmax=max(1, matrix.max()))
        axis.set_title(f"{arm}: {result['metric']} {result[arm][result['metric']]:.4f}", color=COLORS[arm])
        axis.set_xticks(range(len(names)), names, rotation=45 if len(names) > 3 else 0, ha="right")
        axis.set_yticks(range(len(names)), names)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        axis.spines[:].set_visible(False)
        for (row, column), count in np.ndenumerate(matrix):
            dark = count > matrix.max() * 0.6
            axis.text(column, row, str(count), ha="center", va="center", color="white" if dark else "black")
    figure.tight_layout()
    return _png(figure)


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if i >= numeric_from else ''}>{html.escape(str(value))}</td>"
            for i, value in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _seeds(result: dict[str, Any]) -> str:
    """Per training seed: test and validation metric of both arms, the gain and McNemar's p."""
    metric, seeds = result["metric"], result["seeds"]
    rows = [
        [
            run["seed"],
            f"{run['pretrained'][metric]:.4f}",
            f"{run['scratch'][metric]:.4f}",
            f"{run['gain']:+.4f}",
            f"{run['mcnemar_p']:.3g}",
            f"{run['pretrained']['validation']:.4f}",
            f"{run['scratch']['validation']:.4f}",
        ]
        for run in seeds["runs"]
    ]
    header = [
        "seed",
        "pretrained test",
        "scratch test",
        "gain",
        "McNemar p",
        "pretrained validation",
        "scratch validation",
    ]
    return (
        f"<p>Per seed ({html.escape(metric)}). The {'registered' if result['passed'] else 'candidate'} model "
        f"is seed {seeds['chosen']}, chosen by "
        f"{html.escape(seeds['chosen_by'])}.</p>" + _table(header, rows, numeric_from=0)
    )


def _screening(result: dict[str, Any]) -> str:
    screening = result.get("screening")
    if not screening or not screening["screened"]:
        return "<p>No pre-screen: model.candidates was empty, so model.source was fine-tuned.</p>"
    rows = [
        [
            rank,
            entry["source"] + (" (chosen)" if entry["chosen"] else ""),
            f"{entry['logme']:.4f}",
            "floor" if entry["floor"] else ("above" if entry["above_floor"] else "below"),
            f"{entry['seconds']:.1f}",
        ]
        for rank, entry in enumerate(screening["ranking"], start=1)
    ]
    return (
        f"<p>{html.escape(screening['method'])}, {screening['rows']} rows; higher is better. The chosen model "
        f"was fine-tuned; a model below the random-init floor shows no sign of transfer.</p>"
        + _table(["rank", "model", "LogME", "vs random init", "seconds"], rows, numeric_from=2)
    )


def _data_card(card: dict[str, Any] | None) -> str:
    if not card:
        return "<p>No data card was given to the gate.</p>"
    names = card["label_names"]
    rows = [
        [split, card["rows"][split], *(card["label_distribution"][split][n] for n in names)]
        for split in ("train", "validation", "test")
    ]
    removed = card["removed"]
    facts = [
        ("source", card["source"] + (f" (test: {card['test_source']})" if card.get("test_source") else "")),
        ("kind", f"{card.get('modality', 'text')}, format {card['format']}"),
        *([("audio", audio_facts(card))] if card.get("audio") else []),
        ("fingerprint", card["fingerprint"]),
        (
            "removed",
            f"{removed['empty']} empty, {removed.get('unreadable', 0)} unreadable, {removed['duplicates']} duplicate; "
            f"{removed['leakage']['test']} test and {removed['leakage']['validation']} validation rows also in training",
        ),
    ]
    return _facts(facts) + _table(["split", "rows", *(f"label {n}" for n in names)], rows)


def _start_note(start: dict[str, Any]) -> str:
    if "method" in start:
        rows = start["rows"]
        return (
            f"The start is a {start['method']} ({rows['train']} training, {rows['validation']} validation, "
            f"{rows['test']} test rows); scratch's is the architecture's random init."
        )
    return "The start is step 0 of the learning curves, where both arms' classification layers are untrained."


def _floor(result: dict[str, Any]) -> str:
    found = result.get("baselines")
    if not found:
        return "<p>No floor was computed.</p>"
    majority, guess = found["majority_class"], found["stratified_guess"]
    rows = [
        [
            arm,
            f"{found[arm]['estimate']:.4f}",
            f"[{found[arm]['ci_low']:.4f}, {found[arm]['ci_high']:.4f}]",
            "yes" if found[arm]["clears_floor"] else "no",
        ]
        for arm in ("pretrained", "scratch")
    ]
    verdict = (
        "The scratch arm learned: its interval lies above the floor."
        if found["learned"]
        else "The scratch arm did not clear the floor: the gain is over a baseline that learned nothing "
        "after its tuning budget."
    )
    return (
        f"<p>Floor ({html.escape(found['metric'])}, test split): <b>{found['value']:.4f}</b>, from the "
        f"{html.escape(found['by'])}. Majority class '{html.escape(majority['label'])}' of the training split: "
        f"accuracy {majority['accuracy']:.4f}, macro-F1 {majority['macro_f1']:.4f}; a guess at the training "
        f"split's class shares: accuracy {guess['accuracy']:.4f}, macro-F1 {guess['macro_f1']:.4f}. "
        f"{verdict}</p>" + _table(["arm", found["metric"], "interval", "clears the floor"], rows)
    )


def _tuning(result: dict[str, Any]) -> str:
    tuning = result.get("tuning")
    if not tuning or not tuning["trials"]:
        return "<p>No tuning record (an evaluation from an older warmstart).</p>"
    metric = result["metric"]
    chosen = chosen_rates(tuning)
    spent = f" {tuning_cost(tuning)}" if tuning_cost(tuning) else ""
    head = (
        f"<p>{'Both arms searched their own grids on the same step budget' if tuning['enabled'] else 'tune.enabled is false: each arm trained at its one rate'}: "
        f"{html.escape(tuning['search'])}. Chosen rates: {html.escape(chosen)}.{spent}</p>"
    )
    warnings = "".join(f'<p class="warning">Warning: {html.escape(w)}.</p>' for w in tuning["warnings"])
    rows = [
        [
            trial["arm"],
            trial["seed"],
            f"{trial['data_fraction']:g}",
            f"{trial['learning_rate']:g}",
            trial["steps"],
            f"{trial['validation']:.4f}",
            "" if trial["validation_loss"] is None else f"{trial['validation_loss']:.4f}",
            "chosen" if trial["chosen"] else "",
        ]
        for trial in tuning["trials"]
    ]
    header = [
        "arm",
        "seed",
        "share of rows",
        "learning rate",
        "steps",
        f"validation {metric}",
        "validation loss",
        "",
    ]
    return head + warnings + _table(header, rows, numeric_from=1)


def efficiency_figure(result: dict[str, Any]) -> str:
    """Test metric against training rows (log scale), both arms."""
    plt = _pyplot()
    found = result["data_efficiency"]
    figure, axes = plt.subplots(figsize=(6.4, 3.6))
    rows = [point["train_rows"] for point in found["points"]]
    for arm in ("pretrained", "scratch"):
        axes.plot(
            rows, [p[arm] for p in found["points"]], marker="o", color=COLORS[arm], linewidth=2, label=arm
        )
    axes.set_xscale("log")
    axes.set_xlabel("training rows (log scale)")
    axes.set_ylabel(f"test {found['metric']}")
    axes.set_title("Data efficiency")
    axes.grid(alpha=0.3, which="both")
    axes.legend(frameon=False)
    return _png(figure)


def _efficiency(result: dict[str, Any]) -> str:
    found = result.get("data_efficiency")
    if not found:
        return ""
    rows = [
        [
            f"{p['data_fraction']:g}",
            p["train_rows"],
            f"{p['pretrained']:.4f}",
            f"{p['scratch']:.4f}",
            p["bound"] if p["scratch_rows_to_match"] is None else f"{p['scratch_rows_to_match']:.0f}",
        ]
        for p in found["points"]
    ]
    sentences = "".join(f"<li>{html.escape(efficiency_sentence(p))}</li>" for p in found["points"])
    return (
        '<h2 id="efficiency-section">What pretraining is worth in labelled rows</h2>'
        f"<p>{html.escape(found['method'])} (Hernandez et al., Scaling Laws for Transfer, 2021).</p>"
        f'<figure><img id="efficiency" alt="test metric against training rows" src="{efficiency_figure(result)}"></figure>'
        + _table(["share", "training rows", "pretrained", "scratch", "scratch rows to match"], rows)
        + f"<ul>{sentences}</ul>"
    )


def _facts(facts: list[tuple[str, Any]]) -> str:
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>"


def _champion(result: dict[str, Any]) -> str:
    champion = result.get("champion")
    if not champion:
        return "<p>The registry had no champion to compare with.</p>"
    if not champion["comparable"]:
        return f"<p>Champion version {champion['version']}: {html.escape(champion['reason'])}.</p>"
    gain = champion["gain"]
    return (
        f"<p>Champion version {champion['version']}: {result['metric']} {champion['champion']:.4f}, challenger "
        f"{champion['challenger']:.4f}. Challenger − champion {gain['estimate']:+.4f}, {gain['confidence']:.0%} CI "
        f"[{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]: "
        f"{'not worse' if champion['non_inferior'] else 'possibly worse'}, "
        f"{'better' if champion['superior'] else 'not shown better'}.</p>"
    )


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d1d1f;margin:0;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 6px} h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #e3e5e8;padding-bottom:4px}
.verdict{display:inline-block;color:#fff;border-radius:6px;padding:2px 10px;font-weight:600}
.rule{color:#4a4a4f;font-size:13px;margin-top:4px}
.grid{display:flex;flex-wrap:wrap;gap:16px} .grid figure{margin:0;flex:1 1 460px}
figure img{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;font-size:14px;margin:6px 0} th,td{padding:4px 10px;border-bottom:1px solid #e3e5e8;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:14px}
.warning{color:#8a5300;font-weight:600} dt{color:#6b6b70} dd{margin:0;word-break:break-all} .pretrained{color:#1f66b3;font-weight:600} .scratch{color:#e07b00;font-weight:600}
"""


def _arm_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Each arm's metrics, chosen rate, steps and training rows, as table rows."""
    several = result["seeds"]["count"] > 1
    return [
        [
            f"{arm} (seed {result[arm]['seed']})" if several else arm,
            *(f"{result[arm][m]:.4f}" for m in ("accuracy", "macro_f1")),
            f"{result[arm]['learning_rate']:g}",
            result[arm]["steps"],
            result[arm]["train_rows"],
        ]
        for arm in ("pretrained", "scratch")
    ]


def _curve_rows(tests: dict[str, Any]) -> list[list[Any]]:
    """The start, slope and asymptote tests with their intervals, as table rows."""
    return [
        [
            tests[name]["measured_by"],
            f"{tests[name]['pretrained']:.4f}",
            f"{tests[name]['scratch']:.4f}",
            f"{tests[name]['difference']:+.4f}",
            interval_text(tests[name]),
            tests[name]["finding"],
        ]
        for name in CURVE_TESTS
    ]


def _lineage(result: dict[str, Any]) -> list[tuple[str, str]]:
    """What the compared models came from: base model, data and test split, weights, seeds."""
    seeds = result["seeds"]
    lineage = [
        (
            "base model",
            result["base_model"]
            + (f" ({result['base_model_revision']})" if result.get("base_model_revision") else ""),
        ),
        ("data fingerprint", result["data_fingerprint"]),
        ("test split fingerprint", result["test_fingerprint"]),
        ("pretrained model sha256", result["pretrained"]["model_sha256"]),
        ("scratch model sha256", result["scratch"]["model_sha256"]),
    ]
    if seeds["count"] > 1:
        values = ", ".join(map(str, seeds["values"]))
        lineage.append(("training seeds", f"{values}; the models above are seed {seeds['chosen']}'s"))
    return lineage


def render(result: dict[str, Any], card: dict[str, Any] | None = None, min_gain: float = 0.0) -> str:
    """The report page for a gate result (and the data card of its run)."""
    metric = result["metric"]
    gain, test = result["gain"], result["mcnemar"]
    tests = result["curves"]["tests"]
    verdict = result["verdict"]
    seeds = result["seeds"]
    several = seeds["count"] > 1
    arms, curve_rows, lineage = _arm_rows(result), _curve_rows(tests), _lineage(result)
    reason = result["reason"][0].upper() + result["reason"][1:] + "."
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>warmstart gate: {verdict} transfer</title><style>{STYLE}</style></head>
<body><main>
<h1>Transfer gate: <span class="verdict" style="background:{VERDICT_COLORS[verdict]}">{verdict}</span>
{"passed" if result["passed"] else "not passed"}</h1>
<p>{html.escape(reason)}</p>
<p class="rule">Decision rule: {html.escape(result["decision_rule"])}</p>
<h2>Result</h2>
{_table(["arm", "accuracy", "macro-F1", "learning rate", "steps", "training rows"], arms)}
<p><b>Gain</b> in {metric} (<span class="pretrained">pretrained</span> − <span class="scratch">scratch</span>{
        ", mean over seeds" if several else ""
    }):
{gain["estimate"]:+.4f}, {gain["confidence"]:.0%} CI [{gain["ci_low"]:+.4f}, {gain["ci_high"]:+.4f}] over
{result["test_rows"]} test examples{f" and {seeds['count']} seeds" if several else ""}. McNemar's exact test{
        f" (seed {test['seed']})" if several else ""
    }: {test["only_pretrained_right"]} examples only the pretrained
arm got right, {test["only_scratch_right"]} only scratch got right, p = {test["p_value"]:.3g}.</p>
{f"<p id='augmentation'>{html.escape(augmented)}</p>" if (augmented := augmentation_sentence(result)) else ""}
{_seeds(result) if several else ""}<div class="grid">
<figure><img id="curves" alt="learning curves of both arms" src="{curves_figure(result)}"></figure>
<figure><img id="gain" alt="bootstrap distribution of the gain" src="{
        gain_figure(result, min_gain)
    }"></figure>
</div>
<h2>Learning curves: start, slope, asymptote (validation {metric}{
        f", mean of {seeds['count']} seeds" if several else ""
    })</h2>
<p>Pretrained − scratch, each with its {gain["confidence"]:.0%} bootstrap interval; "higher" only when the
interval lies above zero. {html.escape(_start_note(tests["start"]))}</p>
{_table(["test", "pretrained", "scratch", "difference", "interval", "finding"], curve_rows)}
<p>{html.escape(match_sentence(tests["match"]))}</p>
<h2 id="floor-section">Floor: a model that learned nothing</h2>
{_floor(result)}
<h2 id="tuning-section">Tuning: both arms' learning rates</h2>
{_tuning(result)}
{_efficiency(result)}
<h2>Confusion matrices (test split)</h2>
<figure><img id="confusion" alt="confusion matrices of both arms" src="{confusion_figure(result)}"></figure>
<h2>Pre-screen of the candidates</h2>
{_screening(result)}
<h2>Challenger vs champion</h2>
{_champion(result)}
<h2>Data</h2>
{_data_card(card)}
<h2>Lineage</h2>
{_facts(lineage)}
</main></body></html>
"""


def write_report(
    result: dict[str, Any], output_dir: str | Path, card: dict[str, Any] | None, min_gain: float
) -> Path:
    path = Path(output_dir) / HTML_FILE
    path.write_text(render(result, card, min_gain), encoding="utf-8")
    return path


def find_report(path: str | Path) -> Path:
    """The report at `path`: the file itself, the one in a gate output directory, or the latest run's
    in a `warmstart run` work directory (named in its summary.json; after a skipped run, which has
    none, the newest report under its runs/)."""
    import json

    path = Path(path)
    if path.is_file() and path.suffix == ".html":
        return path
    if (path / HTML_FILE).is_file():
        return path / HTML_FILE
    summary = path / "summary.json"
    if summary.is_file():
        named = json.loads(summary.read_text()).get("report")
        if named and Path(named).is_file():
            return Path(named)
    earlier = sorted(path.glob(f"runs/**/{HTML_FILE}"), key=lambda report: report.stat().st_mtime)
    if earlier:
        return earlier[-1]
    raise WarmstartError(
        f"no gate report at {path}; pass a report.html, a gate output directory, or the work directory of "
        f"`warmstart run` (default warmstart-work)"
    )
