"""`warmstart submit`, `schedule` and `runs` against a stand-in KFP API server.

No Kubeflow Pipelines backend can run here. The stand-in (tests/support/kfp_standin.py) checks every request
kfp.Client sends against the v2beta1 models of kfp-server-api and answers with those models, so
these tests cover what warmstart asks of the API and how it reads the answers, not what a real
backend then does with a run.
"""

import json
import time

import pytest
from support.cli import run_warmstart
from support.kfp_standin import StandIn

from warmstart.app.submit import KubeflowError, check_cron

S3_ARGS = ["--set", "registry.uri=s3://ml/registry", "--set", "data.source=s3://ml/data/reviews.csv"]


@pytest.fixture
def kfp_api():
    with StandIn() as standin:
        yield standin
    assert standin.violations == []


def warmstart(standin, *args):
    return run_warmstart(*args, "--host", standin.url)


def calls(standin, method, path_end):
    return [r for r in standin.requests if r["method"] == method and r["path"].endswith(path_end)]


def test_submit_uploads_the_pipeline_once_per_content_and_starts_runs(kfp_api):
    first = warmstart(kfp_api, "submit", *S3_ARGS, "--image", "registry.example/warmstart:0.1.0")
    assert first.returncode == 0, first.stdout + first.stderr
    (pipeline,) = kfp_api.pipelines.values()
    assert pipeline.display_name == "warmstart-transfer"
    # The upload's default version, and the version named by the compiled YAML's sha256.
    named = [v for v in kfp_api.versions.values() if v.display_name != "warmstart-transfer"]
    assert len(named) == 1 and named[0].display_name.startswith("warmstart-transfer-")
    (run,) = kfp_api.runs.values()
    body = calls(kfp_api, "POST", "/runs")[0]["body"]
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline.pipeline_id,
        "pipeline_version_id": named[0].pipeline_version_id,
    }
    assert "pipeline_spec" not in body
    assert body["service_account"] == "warmstart-pipeline"
    parameters = body["runtime_config"]["parameters"]
    assert parameters["force"] is False
    assert parameters["config"]["registry"]["uri"] == "s3://ml/registry"
    (experiment,) = kfp_api.experiments.values()
    assert experiment.display_name == "warmstart" and run.experiment_id == experiment.experiment_id
    spec = calls(kfp_api, "POST", "/pipelines/upload_version")[0]["pipeline"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/warmstart:0.1.0"}
    assert (
        f"started run {run.run_id} in experiment warmstart: {kfp_api.url}/#/runs/details/{run.run_id}"
        in first.stdout
    )
    assert "Run details:" not in first.stdout  # kfp.Client's own prints stay out of the output

    again = warmstart(kfp_api, "submit", *S3_ARGS, "--image", "registry.example/warmstart:0.1.0", "--force")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(kfp_api.versions) == 2 and len(kfp_api.experiments) == 1 and len(kfp_api.runs) == 2
    assert f"version {named[0].display_name}\n" in again.stdout  # reused, not "(new)"
    assert calls(kfp_api, "POST", "/runs")[1]["body"]["runtime_config"]["parameters"]["force"] is True

    changed = warmstart(kfp_api, "submit", *S3_ARGS, "--set", "train.epochs=2", "--experiment", "nightly")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert len(kfp_api.versions) == 3 and "(new)" in changed.stdout
    assert {e.display_name for e in kfp_api.experiments.values()} == {"warmstart", "nightly"}


def test_schedule_creates_one_recurring_run_at_a_time_without_catch_up(kfp_api):
    created = warmstart(kfp_api, "schedule", "--cron", "0 0 3 * * *", *S3_ARGS)
    assert created.returncode == 0, created.stdout + created.stderr
    body = calls(kfp_api, "POST", "/recurringruns")[0]["body"]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "warmstart-retraining"
    assert body["service_account"] == "warmstart-pipeline"
    assert body["runtime_config"]["parameters"]["force"] is False
    assert "scheduled 'warmstart-retraining' (0 0 3 * * *, one run at a time, no catch-up)" in created.stdout

    twice = warmstart(kfp_api, "schedule", "--cron", "0 0 4 * * *", *S3_ARGS)
    assert twice.returncode == 1
    assert "already has a recurring run named 'warmstart-retraining'" in twice.stderr
    assert "--replace" in twice.stderr and "Traceback" not in twice.stderr
    assert len(kfp_api.recurring) == 1

    (old,) = kfp_api.recurring
    replaced = warmstart(kfp_api, "schedule", "--cron", "@daily", "--replace", *S3_ARGS)
    assert replaced.returncode == 0, replaced.stdout + replaced.stderr
    assert old not in kfp_api.recurring and len(kfp_api.recurring) == 1
    assert f"replacing {old}" in replaced.stdout


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 3 * * *", "has 5 fields; KFP's cron has 6, seconds first"),
        ("0 0 3 * * * *", "has 7 fields"),
        ("0 0 3 * * %", "the day of week field '%' is not a cron field"),
    ],
)
def test_a_cron_kfp_cannot_read_is_refused_before_any_request(kfp_api, cron, says):
    result = warmstart(kfp_api, "schedule", "--cron", cron, *S3_ARGS)
    assert result.returncode == 2
    assert says in result.stderr and result.stderr.count("\n") == 1
    assert kfp_api.requests == []


