"""KFP component: gate (library: warmstart.gate: policy, stats, reports)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def gate(
    config: dict,
    evaluations: Input[list[Dataset]],
    champion: Input[Dataset],
    dataset: Input[Dataset],
    screening: Input[Artifact],
    result: Output[Artifact],
    report: Output[Markdown],
    report_html: Output[HTML],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    confusion_scratch: Output[ClassificationMetrics],
    pipeline_job: str = "",
) -> bool:
    """Compare the arms' test predictions (evaluations: every finetune task's, both arms), paired by
    training seed: the transfer gain with a paired-bootstrap CI (over seeds and test examples) and a
    verdict.

    Returns whether the gate passed. A plain `bool` (output name `Output`) rather than a named
    output: kfp.local resolves `dsl.If` conditions only on outputs named `Output` or `task--name`.
    """
    import shutil
    from pathlib import Path

    from warmstart.artifacts import HTML_FILE, REPORT_FILE
    from warmstart.config import Config
    from warmstart.gate.policy import gate as judge
    from warmstart.gate.policy import split_arms
    from warmstart.run_record import run_record
    from warmstart.stage import report_outcome, user_errors

    record = run_record(config, pipeline_job)
    with user_errors("gate", record):
        decision = judge(
            Config.from_dict(config).gate,
            *split_arms([evaluation.path for evaluation in evaluations]),
            result.path,
            champion.path,
            dataset.path,
            screening.path,
        )
    shutil.copyfile(Path(result.path) / REPORT_FILE, report.path)
    shutil.copyfile(Path(result.path) / HTML_FILE, report_html.path)
    for key in ("estimate", "ci_low", "ci_high"):
        metrics.log_metric(f"gain_{key}", decision["gain"][key])
    metrics.log_metric("mcnemar_p", decision["mcnemar"]["p_value"])
    for arm in ("pretrained", "scratch"):
        metrics.log_metric(f"{arm}_{decision['metric']}", decision[arm][decision["metric"]])
    confusion.log_confusion_matrix(decision["label_names"], decision["pretrained"]["confusion_matrix"])
    confusion_scratch.log_confusion_matrix(decision["label_names"], decision["scratch"]["confusion_matrix"])
    floor = decision["baselines"]
    metrics.log_metric(f"floor_{decision['metric']}", floor["value"])
    metrics.log_metric("scratch_clears_floor", float(floor["learned"]))
    for name, test in decision["curves"]["tests"].items():
        if "ci_low" in test:
            metrics.log_metric(f"{name}_difference", test["difference"])
    for arm, chosen in decision["tuning"]["arms"].items():  # the rates the search chose, per seed
        for seed, rate in chosen["chosen"].items():
            metrics.log_metric(f"{arm}_learning_rate_seed_{seed}", rate)
    if decision["tuning"]["cost"]["ratio"] is not None:
        metrics.log_metric("tuning_cost_ratio", decision["tuning"]["cost"]["ratio"])
    if decision["champion"] and decision["champion"]["comparable"]:
        metrics.log_metric("champion_gain_estimate", decision["champion"]["gain"]["estimate"])
    result.metadata.update({k: decision[k] for k in ("verdict", "passed", "promote", "decided_by")})
    summary = {k: decision[k] for k in ("verdict", "passed", "reason", "metric", "promote")}
    summary["gain"] = {k: v for k, v in decision["gain"].items() if k != "distribution"}
    report_outcome("gate", {"result": result.path}, record, summary)
    return decision["passed"]
