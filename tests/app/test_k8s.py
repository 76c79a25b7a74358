"""The kustomize manifests: every overlay builds, every object validates against the Kubernetes schemas
offline, and every object passes the policy checks (non-root, limits set, no :latest, least privilege,
no committed credentials)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from warmstart.config import Config, check_for_cluster
from warmstart.errors import ConfigError
from warmstart.finetune import trainer_api

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BUILDS = ["base", *(f"overlays/{p.name}" for p in sorted((K8S / "overlays").iterdir()))]
KUBERNETES_VERSION = "1.33.0"
KUBECTL = shutil.which("kubectl")

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="needs kubectl (with its built-in kustomize)")


def build(name: str) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(K8S / name)], capture_output=True, text=True, check=True)
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]


def pod_specs(obj: dict) -> list[dict]:
    """The pod templates inside a built object (workloads and Trainer runtimes)."""
    spec = obj.get("spec", {})
    if obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job"):
        return [spec["template"]["spec"]]
    if obj["kind"] in ("ClusterTrainingRuntime", "TrainingRuntime"):
        return [
            job["template"]["spec"]["template"]["spec"] for job in spec["template"]["spec"]["replicatedJobs"]
        ]
    return []


def test_the_expected_overlays_exist():
    assert BUILDS == [
        "base",
        "overlays/gpu",
        "overlays/kserve",
        "overlays/s3-in-cluster",
        "overlays/standalone-kfp",
        "overlays/trainer",
    ]


@pytest.mark.parametrize("name", BUILDS)
def test_every_object_validates_against_the_kubernetes_schemas(name):
    import kubernetes_validate

    objects = build(name)
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("trainer.kubeflow.org/"):
            # A Kubeflow Trainer CRD: checked strictly against its schema and the Trainer's API models.
            assert obj["kind"] == "ClusterTrainingRuntime"
            trainer_api.check(obj, f"{name}: {obj['kind']} {obj['metadata']['name']}")
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def the_runtime() -> dict:
    (runtime,) = [obj for obj in build("overlays/trainer") if obj["kind"] == "ClusterTrainingRuntime"]
    return runtime


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # Trainer v2.2 removed it (kubeflow/trainer#3239); a v2.2+ API server drops or refuses it.
        ("mlPolicy.torch.numProcPerNode", "auto"),
        ("mlPolicy.numNode", 2),
        ("template.spec.replicatedJobs[0].template.spec.template.spec.containers[0].resource", {}),
    ],
)
def test_a_stale_or_misspelled_runtime_field_is_refused(field, value):
    runtime = the_runtime()
    target = runtime["spec"]
    *parents, key = field.replace("[0]", ".0").split(".")
    for parent in parents:
        target = target[int(parent)] if parent.isdigit() else target[parent]
    target[key] = value
    with pytest.raises(ConfigError, match=rf"spec\.{re.escape(field)}: unknown field"):
        trainer_api.check(runtime, "the trainer overlay's runtime")


def test_the_runtime_leaves_the_processes_per_node_to_the_trainjob():
    """Since Trainer v2.2 the TrainJob's spec.trainer.numProcPerNode says it (train.nproc_per_node)."""
    assert the_runtime()["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}


@pytest.mark.parametrize("name", BUILDS)
def test_policies_non_root_limits_pinned_images_no_secrets_least_privilege(name):
    for obj in build(name):
        kind, where = obj["kind"], f"{name}: {obj['kind']} {obj['metadata']['name']}"
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "warmstart", where
        if kind == "Secret":
            assert not any(obj.get("data", {}).values()) and not any(obj.get("stringData", {}).values()), (
                where
            )
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            assert obj["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), where
        if kind == "RoleBinding":
            accounts = [s for s in obj["subjects"] if s["kind"] == "ServiceAccount"]
            assert all(s["namespace"] == obj["metadata"]["namespace"] for s in accounts), where
        if kind in ("Role", "ClusterRole"):
            for rule in obj["rules"]:
                assert "*" not in rule["verbs"] and "*" not in rule["resources"], where
                # Pods get the S3 Secret as env; the one Secret read through the API is KFP's own
                # artifact-store Secret, which KFP's launcher reads by that name.
                if "secrets" in rule["resources"]:
                    assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], where
                    assert rule.get("resourceNames") == ["mlpipeline-minio-artifact"], where
        for spec in pod_specs(obj):
            pod_security = spec.get("securityContext", {})
            assert pod_security.get("runAsNonRoot") is True, where
            assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            for container in spec["containers"] + spec.get("initContainers", []):
                image = container["image"]
                assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: {image}"
                resources = container.get("resources", {})
                for bound in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where}: {bound}"
                security = container.get("securityContext", {})
                assert security.get("allowPrivilegeEscalation") is False, where
                assert security.get("readOnlyRootFilesystem") is True, where
                assert security.get("capabilities", {}).get("drop") == ["ALL"], where
                assert not security.get("privileged"), where