def test_cron_check_accepts_what_robfig_cron_reads():
    for cron in (
        "0 0 3 * * *",
        "0 30 2 * * 1",
        "0 0 */6 * * *",
        "0 0 9 ? * MON-FRI",
        "@daily",
        "@every 1h30m",
    ):
        assert check_cron(cron) == cron
    with pytest.raises(KubeflowError, match=r"'0 0 3 \* \* \*' means the same"):
        check_cron("0 3 * * *")


def test_runs_lists_each_runs_outcome_from_its_tasks(kfp_api):
    from warmstart.app.submit import Kubeflow
    from warmstart.config import load_config

    cfg = load_config(None, S3_ARGS[1::2])
    kubeflow = Kubeflow(kfp_api.url)
    uploaded, experiment = (
        kubeflow.upload(cfg, "registry.example/warmstart:0.1.0", "warmstart-transfer"),
        kubeflow.experiment("warmstart"),
    )
    for i in range(5):
        kubeflow.run(cfg, uploaded, experiment, f"run {i}")
    oldest_first = sorted(kfp_api.runs.values(), key=lambda run: run.created_at)
    stages = [
        "ingest",
        "fetch model",
        "finetune (pretrained)",
        "finetune (scratch)",
        "evaluate champion",
        "gate",
    ]
    kfp_api.finish(
        oldest_first[0].run_id, "SUCCEEDED", {**dict.fromkeys(stages, "SUCCEEDED"), "register": "SUCCEEDED"}
    )
    kfp_api.finish(oldest_first[1].run_id, "SUCCEEDED", dict.fromkeys(stages, "SUCCEEDED"))
    kfp_api.finish(
        oldest_first[2].run_id, "SUCCEEDED", {"ingest": "SUCCEEDED", "skipped: nothing changed": "SUCCEEDED"}
    )
    kfp_api.finish(
        oldest_first[3].run_id,
        "FAILED",
        {"ingest": "SUCCEEDED", "fetch model": "SUCCEEDED", "finetune (pretrained)": "FAILED"},
        error="task finetune (pretrained) failed\nmore detail",
    )
    kfp_api.finish(
        oldest_first[4].run_id, "RUNNING", {"ingest": "SUCCEEDED", "finetune (scratch)": "RUNNING"}
    )

    listed = warmstart(kfp_api, "runs", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    outcomes = [run["outcome"] for run in json.loads(listed.stdout)]
    assert outcomes == [
        "running: finetune (scratch)",
        "failed at finetune (pretrained): task finetune (pretrained) failed",
        "skipped: nothing changed since the champion",
        "did not pass: nothing registered",
        "passed: registered",
    ]
    list_call = calls(kfp_api, "GET", "/runs")[-1]["query"]
    assert list_call["sort_by"] == "created_at desc" and list_call["page_size"] == "20"
    assert list_call["experiment_id"] == next(iter(kfp_api.experiments))

    table = warmstart(kfp_api, "runs", "--limit", "2")
    assert table.returncode == 0, table.stdout + table.stderr
    assert "running: finetune (scratch)" in table.stdout and "passed: registered" not in table.stdout

    missing = warmstart(kfp_api, "runs", "--experiment", "nope")
    assert missing.returncode == 1 and "has no experiment 'nope'" in missing.stderr


def test_a_bearer_token_from_the_environment_is_sent_and_never_printed(tmp_path, monkeypatch):
    secret = "s3cr3t-token-value"
    with StandIn(token=secret) as kfp_api:
        refused = warmstart(kfp_api, "runs")
        assert refused.returncode == 1
        assert "refused the request (401" in refused.stderr and "KF_PIPELINES_TOKEN" in refused.stderr
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr

        monkeypatch.setenv("KF_PIPELINES_TOKEN", secret)
        result = warmstart(kfp_api, "submit", *S3_ARGS)
        assert result.returncode == 0, result.stdout + result.stderr
        authorized = [r for r in kfp_api.requests if r["authorization"]]
        assert authorized and all(r["authorization"] == f"Bearer {secret}" for r in authorized)
        assert secret not in result.stdout + result.stderr

        # A service-account token file (a projected volume in a pod) when no token is in the environment.
        monkeypatch.delenv("KF_PIPELINES_TOKEN")
        token_file = tmp_path / "token"
        token_file.write_text(secret)
        monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
        before = len(kfp_api.requests)
        from_file = warmstart(kfp_api, "runs", "--json")
        assert from_file.returncode == 0, from_file.stdout + from_file.stderr
        assert {r["authorization"] for r in kfp_api.requests[before:]} == {f"Bearer {secret}"}
        assert kfp_api.violations == []

    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))
    absent = run_warmstart("runs", "--host", "http://127.0.0.1:9")
    assert absent.returncode == 1 and "KF_PIPELINES_SA_TOKEN_PATH names" in absent.stderr


