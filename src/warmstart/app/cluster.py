"""How a compiled pipeline's tasks run on Kubernetes: credentials, GPU placement, volumes, limits, queue.

Applied to each task at compile time through kfp-kubernetes (platform settings in the pipeline
spec that the KFP backend turns into pod fields); `warmstart run` on this machine ignores them.
"""

from __future__ import annotations

from typing import Any

from warmstart.config import ClusterConfig

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
HF_HOME = "/home/warmstart/.cache/huggingface"  # the images' HF_HOME (docker/)
KUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def apply(task: Any, cluster: ClusterConfig, stage: str, gpus: int = 0) -> Any:
    """Set `cluster`'s settings on one pipeline task of `stage` (`finetune` tasks with `gpus` GPUs
    go to GPU nodes). Returns the task."""
    from kfp import kubernetes

    kubernetes.set_security_context(
        task, run_as_user=cluster.run_as_user, run_as_group=cluster.run_as_user, run_as_non_root=True
    )
    if cluster.kueue_queue:
        # Kueue admits the pod when its queue has room (with Kueue's pod integration on in the namespace).
        kubernetes.add_pod_label(task, KUEUE_LABEL, cluster.kueue_queue)
    if cluster.s3_secret:
        kubernetes.use_secret_as_env(task, cluster.s3_secret, {key: key for key in S3_KEYS})
    # KFP's cache key names a task's input artifacts but never reads them (kubeflow/pipelines#5816):
    # only finetune, whose parameters carry the data's and the base model's fingerprints, may be
    # served from cache. The rest read moving things (the data source, the champion, a model
    # reference) or write to the registry, so they always run.
    task.set_caching_options(enable_caching=stage == "finetune")
    minutes = cluster.finetune_timeout_minutes if stage == "finetune" else cluster.timeout_minutes
    kubernetes.set_timeout(task, minutes * 60)
    if stage == "finetune":
        # A long task whose pod is preempted or evicted is retried and resumes from its checkpoints.
        # Short tasks are not: their storage calls already retry, and a bad input fails the same again.
        task.set_retry(num_retries=cluster.retries, backoff_duration="60s", backoff_factor=2.0)
        kubernetes.empty_dir_mount(task, "dshm", "/dev/shm", medium="Memory", size_limit=cluster.shm_size)
        if gpus:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
            for key, value in cluster.gpu_node_selector.items():
                kubernetes.add_node_selector(task, key, value)
            for toleration in cluster.gpu_tolerations:
                kubernetes.add_toleration(
                    task,
                    key=toleration.key or None,
                    operator=toleration.operator,
                    value=toleration.value or None,
                    effect=toleration.effect or None,
                )
    if stage == "fetch_model" and cluster.hf_cache_pvc:
        kubernetes.mount_pvc(task, cluster.hf_cache_pvc, HF_HOME)
    return task
