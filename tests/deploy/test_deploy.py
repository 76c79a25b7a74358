"""deploy: the new champion behind a KServe InferenceService, smoke-tested, or rolled back.

There is no cluster with KServe here. The real `kubernetes` client talks to a stand-in API server
(support/kserve_api.py) that checks every InferenceService against KServe's client models and runs
each revision's predictor for real: `warmstart serve` on loopback, on the registered version's
directory. Two real fine-tuned versions are registered; the smoke test compares what the served
revision answers with finetune's offline predictions.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from support.kserve_api import KServeStandIn
from support.serving import serving, trained_and_registered
from support.stages import tiny_config

from warmstart import kube_models
from warmstart.artifacts import load_card
from warmstart.deploy import DeployFailed, build_inference_service, deploy, smoke_inputs, smoke_test
from warmstart.errors import ConfigError, ModelError
from warmstart.registry import Registry


@pytest.fixture(scope="module")
def versions(tmp_path_factory, synthetic_csv, tiny_pretrained_model):
    """Two registered versions of `tiny` (seeds 0 and 1): (work, cfg, [(outputs, record), ...])."""
    work = tmp_path_factory.mktemp("deploy")
    cfg = tiny_config(synthetic_csv, tiny_pretrained_model, work / "registry")
    cfg.deploy.namespace, cfg.deploy.ready_timeout_minutes = "ml", 2
    made = [trained_and_registered(cfg, work, seed, work / f"v{seed}") for seed in (0, 1)]
    return work, cfg, made


@pytest.fixture
def fresh_registry(versions, tmp_path):
    """The two versions with the champion back on version 1, and what register recorded for each."""
    work, cfg, made = versions
    registry = Registry(cfg.registry.uri)
    registry.promote("tiny", 1)
    one = {**made[0][1], "champion": True, "previous_champion": None}
    return registry, one, made


@pytest.fixture
def kserve(kubernetes_client, tmp_path):
    def start(**options):
        server = KServeStandIn(tmp_path, **options)
        started.append(server)
        return server, kubernetes_client(server)

    started = []
    yield start
    for server in started:
        server.close()


@pytest.fixture
def kubernetes_client():
    from kubernetes import client

    def make(server):
        configuration = client.Configuration()
        configuration.host = server.url
        return client.CustomObjectsApi(client.ApiClient(configuration))

    return make


def run_deploy(cfg, work, made, index, custom, **registration):
    outputs, record = made[index]
    return deploy(
        cfg,
        {**record, **registration},
        work / "data",
        [work / "v0" / "evaluation", work / "v1" / "evaluation"],
        "registry.example/warmstart:1",
        custom,
    )


def test_first_deploy_creates_the_service_and_the_served_model_answers_as_judged(
    versions, fresh_registry, kserve
):
    work, cfg, made = versions
    registry, one, _ = fresh_registry
    server, custom = kserve()
    done = run_deploy(cfg, work, made, 0, custom, champion=True, previous_champion=None)
    assert done["deployed"] and done["version"] == 1 and done["canary_percent"] is None
    test_rows = pq.read_metadata(work / "data" / "test.parquet").num_rows
    assert done["smoke_rows"] == min(cfg.deploy.smoke_rows, test_rows)
    service = server.services[("ml", "tiny")]
    predictor = service["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor, "the first deployment takes all traffic"
    container = predictor["containers"][0]
    assert {"name": "STORAGE_URI", "value": registry.version_uri("tiny", 1)} in container["env"]
    assert container["command"] == ["warmstart", "serve"] and "/mnt/models" in container["args"]
    assert predictor["serviceAccountName"] == "warmstart-predictor"
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert not any("AWS_" in e["name"] for e in container["env"]), "credentials come by the service account"
    assert service["metadata"]["annotations"]["warmstart.dev/version"] == "1"
    assert [verb for verb, _ in server.requests][:2] == ["get", "create"]


def test_a_new_version_is_a_canary_beside_the_live_one_and_is_smoke_tested_on_its_own_url(
    versions, fresh_registry, kserve
):
    work, cfg, made = versions
    registry, _, _ = fresh_registry
    server, custom = kserve()
    run_deploy(cfg, work, made, 0, custom, champion=True, previous_champion=None)
    registry.promote("tiny", 2)
    done = run_deploy(cfg, work, made, 1, custom, champion=True, previous_champion=1)
    assert done["deployed"] and done["version"] == 2 and done["previous_version"] == 1
    assert done["canary_percent"] == 10 and "10% canary beside version 1" in done["summary"]
    service = server.services[("ml", "tiny")]
    assert service["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert {"name": "STORAGE_URI", "value": registry.version_uri("tiny", 2)} in service["spec"]["predictor"][
        "containers"
    ][0]["env"]
    assert ("update", "tiny") in server.requests
    assert registry.alias("tiny", "champion") == 2


def test_a_smoke_test_failure_rolls_back_the_traffic_and_the_champion(versions, fresh_registry, kserve):
    work, cfg, made = versions
    registry, _, _ = fresh_registry
    server, custom = kserve()
    run_deploy(cfg, work, made, 0, custom, champion=True, previous_champion=None)
    live = server.services[("ml", "tiny")]["spec"]
    registry.promote("tiny", 2)
    server.serve_instead = registry.version_uri("tiny", 1)  # the new revision serves the wrong model
    with pytest.raises(ModelError) as failed:
        run_deploy(cfg, work, made, 1, custom, champion=True, previous_champion=1)
    message = str(failed.value)
    assert "deploying tiny version 2 failed: the endpoint answered as version '1', not 2" in message
    assert "traffic is back on version 1" in message and "the champion is version 1 again" in message
    assert server.services[("ml", "tiny")]["spec"] == live
    assert registry.alias("tiny", "champion") == 1


def test_a_service_never_ready_is_removed_and_the_champion_alias_moves_back(versions, fresh_registry, kserve):
    work, cfg, made = versions
    registry, _, _ = fresh_registry
    registry.promote("tiny", 2)
    server, custom = kserve(never_ready=True)
    slow = cfg.model_copy(deep=True)
    slow.deploy.ready_timeout_minutes = 0.02
    with pytest.raises(ModelError) as failed:
        run_deploy(slow, work, made, 1, custom, champion=True, previous_champion=1)
    message = str(failed.value)
    assert "was not Ready within 0.02 min (deploy.ready_timeout_minutes): Ready: RevisionMissing" in message
    assert "the new InferenceService ml/tiny was removed" in message
    assert ("ml", "tiny") not in server.services and ("delete", "tiny") in server.requests
    assert registry.alias("tiny", "champion") == 1


def test_the_alias_moved_by_someone_else_meanwhile_is_left_alone(versions, fresh_registry, kserve):
    work, cfg, made = versions
    registry, _, _ = fresh_registry
    server, custom = kserve(never_ready=True)
    slow = cfg.model_copy(deep=True)
    slow.deploy.ready_timeout_minutes = 0.01
    registry.promote("tiny", 1)  # an operator promoted version 1 while version 2 was deploying
    with pytest.raises(ModelError, match="had moved from version 2 meanwhile and was left as it is"):
        run_deploy(slow, work, made, 1, custom, champion=True, previous_champion=None)
    assert registry.alias("tiny", "champion") == 1


@pytest.mark.parametrize(
    "verb, code, message",
    [
        ("create", 403, "may not create InferenceServices in ml; apply k8s/overlays/kserve"),
        ("get", 403, "may not read InferenceServices in ml"),
        ("create", 409, "was created by someone else meanwhile; run deploy again"),
    ],
)
def test_refusals_are_one_line_and_change_nothing(versions, fresh_registry, kserve, verb, code, message):
    work, cfg, made = versions
    registry, _, _ = fresh_registry
    server, custom = kserve(execute=False)
    server.refuse[verb] = code
    with pytest.raises(ModelError) as failed:
        run_deploy(cfg, work, made, 0, custom, champion=True, previous_champion=None)
    assert message in str(failed.value) and "\n" not in str(failed.value)
    assert not server.services and registry.alias("tiny", "champion") == 1


def test_an_update_that_lost_a_race_is_refused(versions, fresh_registry, kserve):
    work, cfg, made = versions
    server, custom = kserve()
    run_deploy(cfg, work, made, 0, custom, champion=True, previous_champion=None)
    server.refuse["update"] = 409
    with pytest.raises(ModelError, match="changed while deploy updated it; run deploy again"):
        run_deploy(cfg, work, made, 1, custom, champion=True, previous_champion=1)


def test_a_version_that_is_not_champion_is_not_deployed(versions, kserve):
    work, cfg, made = versions
    server, custom = kserve(execute=False)
    done = run_deploy(cfg, work, made, 1, custom, champion=False)
    assert done == {"deployed": False, "summary": "version 2 is not the champion, so it was not deployed"}
    assert not server.requests


def test_the_inference_service_is_checked_against_kserve_models(versions):
    _, cfg, _ = versions
    service = build_inference_service(cfg, "tiny", "ml", 1, "s3://b/r/tiny/versions/1", "img:1", 10)
    assert kube_models.problems(service, "V1beta1InferenceService") == []
    service["spec"]["predictor"]["canaryTrafficPercnt"] = 10
    service["spec"]["predictor"]["containers"][0]["resources"]["requests"]["cpu"] = 1
    assert set(kube_models.problems(service, "V1beta1InferenceService")) == {
        "spec.predictor.containers[0].resources.requests.cpu: expected str, got int",
        "spec.predictor.containers[0].resources.limits.cpu: expected str, got int",  # the same map
        "spec.predictor.canaryTrafficPercnt: unknown field",
    }
    bad = cfg.model_copy(deep=True)
    bad.deploy.service_name = "Not_A_Label"
    from warmstart.deploy import service_name

    with pytest.raises(ConfigError, match="cannot name an InferenceService"):
        service_name(bad)


def test_a_run_registers_deploys_and_says_so_in_its_one_message(tmp_path, tiny_pretrained_model):
    """`warmstart run` with deploy.enabled, its Kubernetes client pointed at the stand-in by a
    kubeconfig: register, then deploy with the smoke test against the served version, and the
    notification names the deployment."""
    import yaml
    from support.cli import run_warmstart, tiny_run_config
    from support.webhook import Receiver

    server, receiver = KServeStandIn(tmp_path), Receiver()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "standin", "cluster": {"server": server.url}}],
                    "users": [{"name": "me", "user": {"token": "t"}}],
                    "contexts": [{"name": "here", "context": {"cluster": "standin", "user": "me"}}],
                    "current-context": "here",
                }
            )
        )
        config = tiny_run_config(tmp_path, tiny_pretrained_model)
        result = run_warmstart(
            *("run", "--config", str(config), "--workdir", str(tmp_path / "work")),
            *("--set", "deploy.enabled=true", "--set", "deploy.namespace=ml"),
            *("--set", f"notify.webhook_url={receiver.url}"),
            env={"KUBECONFIG": str(kubeconfig)},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "deploy: deployed version 1 as ml/tiny-reviews" in result.stdout
        service = server.services[("ml", "tiny-reviews")]
        assert service["metadata"]["annotations"]["warmstart.dev/version"] == "1"
        (message,) = receiver.messages
        assert message["warmstart"]["status"] == "passed"
        assert message["warmstart"]["deployed"]["service"] == "tiny-reviews"
        assert message["text"].endswith("; deployed version 1 as ml/tiny-reviews")
    finally:
        server.close()
        receiver.shutdown()


def test_the_smoke_test_refuses_other_labels_or_probabilities_off_by_more_than_the_tolerance(
    versions, tmp_path
):
    work, cfg, made = versions
    version_dir = Registry(cfg.registry.uri).version_uri("tiny", 1)
    inputs, expected = smoke_inputs(work / "data", work / "v0" / "evaluation", 16)
    labels = load_card(work / "data")["label_names"]
    with serving("--model-dir", version_dir, "--name", "tiny", log=tmp_path / "serve.log") as url:
        smoke_test(url, "tiny", 1, "text", inputs, expected, labels, 1e-3)  # as judged: passes
        flipped = expected.copy()
        flipped[3] = flipped[3][::-1]
        if flipped[3].argmax() == expected[3].argmax():
            flipped[3] = [1.0, 0.0] if expected[3].argmax() == 1 else [0.0, 1.0]
        with pytest.raises(
            DeployFailed, match="other labels than the gate judged for 1 of 16 test rows .first: row 3"
        ):
            smoke_test(url, "tiny", 1, "text", inputs, flipped, labels, 1e-3)
        nudged = expected.copy()
        surest = int(abs(nudged[:, 0] - 0.5).argmax())  # moving it by 0.01 keeps its label
        nudged[surest] += [0.01, -0.01] if nudged[surest, 0] < 0.5 else [-0.01, 0.01]
        with pytest.raises(
            DeployFailed,
            match=r"probabilities differ from the offline ones by up to .* \(deploy.tolerance 0.001\)",
        ):
            smoke_test(url, "tiny", 1, "text", inputs, nudged, labels, 1e-3)