def test_an_unreachable_or_missing_host_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    started = time.perf_counter()
    unreachable = run_warmstart("runs", "--host", "http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert "cannot reach Kubeflow Pipelines at http://127.0.0.1:9" in unreachable.stderr
    assert unreachable.stderr.count("\n") == 1 and "Traceback" not in unreachable.stderr
    assert time.perf_counter() - started < 60
    missing = run_warmstart("submit", *S3_ARGS)
    assert missing.returncode == 1 and "no Kubeflow Pipelines host: pass --host URL" in missing.stderr
    schemeless = run_warmstart("runs", "--host", "kfp.example.com")
    assert schemeless.returncode == 1 and "needs a scheme" in schemeless.stderr


def test_submit_refuses_a_config_that_cannot_work_in_pods_before_any_request(kfp_api):
    result = warmstart(kfp_api, "submit")
    assert result.returncode == 2 and "registry.uri is empty" in result.stderr
    assert kfp_api.requests == []


def test_multi_user_kubeflow_needs_a_namespace_and_gets_it_everywhere():
    with StandIn(multi_user=True) as kfp_api:
        without = warmstart(kfp_api, "submit", *S3_ARGS)
        assert without.returncode == 1 and "is multi-user: pass --namespace" in without.stderr
        result = warmstart(kfp_api, "submit", *S3_ARGS, "--namespace", "team-a")
        assert result.returncode == 0, result.stdout + result.stderr
        (pipeline,) = kfp_api.pipelines.values()
        (experiment,) = kfp_api.experiments.values()
        assert pipeline.namespace == experiment.namespace == "team-a"
        assert calls(kfp_api, "POST", "/pipelines/upload")[0]["query"]["namespace"] == "team-a"
        listed = warmstart(kfp_api, "runs", "--namespace", "team-a", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        # The experiment is looked up in the namespace; its runs are listed by experiment id.
        assert calls(kfp_api, "GET", "/experiments")[-1]["query"]["namespace"] == "team-a"
        assert calls(kfp_api, "GET", "/runs")[-1]["query"]["experiment_id"] == experiment.experiment_id
        assert len(json.loads(listed.stdout)) == 1
        assert kfp_api.violations == []


def test_a_host_that_is_not_the_kfp_api_is_named(tmp_path):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_warmstart("runs", "--host", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert "/apis/v2beta1/healthz answered 404" in result.stderr and "is --host the KFP API?" in result.stderr
