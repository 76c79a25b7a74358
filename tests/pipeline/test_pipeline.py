"""The DAG: compiled for Kubeflow, and run for real through kfp.local by the `warmstart` command."""

import json
from pathlib import Path

import pytest
import yaml
from kfp import components
from support.cli import run_warmstart, tiny_run_config
from support.data import synthetic_rows, write_csv
from warmstart.pipelines import compile_pipeline

from warmstart.config import Config
from warmstart.registry import Registry


def dag_tasks(spec):
    """Every task of the compiled pipeline, in the root DAG and in the sub-DAGs (loops, conditions)."""
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    return {name: task for dag in dags for name, task in dag["tasks"].items()}


def test_compiled_pipeline_has_the_stages_the_skip_branch_the_seed_loop_and_the_gate_condition(tmp_path):
    path = compile_pipeline(
        Config(), tmp_path / "p.yaml", image="registry.example/warmstart@sha256:" + "a" * 64
    )
    spec = next(yaml.safe_load_all(path.read_text()))
    assert {
        "comp-ingest",
        "comp-fetch-model",
        "comp-finetune",
        "comp-gate",
        "comp-register",
        "comp-skipped",
    } <= set(spec["components"])
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example/warmstart@sha256:" + "a" * 64
    }
    gpu_tasks = [
        name for name, e in executors.items() if e["container"].get("resources", {}).get("accelerator")
    ]
    assert gpu_tasks == ["exec-finetune"]
    assert executors["exec-finetune"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"
    tasks = dag_tasks(spec)
    # ingest decides whether anything changed: the training branch runs on its `train` output, the
    # other branch ends the run at `skipped`.
    branches = [t for t in tasks.values() if "triggerPolicy" in t]
    conditions = {t["taskInfo"]["name"]: t["triggerPolicy"]["condition"] for t in branches}
    assert conditions["something changed: train"] == (
        "inputs.parameter_values['pipelinechannel--ingest-train'] == true"
    )
    assert conditions["nothing changed: skip"] == (
        "!(inputs.parameter_values['pipelinechannel--ingest-train'] == true)"
    )
    skip_branch = next(t for t in branches if t["taskInfo"]["name"] == "nothing changed: skip")
    assert list(spec["components"][skip_branch["componentRef"]["name"]]["dag"]["tasks"]) == ["skipped"]
    # Both arms run once per run of the plan (seed, data fraction, share of the tuning grid): a
    # ParallelFor over the plan's items, one per run and arm, that ingest read from the run's config.
    work = tasks["train-judge-register"]["inputs"]["parameters"]
    assert work["runs"] == {"componentInputParameter": "pipelinechannel--ingest-runs"}
    assert work["base_fingerprint"]["taskOutputParameter"] == {
        "producerTask": "fetch-model",
        "outputParameterKey": "Output",
    }
    loop_name, loop = next((name, task) for name, task in tasks.items() if "parameterIterator" in task)
    assert loop["taskInfo"]["name"] == "runs"
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--runs"
    in_loop = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert list(in_loop) == ["finetune"], "one task per item: the item names its arm"
    assert in_loop["finetune"]["inputs"]["parameters"]["run"] == {
        "componentInputParameter": "pipelinechannel--runs-loop-item"
    }
    assert all(
        {"run", "data_fingerprint", "base_fingerprint"} <= set(t["inputs"]["parameters"])
        for t in in_loop.values()
    )
    # Only finetune may come from KFP's cache: its key holds the data's and the base model's
    # fingerprints. The other tasks read moving things or write the registry.
    containers = {
        name: task
        for name, task in tasks.items()
        if "dag" not in spec["components"][task["componentRef"]["name"]]
    }
    assert set(containers) == {
        "ingest",
        "fetch-model",
        "finetune",
        "evaluate-champion",
        "gate",
        "register",
        "skipped",
    }
    cached = sorted(name for name, task in containers.items() if task["cachingOptions"].get("enableCache"))
    assert cached == ["finetune"]
    # The gate takes every seed's evaluation; register runs only when the gate passed.
    gate_inputs = tasks["gate"]["inputs"]["artifacts"]
    assert gate_inputs["evaluations"]["taskOutputArtifact"]["producerTask"] == loop_name
    condition = next(t for t in branches if t["taskInfo"]["name"] == "gate passed")
    assert (
        condition["triggerPolicy"]["condition"]
        == "inputs.parameter_values['pipelinechannel--passed'] == true"
    )
    inner = spec["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["register"]
    passed = tasks["register-if-passed"]["inputs"]["parameters"]["passed"]
    assert passed["taskOutputParameter"] == {"producerTask": "gate", "outputParameterKey": "Output"}
    assert spec["root"]["inputDefinitions"]["parameters"]["force"]["defaultValue"] is False
    assert tasks["ingest"]["inputs"]["parameters"]["force"] == {"componentInputParameter": "force"}
    assert (
        spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]["train"]["strategy"]
        == "full"
    )
    # The YAML loads back as a KFP component, as the Kubeflow UI would read it.
    assert components.load_component_from_file(str(path)).name == "warmstart-transfer"


def test_the_runs_loop_is_capped_by_cluster_max_parallel_trainings(tmp_path):
    """On Kubeflow the plan's items (seeds × data fractions × shares of the tuning grid × the two arms,
    one finetune task each) fan out in a ParallelFor, at most cluster.max_parallel_trainings at once."""
    cfg = Config.from_dict({"cluster": {"max_parallel_trainings": 3}})
    spec = next(yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text()))
    loop = next(task for task in dag_tasks(spec).values() if "parameterIterator" in task)
    assert loop["iteratorPolicy"] == {"parallelismLimit": 3}
    unlimited = next(yaml.safe_load_all(compile_pipeline(Config(), tmp_path / "q.yaml").read_text()))
    assert "iteratorPolicy" not in next(t for t in dag_tasks(unlimited).values() if "parameterIterator" in t)


