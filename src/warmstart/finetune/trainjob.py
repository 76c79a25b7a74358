"""Multi-node fine-tuning on Kubeflow Trainer: the finetune step submits a TrainJob and waits for it.

With `train.num_nodes` > 1 the finetune pod does not train. It copies its inputs (the dataset and
the base model) to the checkpoint storage, which every node can reach, and creates a TrainJob
(trainer.kubeflow.org/v1alpha1) on the `torch-distributed` runtime. The job runs the warmstart image
on `num_nodes` nodes with `nproc_per_node` GPUs each, and torchrun gets its rendezvous from the
runtime. The nodes get the GPU node selector and tolerations of the `cluster` section through the
job's runtimePatches, the job gets Kueue's queue label when `cluster.kueue_queue` is set, and the
Trainer stops it after `placement.trainer_timeout_minutes`. The job is checked against the Trainer's
CRD schema (trainer_api.py) before it is sent. The pod prints the job's progress (status.trainerStatus)
when the Trainer reports it and streams the first node's log when not, and when the job completes it
copies the model and evaluation back into its own outputs. The job's name is derived from the run's
inputs, so a retried finetune pod finds its job again instead of starting a second one. A failed job
is replaced, and the new one resumes from the checkpoints.

Credentials reach the nodes only as references to a Kubernetes Secret (`placement.trainer_s3_secret`),
never as values.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from warmstart.config import Config
from warmstart.errors import ConfigError, ModelError
from warmstart.finetune.checkpoints import arm_run
from warmstart.kube_models import api_message, load_client_config, pod_namespace
from warmstart.storage import fetch_tree, open_store, put_tree, scheme_of

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
IMAGE_ENV = "WARMSTART_IMAGE"  # set on the finetune task at compile time: the pipeline's own image
# Labels the Trainer's JobSet puts on the pods of a TrainJob; node 0's log is the one streamed.
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
POLL_SECONDS = 10.0
KUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PATCH_MANAGER = "warmstart/finetune"  # owns warmstart's entry in the TrainJob's runtimePatches


def job_name(
    cfg: Config,
    init: str,
    card: dict[str, Any],
    manifest: dict[str, Any],
    learning_rates: list[float] | None = None,
    fraction: float = 1.0,
) -> str:
    extra = {"learning_rates": learning_rates, "fraction": fraction} if learning_rates else {}
    return f"warmstart-{arm_run(cfg, init, card, manifest, **extra)}"[:63]


def check_placement(cfg: Config) -> None:
    """What a TrainJob needs that is known before any training: checkpoint storage every node reaches,
    the Trainer's API types, an image for the nodes and a namespace. The preflight checks it (ingest),
    and so does the finetune step before it submits."""
    root = cfg.checkpoint_root()
    if scheme_of(root) != "s3":
        raise ConfigError(
            f"train.num_nodes={cfg.train.num_nodes} needs storage every node reaches: set placement.checkpoint_uri "
            f"(or registry.uri) to s3://BUCKET/PREFIX, not '{root or 'empty'}'"
        )
    _need_kubeflow_extra()
    if not (cfg.placement.trainer_image or os.environ.get(IMAGE_ENV)):
        raise ConfigError(
            "placement.trainer_image is empty and the step has no WARMSTART_IMAGE; compile with --image"
        )
    _namespace(cfg)


def _need_kubeflow_extra() -> None:
    import importlib.util

    if any(importlib.util.find_spec(module) is None for module in ("kubeflow_trainer_api", "jsonschema")):
        raise ConfigError(
            "train.num_nodes > 1 builds a Kubeflow Trainer TrainJob, which needs pip install 'warmstart[kubeflow]'"
        )


def build_trainjob(cfg: Config, name: str, image: str, worker_args: list[str]) -> dict[str, Any]:
    """The TrainJob, checked against the Trainer's CRD schema and API types before it is sent: a field
    they do not know is an error, not a field the cluster drops."""
    from warmstart.finetune import trainer_api

    _need_kubeflow_extra()
    train, placement, cluster = cfg.train, cfg.placement, cfg.cluster
    env = [{"name": key, "value": value} for key, value in sorted(cfg.storage.environment().items())]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": placement.trainer_s3_secret, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    env.append({"name": "HF_HOME", "value": "/tmp/hf"})
    limits = {"nvidia.com/gpu": str(train.nproc_per_node), **placement.node_resources}
    labels = {"app.kubernetes.io/part-of": "warmstart"}
    if cluster.kueue_queue:
        labels[KUEUE_LABEL] = cluster.kueue_queue
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "runtimeRef": {
                "name": placement.trainer_runtime,
                "kind": "ClusterTrainingRuntime",
                "apiGroup": GROUP,
            },
            # The Trainer fails the job (DeadlineExceeded) once it has run this long; a retried step
            # replaces it and resumes from the checkpoints.
            "activeDeadlineSeconds": placement.trainer_timeout_minutes * 60,
            "trainer": {
                "image": image,
                # The torch-distributed runtime sets torchrun's PET_* rendezvous variables on each node.
                "command": ["torchrun", "-m", "warmstart.finetune", *worker_args],
                "numNodes": train.num_nodes,
                "numProcPerNode": train.nproc_per_node,
                "resourcesPerNode": {"requests": limits, "limits": limits},
                "env": env,
            },
        },
    }
    node_pod = {}
    if cluster.gpu_node_selector:
        node_pod["nodeSelector"] = dict(cluster.gpu_node_selector)
    if cluster.gpu_tolerations:
        node_pod["tolerations"] = [
            {key: value for key, value in toleration.model_dump().items() if value}
            for toleration in cluster.gpu_tolerations
        ]
    if node_pod:
        job["spec"]["runtimePatches"] = [_node_patch(node_pod)]
    trainer_api.check(job, f"TrainJob {name}")
    return job


def _node_patch(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A runtimePatches entry that sets `pod_spec` fields on the pods of the runtime's `node` job."""
    node_job = {"name": "node", "template": {"spec": {"template": {"spec": pod_spec}}}}
    return {
        "manager": PATCH_MANAGER,
        "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_job]}}},
    }


