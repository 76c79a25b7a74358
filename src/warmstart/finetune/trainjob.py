"""Multi-node fine-tuning on Kubeflow Trainer: the finetune step submits a TrainJob and waits for it.

With `train.num_nodes` > 1 the finetune pod does not train. It copies its inputs (the dataset and
the base model) to the checkpoint storage, which every node can reach, and creates a TrainJob
(trainer.kubeflow.org/v1alpha1) on the `torch-distributed` runtime. The job runs the warmstart image
on `num_nodes` nodes with `nproc_per_node` GPUs each, and torchrun gets its rendezvous from the
runtime. The pod streams the first node's log, and when the job completes it copies the model and
evaluation back into its own outputs. The job's name is derived from the run's inputs, so a retried
finetune pod finds its job again instead of starting a second one. A failed job is replaced, and
the new one resumes from the checkpoints.

Credentials reach the nodes only as references to a Kubernetes Secret (`placement.trainer_s3_secret`),
never as values.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from warmstart.config import Config
from warmstart.errors import ConfigError, ModelError
from warmstart.finetune.checkpoints import arm_run
from warmstart.storage import fetch_tree, open_store, put_tree, scheme_of

GROUP, VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
IMAGE_ENV = "WARMSTART_IMAGE"  # set on the finetune task at compile time: the pipeline's own image
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# Labels the Trainer's JobSet puts on the pods of a TrainJob; node 0's log is the one streamed.
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
POLL_SECONDS = 10.0


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
    import importlib.util

    root = cfg.checkpoint_root()
    if scheme_of(root) != "s3":
        raise ConfigError(
            f"train.num_nodes={cfg.train.num_nodes} needs storage every node reaches: set placement.checkpoint_uri "
            f"(or registry.uri) to s3://BUCKET/PREFIX, not '{root or 'empty'}'"
        )
    if importlib.util.find_spec("kubeflow_trainer_api") is None:
        raise ConfigError(
            "train.num_nodes > 1 builds a Kubeflow Trainer TrainJob, which needs pip install 'warmstart[kubeflow]'"
        )
    if not (cfg.placement.trainer_image or os.environ.get(IMAGE_ENV)):
        raise ConfigError(
            "placement.trainer_image is empty and the step has no WARMSTART_IMAGE; compile with --image"
        )
    _namespace(cfg)


def build_trainjob(cfg: Config, name: str, image: str, worker_args: list[str]) -> dict[str, Any]:
    """The TrainJob, checked against the Trainer's API types (kubeflow-trainer-api) before it is sent."""
    try:
        from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
    except ImportError:
        raise ConfigError(
            "train.num_nodes > 1 builds a Kubeflow Trainer TrainJob, which needs pip install 'warmstart[kubeflow]'"
        ) from None

    train, placement = cfg.train, cfg.placement
    env = [{"name": key, "value": value} for key, value in sorted(cfg.storage.environment().items())]
    env += [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": placement.trainer_s3_secret, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    env.append({"name": "HF_HOME", "value": "/tmp/hf"})
    limits = {"nvidia.com/gpu": str(train.nproc_per_node), **placement.node_resources}
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "warmstart"}},
        "spec": {
            "runtimeRef": {
                "name": placement.trainer_runtime,
                "kind": "ClusterTrainingRuntime",
                "apiGroup": GROUP,
            },
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
    return TrainerV1alpha1TrainJob.from_dict(job).to_dict()


def _clients() -> tuple[Any, Any]:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def _namespace(cfg: Config) -> str:
    if cfg.placement.trainer_namespace:
        return cfg.placement.trainer_namespace
    if NAMESPACE_FILE.exists():
        return NAMESPACE_FILE.read_text().strip()
    raise ConfigError(
        "placement.trainer_namespace is empty and this is not a pod; set the namespace for the TrainJob"
    )


def _condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in job.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def submit(custom: Any, namespace: str, job: dict[str, Any]) -> None:
    """Create the job; an existing job of the same name is reused, or replaced when it failed."""
    from kubernetes.client.exceptions import ApiException

    name = job["metadata"]["name"]
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
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
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
    else:
        print(f"finetune: TrainJob {namespace}/{name} exists (a retried step); waiting for it", flush=True)


def wait(custom: Any, core: Any, namespace: str, name: str, timeout_s: float, poll_s: float = 10.0) -> None:
    """Poll the job until Complete, printing node 0's new log lines; raise on Failed or timeout."""
    from kubernetes.client.exceptions import ApiException

    deadline, printed = time.monotonic() + timeout_s, 0
    while True:
        job = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        printed = _stream_log(core, namespace, name, printed, ApiException)
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
                f"(placement.trainer_timeout_minutes); it keeps running: delete it or raise the limit"
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