def test_storage_settings_reach_every_task(tmp_path):
    cfg = Config.from_dict({"storage": {"endpoint_url": "http://minio.ml:9000", "region": "eu-west-1"}})
    spec = next(yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text()))
    for executor in spec["deploymentSpec"]["executors"].values():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        image = env.pop("WARMSTART_IMAGE", None)
        assert env == {"AWS_ENDPOINT_URL": "http://minio.ml:9000", "AWS_DEFAULT_REGION": "eu-west-1"}
        assert image in (None, executor["container"]["image"]), "finetune knows its image, for TrainJobs"


def test_finetune_tasks_retry_and_request_a_gpu_per_process(tmp_path):
    spec = next(
        yaml.safe_load_all(
            compile_pipeline(
                Config.from_dict({"train": {"nproc_per_node": 4}}), tmp_path / "p.yaml"
            ).read_text()
        )
    )
    finetunes = [task for name, task in dag_tasks(spec).items() if name.startswith("finetune")]
    assert len(finetunes) == 1
    for task in finetunes:
        assert task["retryPolicy"]["maxRetryCount"] == 2
    executors = [e for n, e in spec["deploymentSpec"]["executors"].items() if "finetune" in n]
    for executor in executors:
        assert executor["container"]["resources"]["accelerator"]["resourceCount"] == "4"
    multinode = next(
        yaml.safe_load_all(
            compile_pipeline(Config.from_dict({"train": {"num_nodes": 2}}), tmp_path / "m.yaml").read_text()
        )
    )
    for name, executor in multinode["deploymentSpec"]["executors"].items():
        assert "accelerator" not in executor["container"].get("resources", {}), name


