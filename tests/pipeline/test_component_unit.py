"""Each KFP component's Python function, called with real artifacts on disk (no KFP runner), in the order
the DAG runs them: what every component writes is what the next one reads (warmstart.artifacts), and its
outputs (return values, metadata, Metrics) are what the pipeline and the KFP UI show."""

import json
from pathlib import Path

import pytest
from kfp import dsl
from support.stages import tiny_config
from warmstart.components import evaluate_champion, fetch_model, finetune, gate, ingest, register, skipped

from warmstart.artifacts import (
    CARD_FILE,
    PROBE_FILE,
    RESULT_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    load_manifest,
    model_fingerprint,
)
from warmstart.registry import Registry
from warmstart.storage import sha256_file


def artifact(kind, root: Path, name: str):
    """An artifact as the KFP executor hands one to a component: a local URI (its path) and metadata."""
    return kind(name=name, uri=str(root / name), metadata={})


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, synthetic_csv, tiny_pretrained_model):
    work = tmp_path_factory.mktemp("components")
    config = tiny_config(synthetic_csv, tiny_pretrained_model, registry=work / "registry").model_dump()
    dataset, freshness = artifact(dsl.Dataset, work, "dataset"), artifact(dsl.Markdown, work, "freshness")
    outputs = ingest.python_func(config=config, force=False, dataset=dataset, freshness=freshness)
    return work, config, dataset, freshness, outputs


def test_ingest_writes_the_splits_and_the_plan_of_both_arms(ingested):
    work, config, dataset, freshness, outputs = ingested
    card = json.loads((Path(dataset.path) / CARD_FILE).read_text())
    assert {p.name for p in Path(dataset.path).glob("*.parquet")} == {
        "train.parquet",
        "validation.parquet",
        "test.parquet",
    }
    assert outputs.train is True and outputs.fingerprint == card["fingerprint"]
    assert [run["init"] for run in outputs.runs] == ["pretrained", "scratch"]
    assert outputs.status["status"] == "training: tiny has no champion yet"
    assert dataset.metadata == {"rows": card["rows"], "fingerprint": card["fingerprint"]}
    assert Path(freshness.path).read_text().startswith("# warmstart: training")


@pytest.fixture(scope="module")
def fetched(ingested):
    work, config, dataset, _, _ = ingested
    base, screening = artifact(dsl.Model, work, "base_model"), artifact(dsl.Artifact, work, "screening")
    scores = artifact(dsl.Metrics, work, "scores")
    fingerprint = fetch_model.python_func(
        config=config, dataset=dataset, base_model=base, screening=screening, scores=scores
    )
    return base, screening, scores, fingerprint


def test_fetch_model_returns_the_fingerprint_of_the_files_it_wrote_and_probes_the_start(fetched):
    base, screening, scores, fingerprint = fetched
    assert fingerprint == model_fingerprint(load_manifest(base.path))
    assert base.metadata["source"] == load_manifest(base.path)["source"]
    assert (Path(screening.path) / PROBE_FILE).is_file()
    assert screening.metadata == {"screened": False, "chosen": base.metadata["source"]}
    assert {"probe pretrained accuracy", "probe random_init accuracy"} <= set(scores.metadata)


@pytest.fixture(scope="module")
def trained(ingested, fetched):
    work, config, dataset, _, outputs = ingested
    base, _, _, fingerprint = fetched
    runs = []
    for index, run in enumerate(outputs.runs):
        model, evaluation = (
            artifact(dsl.Model, work, f"model-{index}"),
            artifact(dsl.Dataset, work, f"eval-{index}"),
        )
        metrics = artifact(dsl.Metrics, work, f"metrics-{index}")
        finetune.python_func(
            config=config,
            run=run,
            data_fingerprint=outputs.fingerprint,
            base_fingerprint=fingerprint,
            dataset=dataset,
            base_model=base,
            model=model,
            evaluation=evaluation,
            metrics=metrics,
        )
        runs.append((run, model, evaluation, metrics))
    return runs


def test_finetune_trains_the_arm_its_run_names_and_says_so_in_its_outputs(trained):
    for run, model, evaluation, metrics in trained:
        summary = json.loads((Path(evaluation.path) / SUMMARY_FILE).read_text())
        assert summary["init"] == run["init"] and summary["seed"] == run["seed"]
        assert model.metadata["init"] == run["init"]
        assert (
            model.metadata["sha256"]
            == sha256_file(Path(model.path) / WEIGHTS_FILE)
            == summary["model_sha256"]
        )
        assert metrics.metadata["test_accuracy"] == summary["test_metrics"]["accuracy"]
        assert metrics.metadata["learning_rate"] == summary["learning_rate"]


