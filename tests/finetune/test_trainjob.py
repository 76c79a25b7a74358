"""The multi-node path: the TrainJob warmstart builds, and how it submits, follows and fails one.

There is no Kubernetes cluster or Kubeflow Trainer here. The job is checked against the Trainer
v2.3.0 CRD schema (warmstart.finetune.trainer_api) and API types (kubeflow-trainer-api). The real
`kubernetes` client talks to a local HTTP stand-in for the API server that serves the TrainJob and
Pod endpoints, refuses what the CRD schema refuses, and serves only TrainJobs that fit it. For the
end-to-end test, the stand-in runs the job's own command once per node, on this machine, with the
rendezvous variables the torch-distributed runtime sets (PET_*), and the S3 server is the real
local one.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY
from support.stages import stage_inputs, tiny_config, with_train

import warmstart.finetune.trainjob as trainjob
from warmstart.errors import ConfigError, ModelError
from warmstart.finetune import trainer_api
from warmstart.finetune.launch import finetune

JOBS = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)/log)?$")


class KubernetesStandIn(ThreadingHTTPServer):
    """Serves TrainJobs and their pods' logs. `script` fixes the statuses a job goes through, or
    `execute` runs each node's command for real; `secrets` resolves secretKeyRef env entries; `logs`
    are the node-0 logs of scripted jobs. A job the CRD schema refuses is refused as the API server
    does with fieldValidation=Strict (400 for an unknown field, 422 for a wrong value)."""

    def __init__(self, script=None, execute=False, create_status=201, secrets=None, logs=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script, self.execute, self.create_status = list(script or []), execute, create_status
        self.secrets = secrets or {}
        self.jobs: dict[str, dict] = {}
        self.created: list[dict] = []
        self.field_validation: list[str] = []
        self.deleted: list[str] = []
        self.nodes: dict[str, list[subprocess.Popen]] = {}
        self.logs: dict[str, str] = dict(logs or {})
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def create(self, job, field_validation):
        self.field_validation.append(field_validation)
        problems = trainer_api.schema_problems(job)
        unknown = [p.split(":")[0] for p in problems if p.endswith(": unknown field")]
        if unknown and field_validation == "Strict":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            return refusal(400, "BadRequest", f"strict decoding error: {fields}")
        if problems:
            name = job["metadata"]["name"]
            return refusal(
                422, "Invalid", f'TrainJob.trainer.kubeflow.org "{name}" is invalid: ' + "; ".join(problems)
            )
        name = job["metadata"]["name"]
        if name in self.jobs:
            return 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
        self.jobs[name] = dict(job)
        self.created.append(job)
        if self.execute:
            self.start_nodes(job)
        return 201, job

    def start_nodes(self, job):
        trainer = job["spec"]["trainer"]
        port = free_port()
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for entry in trainer["env"]:
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            env[entry["name"]] = (
                self.secrets[reference["name"]][reference["key"]] if reference else entry["value"]
            )
        nodes = []
        for rank in range(trainer["numNodes"]):
            node_env = {
                **env,
                "PET_NNODES": str(trainer["numNodes"]),
                "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            nodes.append(
                subprocess.Popen(
                    trainer["command"],
                    env=node_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        self.nodes[job["metadata"]["name"]] = nodes
        self.logs[job["metadata"]["name"]] = ""

        def collect():
            for line in nodes[0].stdout:
                self.logs[job["metadata"]["name"]] += line

        threading.Thread(target=collect, daemon=True).start()

    def status(self, name):
        if self.execute:
            codes = [node.poll() for node in self.nodes[name]]
            if any(code not in (None, 0) for code in codes):
                return status("Failed", "exit")
            if all(code == 0 for code in codes):
                return status("Complete")
            return {}
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        server: KubernetesStandIn = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not JOBS.match(urlparse(self.path).path):
            return self.reply(404, {"kind": "Status", "code": 404})
        if server.create_status != 201:
            return self.reply(server.create_status, {"kind": "Status", "code": server.create_status})
        field_validation = parse_qs(urlparse(self.path).query).get("fieldValidation", ["Warn"])[0]
        self.reply(*server.create(body, field_validation))

    def do_GET(self):
        server: KubernetesStandIn = self.server
        url = urlparse(self.path)
        if match := JOBS.match(url.path):
            job = server.jobs.get(match.group(2))
            if job is None:
                return self.reply(404, {"kind": "Status", "code": 404})
            job.pop("status", None)
            if reported := server.status(match.group(2)):  # a new job has no status yet
                job["status"] = reported
            problems = trainer_api.schema_problems(job)
            if problems:  # a fault of the test's script, not of warmstart
                return self.reply(500, {"kind": "Status", "code": 500, "message": "; ".join(problems)})
            return self.reply(200, job)
        if match := PODS.match(url.path):
            if match.group(2):  # a pod's log
                return self.reply(200, server.logs.get(match.group(2).removesuffix("-node-0-0"), ""))
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            name = re.search(r"jobset-name=([^,]+)", selector).group(1)
            items = [{"metadata": {"name": f"{name}-node-0-0"}}] if name in server.logs else []
            return self.reply(200, {"kind": "PodList", "apiVersion": "v1", "items": items})
        self.reply(404, {"kind": "Status", "code": 404})

    def do_DELETE(self):
        server: KubernetesStandIn = self.server
        name = JOBS.match(self.path).group(2)
        server.jobs.pop(name, None)
        server.deleted.append(name)
        self.reply(200, {"kind": "Status", "status": "Success"})


def refusal(code, reason, message):
    return code, {"kind": "Status", "status": "Failure", "reason": reason, "code": code, "message": message}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def kubernetes_api(monkeypatch):
    """Point warmstart's Kubernetes clients at a stand-in; the test sets it up through the returned hook."""
    from kubernetes import client

    servers = []

    def use(server):
        configuration = client.Configuration()
        configuration.host = server.url
        api = client.ApiClient(configuration)
        monkeypatch.setattr(
            trainjob, "_clients", lambda: (client.CustomObjectsApi(api), client.CoreV1Api(api))
        )
        servers.append(server)
        return client.CustomObjectsApi(api), client.CoreV1Api(api)

    yield use
    for server in servers:
        server.shutdown()


