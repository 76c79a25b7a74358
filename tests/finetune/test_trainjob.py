"""The multi-node path: the TrainJob warmstart builds, and how it submits, follows and fails one.

There is no Kubernetes cluster or Kubeflow Trainer here. The job is checked against the Trainer's API
types (kubeflow-trainer-api). The real `kubernetes` client talks to a local HTTP stand-in for the API
server that serves the TrainJob and Pod endpoints. For the end-to-end test, the stand-in runs the
job's own command once per node, on this machine, with the rendezvous variables the
torch-distributed runtime sets (PET_*), and the S3 server is the real local one.
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
from warmstart.finetune.launch import finetune

JOBS = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)/log)?$")


class KubernetesStandIn(ThreadingHTTPServer):
    """Serves TrainJobs and their pods' logs. `script` fixes the statuses a job goes through, or
    `execute` runs each node's command for real; `secrets` resolves secretKeyRef env entries."""

    def __init__(self, script=None, execute=False, create_status=201, secrets=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script, self.execute, self.create_status = list(script or []), execute, create_status
        self.secrets = secrets or {}
        self.jobs: dict[str, dict] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.nodes: dict[str, list[subprocess.Popen]] = {}
        self.logs: dict[str, str] = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def create(self, job):
        from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

        TrainerV1alpha1TrainJob.from_dict(job)  # what the API server would refuse, we refuse
        name = job["metadata"]["name"]
        if name in self.jobs:
            return 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
        self.jobs[name] = {**job, "status": {}}
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
                return {
                    "conditions": [
                        {"type": "Failed", "status": "True", "reason": "NodeFailed", "message": "exit"}
                    ]
                }
            if all(code == 0 for code in codes):
                return {"conditions": [{"type": "Complete", "status": "True"}]}
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
        if not JOBS.match(self.path):
            return self.reply(404, {"kind": "Status", "code": 404})
        if server.create_status != 201:
            return self.reply(server.create_status, {"kind": "Status", "code": server.create_status})
        self.reply(*server.create(body))

    def do_GET(self):
        server: KubernetesStandIn = self.server
        url = urlparse(self.path)
        if match := JOBS.match(url.path):
            job = server.jobs.get(match.group(2))
            if job is None:
                return self.reply(404, {"kind": "Status", "code": 404})
            job["status"] = server.status(match.group(2))
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


JOB = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "TrainJob",
    "metadata": {"name": "j"},
    "spec": {"runtimeRef": {"name": "torch-distributed"}},
}


def status(kind, message=""):
    return {"conditions": [{"type": kind, "status": "True", "reason": kind, "message": message}]}


def test_waiting_follows_the_job_to_complete(kubernetes_api):
    custom, core = kubernetes_api(KubernetesStandIn(script=[{}, {}, status("Complete")]))
    job = JOB
    trainjob.submit(custom, "ml", job)
    trainjob.wait(custom, core, "ml", "j", timeout_s=30, poll_s=0.01)


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