def _clients() -> tuple[Any, Any]:
    from kubernetes import client

    load_client_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def _namespace(cfg: Config) -> str:
    namespace = cfg.placement.trainer_namespace or pod_namespace()
    if namespace:
        return namespace
    raise ConfigError(
        "placement.trainer_namespace is empty and this is not a pod; set the namespace for the TrainJob"
    )


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _create(custom: Any, namespace: str, job: dict[str, Any]) -> None:
    # Strict: a field the cluster's Trainer does not know is refused rather than dropped, so a job
    # built for a newer Trainer than the cluster runs says so at once.
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job, field_validation="Strict")


def submit(custom: Any, namespace: str, job: dict[str, Any]) -> None:
    """Create the job; an existing job of the same name is reused, or replaced when it failed."""
    from kubernetes.client.exceptions import ApiException

    from warmstart.finetune.trainer_api import RELEASE

    name = job["metadata"]["name"]
    try:
        _create(custom, namespace, job)
        print(f"finetune: submitted TrainJob {namespace}/{name}", flush=True)
        return
    except ApiException as err:
        if err.status == 404:
            raise ModelError(
                f"the cluster has no TrainJob API ({GROUP}/{VERSION}); install Kubeflow Trainer or set train.num_nodes=1"
            ) from None
        if err.status == 403:
            raise ModelError(
                f"the pipeline's service account may not create TrainJobs in {namespace}; "
                f"apply the warmstart Role from k8s/ or set train.num_nodes=1"
            ) from None
        if err.status in (400, 422):
            raise ModelError(
                f"the cluster refused TrainJob {namespace}/{name}: {api_message(err)}; warmstart writes TrainJobs "
                f"for Kubeflow Trainer {RELEASE} (v2.2 or newer needed)"
            ) from None
        if err.status != 409:
            raise ModelError(
                f"creating TrainJob {namespace}/{name} failed: {err.status} {err.reason}"
            ) from None
    existing = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    if _condition(existing, "Failed"):
        print(
            f"finetune: TrainJob {name} failed before; replacing it (it resumes from checkpoints)", flush=True
        )
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        _create(custom, namespace, job)
    else:
        print(f"finetune: TrainJob {namespace}/{name} exists (a retried step); waiting for it", flush=True)