def multinode(cfg, **changes):
    return with_train(cfg, **{"num_nodes": 2, "nproc_per_node": 1, "trainer_namespace": "ml", **changes})


def node_pod_spec(job):
    """The pod spec fields warmstart's runtime patch sets on the nodes of the runtime's `node` job."""
    (patch,) = [p for p in job["spec"].get("runtimePatches", []) if p["manager"] == trainjob.PATCH_MANAGER]
    (node_job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node_job["name"] == "node"
    return node_job["template"]["spec"]["template"]["spec"]


def test_the_trainjob_follows_the_trainer_api_and_carries_no_secret(tiny_random_model, synthetic_csv):
    cfg = multinode(
        tiny_config(synthetic_csv, tiny_random_model),
        nproc_per_node=4,
        node_resources={"cpu": "16", "memory": "120Gi"},
        trainer_s3_secret="s3-creds",
    )
    cfg.storage.endpoint_url = "http://minio.storage:9000"
    job = trainjob.build_trainjob(
        cfg, "warmstart-pretrained-abc", "registry.example/warmstart:1.0", ["--init", "x"]
    )
    spec = job["spec"]
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert spec["runtimeRef"] == {
        "name": "torch-distributed",
        "kind": "ClusterTrainingRuntime",
        "apiGroup": "trainer.kubeflow.org",
    }
    trainer = spec["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"], trainer["image"]) == (
        2,
        4,
        "registry.example/warmstart:1.0",
    )
    assert trainer["command"][:3] == ["torchrun", "-m", "warmstart.finetune"]
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": "4", "cpu": "16", "memory": "120Gi"}
    env = {entry["name"]: entry for entry in trainer["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": key}}}
    assert spec["activeDeadlineSeconds"] == 1440 * 60
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert node_pod_spec(job) == {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    }
    assert not trainer_api.schema_problems(job) and not trainer_api.model_losses(job)


def test_the_nodes_go_to_the_gpu_nodes_in_the_kueue_queue_within_the_time_limit(
    tiny_random_model, synthetic_csv
):
    cfg = multinode(tiny_config(synthetic_csv, tiny_random_model), trainer_timeout_minutes=90)
    cfg.cluster.gpu_node_selector = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    cfg.cluster.gpu_tolerations = [
        {"key": "gpu", "operator": "Equal", "value": "h100", "effect": "NoExecute"},
        {"key": "", "operator": "Exists", "effect": ""},
    ]
    cfg.cluster.kueue_queue = "team-gpus"
    job = trainjob.build_trainjob(cfg, "warmstart-x", "registry.example/warmstart:1.0", [])
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    assert job["spec"]["activeDeadlineSeconds"] == 90 * 60
    assert node_pod_spec(job) == {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "h100", "effect": "NoExecute"},
            {"operator": "Exists"},
        ],
    }
    cfg.cluster.gpu_tolerations, cfg.cluster.gpu_node_selector = [], {}
    assert "runtimePatches" not in trainjob.build_trainjob(cfg, "warmstart-x", "i:1", [])["spec"]