def test_the_pipeline_role_grants_only_what_the_components_call():
    """KFP's launcher and Argo's executor need three things in every pod; finetune/trainjob.py creates, reads
    and replaces TrainJobs, lists the job's pods and reads one log. The service account is the one
    submit and schedule run as."""
    objects = build("base")
    role = next(obj for obj in objects if obj["kind"] == "Role")
    granted = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("", "configmaps", "get", ("kfp-launcher",)),
        ("", "secrets", "get", ("mlpipeline-minio-artifact",)),
        ("argoproj.io", "workflowtaskresults", "create", ()),
        ("argoproj.io", "workflowtaskresults", "patch", ()),
        ("trainer.kubeflow.org", "trainjobs", "create", ()),
        ("trainer.kubeflow.org", "trainjobs", "get", ()),
        ("trainer.kubeflow.org", "trainjobs", "delete", ()),
        ("", "pods", "list", ()),
        ("", "pods/log", "get", ()),
    }
    account = next(obj for obj in objects if obj["kind"] == "ServiceAccount")["metadata"]["name"]
    assert Config().cluster.service_account == account
    binding = next(obj for obj in objects if obj["kind"] == "RoleBinding")
    assert (
        binding["subjects"][0]["name"] == account and binding["roleRef"]["name"] == role["metadata"]["name"]
    )
    source = (ROOT / "src" / "warmstart" / "finetune" / "trainjob.py").read_text()
    calls = {
        "create_namespaced_custom_object",
        "get_namespaced_custom_object",
        "delete_namespaced_custom_object",
        "list_namespaced_pod",
        "read_namespaced_pod_log",
    }
    found = {word.split("(")[0] for word in source.replace(".", " ").split() if "namespaced" in word}
    assert found == calls, "a new Kubernetes call needs its verb in k8s/base/role.yaml"


def test_the_deploy_role_grants_only_what_deploy_calls():
    """k8s/overlays/kserve adds to the pipeline's account exactly the InferenceService verbs that
    warmstart/deploy.py uses, and the predictor's account, which lists the S3 Secret and mounts no token."""
    objects = build("overlays/kserve")
    role = next(
        obj for obj in objects if obj["kind"] == "Role" and obj["metadata"]["name"] == "warmstart-deploy"
    )
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    verbs = {"get": "get", "create": "create", "replace": "update", "delete": "delete"}
    source = (ROOT / "src" / "warmstart" / "deploy.py").read_text()
    called = set(re.findall(r"\.(\w+)_namespaced_custom_object\(", source))
    assert called == set(verbs), "a new InferenceService call needs its verb in deploy-role.yaml"
    assert granted == {("serving.kserve.io", "inferenceservices", verbs[call]) for call in called}
    binding = next(
        obj
        for obj in objects
        if obj["kind"] == "RoleBinding" and obj["roleRef"]["name"] == "warmstart-deploy"
    )
    assert [s["name"] for s in binding["subjects"]] == [Config().cluster.service_account]
    predictor = next(obj for obj in objects if obj["metadata"]["name"] == Config().deploy.service_account)
    assert predictor["kind"] == "ServiceAccount" and predictor["automountServiceAccountToken"] is False
    assert predictor["secrets"] == [{"name": "warmstart-s3"}]
    defaults = yaml.safe_load(next(o for o in objects if o["kind"] == "ConfigMap")["data"]["config.yaml"])
    assert defaults["deploy"]["enabled"] is True


@pytest.mark.parametrize("name", BUILDS)
def test_the_pipeline_defaults_are_a_valid_config_for_the_cluster(name):
    config_map = next(obj for obj in build(name) if obj["kind"] == "ConfigMap")
    cfg = Config.from_dict(yaml.safe_load(config_map["data"]["config.yaml"]), where=f"{name} config.yaml")
    check_for_cluster(cfg)
    assert cfg.cluster.s3_secret == "warmstart-s3"
    if name == "overlays/gpu":
        assert cfg.cluster.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    if name == "overlays/s3-in-cluster":
        assert cfg.storage.endpoint_url.startswith("http://seaweedfs.")
    if name == "overlays/standalone-kfp":
        assert {obj["metadata"].get("namespace") for obj in build(name)} == {"kubeflow"}
        assert "Namespace" not in {obj["kind"] for obj in build(name)}
    if name == "overlays/trainer":
        assert cfg.placement.trainer_runtime in {obj["metadata"]["name"] for obj in build(name)}


def test_the_namespace_enforces_baseline_and_audits_restricted_pod_security():
    """Restricted would turn away KFP's own pods (launcher, driver, Argo's executor), which a pipeline
    cannot give the restricted securityContext; baseline can be enforced, restricted is audited."""
    namespace = next(obj for obj in build("base") if obj["kind"] == "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert (
        labels["pod-security.kubernetes.io/audit"]
        == labels["pod-security.kubernetes.io/warn"]
        == "restricted"
    )


def test_the_secret_is_only_a_template_with_empty_values():
    template = yaml.safe_load((K8S / "s3-secret.template.yaml").read_text())
    assert template["kind"] == "Secret" and set(template["stringData"]) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert not any(template["stringData"].values())
    assert set(template["metadata"]["annotations"]) == {
        "serving.kserve.io/s3-endpoint",
        "serving.kserve.io/s3-usehttps",
    }
    for kustomization in K8S.rglob("kustomization.yaml"):
        assert "s3-secret.template.yaml" not in kustomization.read_text()