def progress_line(job: dict[str, Any]) -> str | None:
    """What the job's status.trainerStatus says of its progress, as one line; None when it says nothing
    (the Trainer's TrainJobStatus feature gate is off, or training has not reported yet)."""
    status = job.get("status", {}).get("trainerStatus") or {}
    parts = []
    if status.get("progressPercentage") is not None:
        parts.append(f"{status['progressPercentage']}%")
    if status.get("estimatedRemainingSeconds"):
        parts.append(f"about {math.ceil(status['estimatedRemainingSeconds'] / 60)} min left")
    parts += [f"{metric['name']} {metric['value']}" for metric in status.get("metrics") or []]
    return f"finetune: TrainJob {job['metadata']['name']}: {', '.join(parts)}" if parts else None


def wait(custom: Any, core: Any, namespace: str, name: str, timeout_s: float, poll_s: float = 10.0) -> None:
    """Poll the job until Complete, printing its progress when it reports one (status.trainerStatus)
    and node 0's new log lines when not; raise on Failed or timeout."""
    from kubernetes.client.exceptions import ApiException

    deadline, printed, reported = time.monotonic() + timeout_s, 0, None
    while True:
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        progress = progress_line(job)
        if progress is None:
            printed = _stream_log(core, namespace, name, printed, ApiException)
        elif progress != reported:
            print(progress, flush=True)
            reported = progress
        if _condition(job, "Complete"):
            return
        failed = _condition(job, "Failed")
        if failed:
            raise ModelError(
                f"TrainJob {namespace}/{name} failed: {failed.get('reason', '')} {failed.get('message', '')}".strip()
                + f"; see kubectl -n {namespace} logs -l {JOBSET_LABEL}={name}"
            )
        if time.monotonic() > deadline:
            raise ModelError(
                f"TrainJob {namespace}/{name} did not finish within {timeout_s / 60:.0f} min "
                f"(placement.trainer_timeout_minutes); the Trainer stops it once it has run that long "
                f"(activeDeadlineSeconds), or delete it"
            )
        time.sleep(poll_s)


def _stream_log(core: Any, namespace: str, name: str, printed: int, api_exception: type) -> int:
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_LABEL}={name},{INDEX_LABEL}=0")
        if not pods.items:
            return printed
        log = core.read_namespaced_pod_log(pods.items[0].metadata.name, namespace)
    except api_exception:
        return printed  # the pod is starting or gone; the job's status decides
    lines = log.splitlines()
    for line in lines[printed:]:
        print(line, flush=True)
    return len(lines)


def finetune_on_trainer(
    cfg: Config,
    init: str,
    dataset_dir: Path,
    base_model_dir: Path,
    model_dir: Path,
    evaluation_dir: Path,
    learning_rates: list[float] | None = None,
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Run one arm (its search over `learning_rates`, on `fraction` of the rows) as a multi-node TrainJob
    and copy its outputs into this step's output paths."""
    from warmstart.artifacts import load_card, load_manifest, load_summary
    from warmstart.finetune.train import run_arguments

    check_placement(cfg)
    root, image = cfg.checkpoint_root(), cfg.placement.trainer_image or os.environ[IMAGE_ENV]
    name = job_name(
        cfg, init, load_card(dataset_dir), load_manifest(base_model_dir), learning_rates, fraction
    )
    store = open_store(f"{root.rstrip('/')}/{name}")
    put_tree(dataset_dir, store.uri("inputs/dataset"))
    put_tree(base_model_dir, store.uri("inputs/base_model"))
    worker_args = [
        *("--config-json", cfg.model_dump_json(), "--init", init),
        *("--dataset", store.uri("inputs/dataset"), "--base-model", store.uri("inputs/base_model")),
        *("--model", store.uri("outputs/model"), "--evaluation", store.uri("outputs/evaluation")),
        *(run_arguments(learning_rates, fraction) if learning_rates else []),
    ]
    job = build_trainjob(cfg, name, image, worker_args)
    custom, core = _clients()
    namespace = _namespace(cfg)
    submit(custom, namespace, job)
    wait(custom, core, namespace, name, cfg.placement.trainer_timeout_minutes * 60, POLL_SECONDS)
    fetch_tree(store.uri("outputs/model"), model_dir)
    fetch_tree(store.uri("outputs/evaluation"), evaluation_dir)
    store.delete("inputs")
    store.delete("outputs")
    return load_summary(evaluation_dir)