def built_job(tiny_random_model, synthetic_csv):
    cfg = multinode(tiny_config(synthetic_csv, tiny_random_model))
    return trainjob.build_trainjob(cfg, "j", "registry.example/warmstart:1.0", ["--init", "x"])


# Misspellings and what Trainers before v2.2 took (podTemplateOverrides, which runtimePatches
# replaced; numProcPerNode as a string, an int since): each one a cluster drops without a word or
# refuses, and warmstart must refuse first.
STALE = {
    "misspelled trainer field": (("spec", "trainer", "numProcsPerNode"), 4),
    "misspelled spec field": (("spec", "activeDeadlineSecond"), 60),
    "podTemplateOverrides": (("spec", "podTemplateOverrides"), [{"targetJobs": [{"name": "node"}]}]),
    "nproc 'auto'": (("spec", "trainer", "numProcPerNode"), "auto"),
}


def with_field(job, path, value):
    job = json.loads(json.dumps(job))
    *parents, key = path
    target = job
    for parent in parents:
        target = target[parent]
    target[key] = value
    return job


@pytest.mark.parametrize("case", STALE)
def test_a_stale_or_misspelled_trainjob_field_is_refused_not_dropped(
    case, tiny_random_model, synthetic_csv, kubernetes_api
):
    path, value = STALE[case]
    job = with_field(built_job(tiny_random_model, synthetic_csv), path, value)
    with pytest.raises(ConfigError, match=re.escape(".".join(path))):
        trainer_api.check(job, "TrainJob j")
    # The stand-in refuses it as the API server does, and warmstart asks the server to be strict.
    server = KubernetesStandIn()
    custom, _ = kubernetes_api(server)
    with pytest.raises(
        ModelError, match=rf"the cluster refused TrainJob ml/j: .*{re.escape('.'.join(path))}"
    ):
        trainjob.submit(custom, "ml", job)
    assert server.field_validation == ["Strict"] and not server.created