def test_the_compiled_pipeline_carries_the_kubernetes_settings(tmp_path):
    """Secret as env on every task, GPU placement and /dev/shm on finetune, the HF cache on fetch_model,
    non-root, timeouts and retries: what kfp-kubernetes puts in the pipeline spec for the backend."""
    cfg = Config.from_dict(
        {
            "cluster": {
                "s3_secret": "warmstart-s3",
                "gpu_node_selector": {"nvidia.com/gpu.present": "true"},
                "gpu_tolerations": [
                    {"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoExecute"}
                ],
                "shm_size": "16Gi",
                "hf_cache_pvc": "hf-cache",
                "retries": 3,
            }
        }
    )
    pipeline, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(pipeline["deploymentSpec"]["executors"]), "every task has its settings"
    for name, settings in executors.items():
        assert settings["secretAsEnv"][0]["secretName"] == "warmstart-s3", name
        assert {k["envVar"] for k in settings["secretAsEnv"][0]["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        assert (
            settings["securityContext"]["runAsNonRoot"] is True
            and settings["securityContext"]["runAsUser"] == "10001"
        )
        finetune = name.startswith("exec-finetune")
        assert settings["activeDeadlineSeconds"] == str((1440 if finetune else 60) * 60), name
        assert "kueue.x-k8s.io/queue-name" not in settings.get("podMetadata", {}).get("labels", {}), name
        assert ("nodeSelector" in settings) == finetune and ("tolerations" in settings) == finetune, name
    for name in ("exec-finetune",):
        settings = executors[name]
        assert settings["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert settings["tolerations"] == [
            {"key": "gpu", "operator": "Equal", "value": "a100", "effect": "NoExecute"}
        ]
        assert settings["emptyDirMounts"] == [
            {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "16Gi", "volumeName": "dshm"}
        ]
    assert executors["exec-fetch-model"]["pvcMount"][0]["mountPath"] == "/home/warmstart/.cache/huggingface"
    retried = {
        name: task["retryPolicy"]["maxRetryCount"]
        for name, task in dag_tasks(pipeline).items()
        if "retryPolicy" in task
    }
    assert retried == {"finetune": 3}, "only the long tasks retry"


def test_a_kueue_queue_labels_every_pipeline_pod(tmp_path):
    cfg = Config.from_dict({"cluster": {"kueue_queue": "team-gpus"}})
    pipeline, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(pipeline["deploymentSpec"]["executors"])
    for name, settings in executors.items():
        assert settings["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus", name


def test_notify_is_the_exit_handler_with_its_url_from_a_secret(tmp_path):
    """With notify configured the whole run sits in a dsl.ExitHandler whose exit task is notify (with
    the run's final status); the URL reaches it from a Secret, and a literal URL is never compiled in."""
    cfg = Config.from_dict({"notify": {"webhook_secret": "team-webhook"}, "registry": {"uri": "/mnt/r"}})
    pipeline, platform = yaml.safe_load_all(compile_pipeline(cfg, tmp_path / "p.yaml").read_text())
    root = pipeline["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "notify"}
    assert root["notify"]["dependentTasks"] == ["exit-handler-1"]
    assert root["notify"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert (
        root["notify"]["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"]
        == "exit-handler-1"
    )
    inside = pipeline["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(inside) == {"ingest", "condition-branches-2"}  # the whole run: ingest, then train or skip
    secret = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-notify"]["secretAsEnv"]
    assert secret[0]["secretName"] == "team-webhook" and secret[0]["optional"] is False
    assert secret[0]["keyToEnv"] == [{"envVar": "WARMSTART_WEBHOOK_URL", "secretKey": "webhook_url"}]
    # Without notify, no exit handler.
    plain = next(yaml.safe_load_all(compile_pipeline(Config(), tmp_path / "q.yaml").read_text()))
    assert "notify" not in plain["root"]["dag"]["tasks"]

    output = tmp_path / "out.yaml"
    literal = run_warmstart(
        "compile",
        *("--output", str(output), "--set", "registry.uri=/mnt/models"),
        *("--set", "notify.webhook_url=https://hooks.example/T0/SECRET"),
    )
    assert literal.returncode == 2 and not output.exists()
    assert "notify.webhook_url is a literal URL" in literal.stderr and "SECRET" not in literal.stderr


def test_deploy_follows_register_under_the_same_condition(tmp_path):
    output = tmp_path / "out.yaml"
    compiled = run_warmstart(
        "compile",
        *(
            "--output",
            str(output),
            "--set",
            "registry.uri=s3://models/registry",
            "--set",
            "deploy.enabled=true",
        ),
    )
    assert compiled.returncode == 0, compiled.stderr
    pipeline = next(yaml.safe_load_all(output.read_text()))
    condition = next(
        c for c in pipeline["components"].values() if "register" in c.get("dag", {}).get("tasks", {})
    )
    tasks = condition["dag"]["tasks"]
    assert set(tasks) == {"register", "deploy"} and tasks["deploy"]["dependentTasks"] == ["register"]
    artifacts = tasks["deploy"]["inputs"]["artifacts"]
    assert artifacts["registration"]["taskOutputArtifact"] == {
        "producerTask": "register",
        "outputArtifactKey": "registration",
    }
    assert set(artifacts) == {"registration", "dataset", "evaluations"}
    plain = next(yaml.safe_load_all(compile_pipeline(Config(), tmp_path / "q.yaml").read_text()))
    assert "comp-deploy" not in plain["components"], "deploy is off unless deploy.enabled"
    local = run_warmstart(
        "compile", "--output", str(output), "--set", "registry.uri=/mnt/r", "--set", "deploy.enabled=true"
    )
    assert local.returncode == 2 and "deploy.enabled needs registry.uri on s3://" in local.stderr


def test_compile_command_writes_the_yaml(tmp_path):
    result = run_warmstart(
        "compile",
        "--output",
        str(tmp_path / "out.yaml"),
        "--image",
        "me/ws:1",
        "--set",
        "train.epochs=1",
        "--set",
        "registry.uri=/mnt/models",
    )
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all((tmp_path / "out.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"]["train"]["epochs"] == 1


def test_compile_refuses_settings_that_cannot_work_in_a_pod(tmp_path):
    output = tmp_path / "out.yaml"
    no_registry = run_warmstart("compile", "--output", str(output))
    assert no_registry.returncode == 2
    assert "registry.uri is empty" in no_registry.stderr
    relative = run_warmstart(
        "compile",
        "--output",
        str(output),
        "--set",
        "registry.uri=/mnt/models",
        "--set",
        "data.source=reviews.csv",
    )
    assert relative.returncode == 2
    assert "data.source 'reviews.csv' is a relative path" in relative.stderr
    assert not output.exists()


def lineage_fingerprint(registry, name, version):
    return registry.metadata(name, version)["lineage"]["data_fingerprint"]


def test_run_registers_a_model_that_transfers_then_skips_when_nothing_changed(
    tmp_path, tiny_pretrained_model
):
    """The whole DAG through kfp.local on a tiny model whose pre-training carries over, two seeds per
    arm (a ParallelFor whose evaluations the gate collects): the chosen seed's model is registered.

    Then the scheduled-retraining case: the same run again ends at ingest ("skipped: data unchanged
    since version 1") without training."""
    config = tiny_run_config(tmp_path, tiny_pretrained_model)
    args = [
        "run",
        "--config",
        str(config),
        "--workdir",
        str(tmp_path / "work"),
        "--set",
        "train.seeds=[3, 5]",
    ]
    result = run_warmstart(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["freshness"] == "training: tiny-reviews has no champion yet"
    assert summary["seeds"]["count"] == 2 and summary["seeds"]["values"] in ([3, 5], [5, 3])
    assert set(summary["seeds"]["gains"]) == {"3", "5"}
    assert summary["gain"]["estimate"] == pytest.approx(sum(summary["seeds"]["gains"].values()) / 2)
    assert summary["verdict"] == "positive"
    assert summary["gain"]["ci_low"] > 0
    assert summary["pretrained"]["accuracy"] > summary["scratch"]["accuracy"]
    assert summary["tests"]["start"]["higher"]
    assert summary["mcnemar_p"] < 0.05
    assert summary["registered"]["version"] == 1
    registry = Registry(str(tmp_path / "work" / "registry"))
    assert registry.alias("tiny-reviews", "champion") == 1
    lineage = registry.metadata("tiny-reviews", 1)["lineage"]
    assert lineage["run_id"] == summary["run_id"]
    assert lineage["pipeline_job"].startswith("warmstart-transfer-")
    gate_result = json.loads(Path(summary["report"]).with_name("gate_result.json").read_text())
    chosen = summary["seeds"]["chosen"]
    assert gate_result["pretrained"]["seed"] == chosen
    assert registry.metadata("tiny-reviews", 1)["model_sha256"] == gate_result["pretrained"]["model_sha256"]
    assert registry.metadata("tiny-reviews", 1)["gate"]["seeds"]["chosen"] == chosen
    assert "positive transfer" in result.stdout
    assert "registered tiny-reviews version 1" in result.stdout
    # Each arm's cost is among its KFP Metrics (kfp.local's log prints them): 2 seeds × 2 arms.
    assert Path(summary["log"]).read_text().count("'train_samples_per_second':") == 4

    again = run_warmstart(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    skipped = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert skipped["verdict"] == "skipped" and skipped["registered"] is None
    assert skipped["skipped"]["champion"] == 1
    assert skipped["skipped"]["fingerprint"] == lineage_fingerprint(registry, "tiny-reviews", 1)
    assert "warmstart: skipped: data unchanged since version 1" in again.stdout
    assert "Executing task 'skipped'" in again.stdout
    for task in ("fetch-model", "finetune", "gate", "register"):
        assert f"Executing task '{task}'" not in again.stdout
    assert registry.versions("tiny-reviews") == [1]


def test_run_with_data_and_registry_on_s3(tmp_path, s3_prefix, tiny_pretrained_model, monkeypatch):
    """`warmstart run` reading s3:// data and registering into an s3:// registry; a rerun reads the
    champion from S3 and skips, as nothing changed.

    The endpoint comes from the config (storage.endpoint_url) here, not from AWS_ENDPOINT_URL.
    """
    import os

    from warmstart.storage import upload_s3_file

    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(240, seed=21))
    upload_s3_file(data, f"{s3_prefix}/data/train.csv")
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = tiny_run_config(tmp_path, tiny_pretrained_model)
    args = [
        "run",
        "--config",
        str(config),
        "--workdir",
        str(tmp_path / "work"),
        "--set",
        f"data.source={s3_prefix}/data/train.csv",
        "--set",
        f"registry.uri={s3_prefix}/models",
        "--set",
        "registry.name=tiny-reviews",
        "--set",
        f"storage.endpoint_url={endpoint}",
    ]
    first = run_warmstart(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["registered"] == {
        "name": "tiny-reviews",
        "version": 1,
        "uri": f"{s3_prefix}/models/tiny-reviews/versions/1",
        "new": True,
        "champion": True,
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    registry = Registry(f"{s3_prefix}/models")
    assert registry.alias("tiny-reviews", "champion") == 1
    metadata = registry.metadata("tiny-reviews", 1)
    assert metadata["lineage"]["data_source"] == f"{s3_prefix}/data/train.csv"
    assert "model.safetensors" in registry.store.children("tiny-reviews/versions/1")

    # Nothing changed: the rerun skips, reading the champion from the S3 registry.
    again = run_warmstart(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["verdict"] == "skipped"
    assert "skipped: data unchanged since version 1" in again.stdout
    assert registry.versions("tiny-reviews") == [1]

    # The S3 secret reached every task, and was written nowhere: not in the console, the logs, the
    # reports, the summary, the compiled pipeline or the registered version's files.
    from support.s3 import S3_SECRET_KEY

    assert S3_SECRET_KEY not in first.stdout + first.stderr + again.stdout + again.stderr
    written = [
        p for p in (tmp_path / "work").rglob("*") if p.is_file() and S3_SECRET_KEY.encode() in p.read_bytes()
    ]
    assert written == []
    version = registry.download_version("tiny-reviews", 1, tmp_path / "v1")
    assert not [p for p in version.rglob("*") if p.is_file() and S3_SECRET_KEY.encode() in p.read_bytes()]


def test_a_worse_challenger_does_not_replace_the_champion(tmp_path, tiny_pretrained_model, tiny_random_model):
    """Run 1 makes a champion. Run 2, after one row of the data changed, trains a deliberately worse
    challenger (only its classification layer trained, on the frozen encoder) that still beats scratch: the champion check decides,
    the gate does not pass, register is skipped, the champion stays, and the exit code is 0.
    (A changed row or setting is what makes a run train instead of skip.) Run 2 also offers a random
    tiny BERT as a candidate: the pre-screen keeps the pre-trained source."""
    config = tiny_run_config(tmp_path, tiny_pretrained_model)
    work = ["--config", str(config), "--workdir", str(tmp_path / "work")]
    first = run_warmstart("run", *work)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["registered"]["champion"]

    # One row of the data changed too: the run trains, and says both changes.
    rows = synthetic_rows(240, seed=21)
    rows[0] = ("an entirely new first review", rows[0][1])
    write_csv(tmp_path / "reviews.csv", rows)
    second = run_warmstart(
        "run",
        *work,
        "--set",
        "train.learning_rate=0.05",
        "--set",
        "train.scratch_learning_rate=1e-6",
        # Each arm at its one rate: with the search on, scratch would have found a good one.
        "--set",
        "tune.enabled=false",
        "--set",
        f"model.candidates=[{tiny_random_model}]",
    )
    assert second.returncode == 0, second.stdout + second.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["freshness"].startswith("training: changed since version 1: data (fingerprint ")
    assert "; train.learning_rate (0.001 → 0.05)" in summary["freshness"]
    assert "Executing task 'finetune'" in second.stdout
    assert summary["verdict"] == "positive"
    assert summary["champion"]["version"] == 1 and summary["champion"]["comparable"]
    assert summary["champion"]["challenger"] < summary["champion"]["champion"]
    assert summary["decided_by"] == "champion"
    assert not summary["passed"] and summary["registered"] is None
    assert "champion check decided" in second.stdout
    assert "Executing task 'register'" not in second.stdout
    assert "not registered" in second.stdout
    screening = summary["screening"]
    assert screening["chosen"] == str(tiny_pretrained_model)
    assert [entry["source"] for entry in screening["ranking"]][0] == str(tiny_pretrained_model)
    assert sum(entry["floor"] for entry in screening["ranking"]) == 1
    assert "Pre-screen of the candidates" in Path(summary["report"]).read_text()
    registry = Registry(str(tmp_path / "work" / "registry"))
    assert registry.versions("tiny-reviews") == [1]
    assert registry.alias("tiny-reviews", "champion") == 1