def test_finetune_refuses_a_stale_dataset_before_training(ingested, fetched, tmp_path, capsys):
    """A user error ends the task with one line and exit code 1, before any training (and so before a
    retry could repeat it)."""
    _, config, dataset, _, outputs = ingested
    base, _, _, fingerprint = fetched
    with pytest.raises(SystemExit) as ended:
        finetune.python_func(
            config=config,
            run=outputs.runs[0],
            data_fingerprint="0" * 64,
            base_fingerprint=fingerprint,
            dataset=dataset,
            base_model=base,
            model=artifact(dsl.Model, tmp_path, "model"),
            evaluation=artifact(dsl.Dataset, tmp_path, "evaluation"),
            metrics=artifact(dsl.Metrics, tmp_path, "metrics"),
        )
    assert ended.value.code == 1
    assert "error: finetune[pretrained]: the dataset given is not the one" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


@pytest.fixture(scope="module")
def judged(ingested, fetched, trained):
    work, config, dataset, _, _ = ingested
    _, screening, _, _ = fetched
    champion = artifact(dsl.Dataset, work, "champion")
    evaluate_champion.python_func(config=config, dataset=dataset, evaluation=champion)
    outputs = {
        name: artifact(kind, work, name)
        for name, kind in (
            ("result", dsl.Artifact),
            ("report", dsl.Markdown),
            ("report_html", dsl.HTML),
            ("gate_metrics", dsl.Metrics),
            ("confusion", dsl.ClassificationMetrics),
            ("confusion_scratch", dsl.ClassificationMetrics),
        )
    }
    passed = gate.python_func(
        config=config,
        evaluations=[
            evaluation for _, _, evaluation, _ in reversed(trained)
        ],  # any order: each names its arm
        champion=champion,
        dataset=dataset,
        screening=screening,
        result=outputs["result"],
        report=outputs["report"],
        report_html=outputs["report_html"],
        metrics=outputs["gate_metrics"],
        confusion=outputs["confusion"],
        confusion_scratch=outputs["confusion_scratch"],
    )
    return champion, outputs, passed


def test_evaluate_champion_says_there_is_none_yet(judged):
    champion, _, _ = judged
    assert champion.metadata == {"version": None, "comparable": False}


def test_gate_decides_on_both_arms_and_writes_its_reports_and_metrics(judged, trained):
    _, outputs, passed = judged
    result = json.loads((Path(outputs["result"].path) / RESULT_FILE).read_text())
    assert passed is result["passed"] is True and result["verdict"] == "positive"
    by_arm = {run["init"]: model for run, model, _, _ in trained}
    assert result["pretrained"]["model_sha256"] == by_arm["pretrained"].metadata["sha256"]
    assert result["scratch"]["model_sha256"] == by_arm["scratch"].metadata["sha256"]
    assert Path(outputs["report"].path).read_text().startswith("# Transfer gate")
    assert "<html" in Path(outputs["report_html"].path).read_text()
    assert outputs["gate_metrics"].metadata["gain_estimate"] == result["gain"]["estimate"]
    assert len(outputs["confusion"].metadata["confusionMatrix"]["rows"]) == len(result["label_names"])


def test_register_publishes_the_pretrained_model_the_gate_judged_then_ingest_skips(
    ingested, fetched, trained, judged
):
    work, config, dataset, _, _ = ingested
    base, _, _, _ = fetched
    _, outputs, _ = judged
    registration = artifact(dsl.Artifact, work, "registration")
    register.python_func(
        config=config,
        run_id="unit",
        pipeline_job="unit-job",
        models=[
            model for _, model, _, _ in trained
        ],  # both arms' models: the judged one is found by its weights
        gate_result=outputs["result"],
        dataset=dataset,
        base_model=base,
        registration=registration,
    )
    registry = Registry(config["registry"]["uri"])
    assert registration.metadata["version"] == 1 and registry.alias("tiny", "champion") == 1
    pretrained = next(model for run, model, _, _ in trained if run["init"] == "pretrained")
    assert registry.metadata("tiny", 1)["model_sha256"] == pretrained.metadata["sha256"]

    again = ingest.python_func(
        config=config,
        force=False,
        dataset=artifact(dsl.Dataset, work, "dataset-again"),
        freshness=artifact(dsl.Markdown, work, "freshness-again"),
    )
    assert again.train is False
    summary = artifact(dsl.Markdown, work, "skipped")
    skipped.python_func(status=again.status, summary=summary)
    assert summary.metadata["status"].startswith("skipped: data unchanged since version 1")
    assert Path(summary.path).read_text().startswith("# warmstart: skipped")