def test_build_trainjob_refuses_a_field_it_would_lose(tiny_random_model, synthetic_csv, monkeypatch):
    """What a kubeflow-trainer-api older than the schema would do: drop a field it has no model for."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    to_dict = TrainerV1alpha1TrainJob.to_dict

    def older_models(self):
        out = to_dict(self)
        out["spec"].pop("runtimePatches", None)
        return out

    monkeypatch.setattr(TrainerV1alpha1TrainJob, "to_dict", older_models)
    with pytest.raises(
        ConfigError, match=r"TrainJob j loses spec\.runtimePatches in the kubeflow-trainer-api"
    ):
        built_job(tiny_random_model, synthetic_csv)


def test_a_node_resource_the_trainer_refuses_is_a_config_error(tiny_random_model, synthetic_csv):
    cfg = multinode(tiny_config(synthetic_csv, tiny_random_model), node_resources={"memory": "120 GB"})
    with pytest.raises(ConfigError, match=r"spec\.trainer\.resourcesPerNode\.limits\.memory: '120 GB'"):
        trainjob.build_trainjob(cfg, "j", "registry.example/warmstart:1.0", [])


JOB = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "TrainJob",
    "metadata": {"name": "j"},
    "spec": {"runtimeRef": {"name": "torch-distributed"}},
}


def status(kind, message=""):
    condition = {"type": kind, "status": "True", "reason": kind, "message": message}
    return {"conditions": [{**condition, "lastTransitionTime": "2026-06-12T03:00:00Z"}]}


def test_waiting_follows_the_job_to_complete(kubernetes_api):
    custom, core = kubernetes_api(KubernetesStandIn(script=[{}, {}, status("Complete")]))
    job = JOB
    trainjob.submit(custom, "ml", job)
    trainjob.wait(custom, core, "ml", "j", timeout_s=30, poll_s=0.01)


def trainer_status(percent=None, remaining=None, **metrics):
    reported = {"lastUpdatedTime": "2026-06-12T03:00:00Z"}
    if percent is not None:
        reported["progressPercentage"] = percent
    if remaining is not None:
        reported["estimatedRemainingSeconds"] = remaining
    if metrics:
        reported["metrics"] = [{"name": name, "value": value} for name, value in metrics.items()]
    return {"trainerStatus": reported}


def test_waiting_prints_the_trainers_progress_once_per_change_and_the_log_until_there_is_one(
    kubernetes_api, capsys
):
    script = [
        {},
        trainer_status(10, 3600),
        trainer_status(10, 3600),  # unchanged: not printed again
        trainer_status(45, 1800, loss="0.2347", eval_accuracy="0.91"),
        {**status("Complete"), **trainer_status(100, 0, loss="0.1")},
    ]

    class LogGrowsEveryPoll(KubernetesStandIn):
        def status(self, name):
            self.logs[name] += f"node 0 log line {self.logs[name].count(chr(10)) + 1}\n"
            return super().status(name)

    server = LogGrowsEveryPoll(script=script, logs={"j": ""})
    custom, core = kubernetes_api(server)
    trainjob.submit(custom, "ml", JOB)
    trainjob.wait(custom, core, "ml", "j", timeout_s=30, poll_s=0.01)
    assert capsys.readouterr().out.splitlines() == [
        "finetune: submitted TrainJob ml/j",
        "node 0 log line 1",  # no progress reported yet: the log
        "finetune: TrainJob j: 10%, about 60 min left",
        "finetune: TrainJob j: 45%, about 30 min left, loss 0.2347, eval_accuracy 0.91",
        "finetune: TrainJob j: 100%, loss 0.1",
    ]


def test_a_failed_job_is_one_error_naming_it_and_where_its_logs_are(kubernetes_api):
    custom, core = kubernetes_api(KubernetesStandIn(script=[{}, status("Failed", "node 1 OOMKilled")]))
    custom.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs", JOB)
    with pytest.raises(
        ModelError, match=r"TrainJob ml/j failed: Failed node 1 OOMKilled; see kubectl -n ml logs"
    ):
        trainjob.wait(custom, core, "ml", "j", timeout_s=30, poll_s=0.01)


def test_a_job_that_never_finishes_times_out_clearly(kubernetes_api):
    custom, core = kubernetes_api(KubernetesStandIn(script=[{}]))
    custom.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", "ml", "trainjobs", JOB)
    with pytest.raises(ModelError, match="did not finish within 0 min"):
        trainjob.wait(custom, core, "ml", "j", timeout_s=0.05, poll_s=0.01)


def test_a_retried_step_reuses_a_running_job_and_replaces_a_failed_one(kubernetes_api):
    server = KubernetesStandIn(script=[{}])
    custom, _ = kubernetes_api(server)
    job = JOB
    trainjob.submit(custom, "ml", job)
    trainjob.submit(custom, "ml", job)  # the job is running: reuse it
    assert len(server.created) == 1 and not server.deleted
    server.script = [status("Failed")]
    trainjob.submit(custom, "ml", job)
    assert server.deleted == ["j"] and len(server.created) == 2


@pytest.mark.parametrize(
    ("code", "message"),
    [(404, "the cluster has no TrainJob API"), (403, "may not create TrainJobs in ml")],
)
def test_a_cluster_without_the_trainer_or_the_rights_gets_one_line(kubernetes_api, code, message):
    custom, _ = kubernetes_api(KubernetesStandIn(create_status=code))
    with pytest.raises(ModelError, match=message):
        trainjob.submit(custom, "ml", {"metadata": {"name": "j"}})


def test_multinode_needs_shared_storage(tmp_path, tiny_random_model, synthetic_csv):
    cfg = multinode(tiny_config(synthetic_csv, tiny_random_model, checkpoint_uri=str(tmp_path)))
    with pytest.raises(ConfigError, match="needs storage every node reaches"):
        finetune(cfg, "pretrained", tmp_path, tmp_path, tmp_path / "m", tmp_path / "e")


def test_a_two_node_trainjob_trains_and_the_step_gets_its_outputs(
    kubernetes_api, s3_prefix, tmp_path, synthetic_csv, tiny_pretrained_model, monkeypatch
):
    """The stand-in runs the TrainJob's command as two 'nodes' on this machine (gloo, one process each)."""
    cfg = multinode(tiny_config(synthetic_csv, tiny_pretrained_model, epochs=1, checkpoint_uri=s3_prefix))
    stage_inputs(cfg, tmp_path)
    monkeypatch.setenv(trainjob.IMAGE_ENV, "registry.example/warmstart:test")
    secrets = {"warmstart-s3": {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}}
    server = KubernetesStandIn(execute=True, secrets=secrets)
    kubernetes_api(server)
    monkeypatch.setattr(trainjob, "POLL_SECONDS", 0.2)
    summary = finetune(
        cfg, "pretrained", tmp_path / "data", tmp_path / "base", tmp_path / "m", tmp_path / "e"
    )
    assert summary["processes"] == 2
    assert (tmp_path / "m" / "model.safetensors").exists() and (
        tmp_path / "e" / "predictions.parquet"
    ).exists()
    assert summary["test_metrics"]["accuracy"] > 0.8
    assert len(server.created) == 1
    assert "finetune[pretrained seed 0] step" in server.logs[server.created[0]["metadata"]["name"]]
