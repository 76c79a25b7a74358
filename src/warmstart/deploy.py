"""deploy: serve the new champion with a KServe InferenceService, prove it answers as the gate judged it,
or put everything back.

After register, with `deploy.enabled`, the version that became champion is put behind an
InferenceService (serving.kserve.io/v1beta1) whose predictor is the warmstart image running
`warmstart serve` on the model KServe's storage initializer copies from the registry (STORAGE_URI) to
/mnt/models. The first deployment takes all traffic; a later one is a canary of `deploy.canary_percent`
beside the live version. When the service is Ready, the smoke test sends `deploy.smoke_rows` test rows
to the new revision and requires what finetune predicted offline for them, the predictions the gate
judged: the same label, each probability within `deploy.tolerance`, answered by the new version. If the
service is not Ready in time or the smoke test fails, the previous spec is restored (or a first
InferenceService removed) and the champion alias moves back by compare-and-swap; the step then fails
saying what it undid.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from warmstart import kube_models
from warmstart.artifacts import PREDICTIONS_FILE, load_card, load_summary
from warmstart.audio import wav_bytes
from warmstart.config import Config
from warmstart.errors import ConfigError, ModelError, WarmstartError
from warmstart.registry import Registry

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
VERSION_ANNOTATION = "warmstart.dev/version"
MODEL_ANNOTATION = "warmstart.dev/model"
# KServe (Knative mode) gives the latest revision its own URL, so the smoke test reaches the canary.
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
PORT = 8080
POLL_SECONDS = 5.0


class DeployFailed(WarmstartError):
    """The new version did not become Ready or did not answer as the gate judged it."""


def service_name(cfg: Config) -> str:
    """deploy.service_name, or the registry's model name as a DNS label."""
    name = cfg.deploy.service_name or re.sub(r"[^a-z0-9-]+", "-", cfg.registry.name.lower()).strip("-")
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name or ""):
        raise ConfigError(
            f"'{name}' cannot name an InferenceService (a DNS label starting with a letter); set deploy.service_name"
        )
    return name


def build_inference_service(
    cfg: Config, name: str, namespace: str, version: int, storage_uri: str, image: str, canary: int | None
) -> dict[str, Any]:
    """The InferenceService for `version`, checked against KServe's and Kubernetes' client models."""
    deploy, cluster = cfg.deploy, cfg.cluster
    resources = dict(deploy.resources)
    if deploy.gpu:
        resources["nvidia.com/gpu"] = "1"
    container = {
        "name": "kserve-container",
        "image": image,
        "command": ["warmstart", "serve"],
        "args": ["--model-dir", "/mnt/models", "--name", name, "--port", str(PORT)],
        # KServe's storage initializer copies STORAGE_URI to /mnt/models before the container starts.
        "env": [{"name": "STORAGE_URI", "value": storage_uri}, {"name": "HF_HUB_OFFLINE", "value": "1"}],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": resources, "limits": resources},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": cluster.run_as_user,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    predictor: dict[str, Any] = {
        "serviceAccountName": deploy.service_account,
        "minReplicas": deploy.min_replicas,
        "containers": [container],
    }
    if deploy.gpu and cluster.gpu_node_selector:
        predictor["nodeSelector"] = dict(cluster.gpu_node_selector)
    if deploy.gpu and cluster.gpu_tolerations:
        predictor["tolerations"] = [
            {key: value for key, value in t.model_dump().items() if value} for t in cluster.gpu_tolerations
        ]
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    service = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "warmstart"},
            "annotations": {
                VERSION_ANNOTATION: str(version),
                MODEL_ANNOTATION: cfg.registry.name,
                TAG_ROUTING: "true",
            },
        },
        "spec": {"predictor": predictor},
    }
    found = kube_models.problems(service, "V1beta1InferenceService")
    if found:
        raise ConfigError(
            f"InferenceService {namespace}/{name} does not fit KServe's API: {'; '.join(found)}"
        )
    return service


def smoke_inputs(dataset_dir: Path, evaluation_dir: Path, count: int) -> tuple[list[str], np.ndarray]:
    """The first `count` test rows as a request sends them (text, base64 images, or base64 float WAV
    files of the stored audio samples, which decode to exactly those samples), and the class
    probabilities finetune predicted for them offline."""
    rows = pq.read_table(dataset_dir / "test.parquet").slice(0, count).to_pylist()
    offline = {
        r["id"]: r["probabilities"] for r in pq.read_table(evaluation_dir / PREDICTIONS_FILE).to_pylist()
    }
    inputs = [_request_row(row) for row in rows]
    return inputs, np.asarray([offline[row["id"]] for row in rows], dtype=np.float32)


def _request_row(row: dict[str, Any]) -> str:
    if "text" in row:
        return row["text"]
    if "audio" in row:
        return base64.b64encode(
            wav_bytes(np.frombuffer(row["audio"], np.float32), row["sample_rate"])
        ).decode()
    return base64.b64encode(row["image"]).decode()


def judged_evaluation(evaluation_dirs: list[Path], model_sha256: str) -> Path:
    """The finetune evaluation of the weights that were registered."""
    for directory in evaluation_dirs:
        if load_summary(directory).get("model_sha256") == model_sha256:
            return directory
    raise ModelError(
        "no finetune evaluation of the registered weights was given to deploy; nothing was deployed"
    )


def smoke_test(
    url: str,
    name: str,
    version: int,
    input_name: str,
    inputs: list[str],
    expected: np.ndarray,
    labels: list[str],
    tolerance: float,
) -> None:
    """The endpoint's v2 answer for `inputs` must come from `version` and match `expected`."""
    body = {"inputs": [{"name": input_name, "shape": [len(inputs)], "datatype": "BYTES", "data": inputs}]}
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise DeployFailed(f"the smoke test's request got {err.code}: {err.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DeployFailed(f"the endpoint {url} could not be reached for the smoke test ({err})") from None
    if str(answer.get("model_version")) != str(version):
        raise DeployFailed(f"the endpoint answered as version {answer.get('model_version')!r}, not {version}")
    outputs = {output["name"]: output for output in answer.get("outputs", [])}
    if not {"label", "probabilities"} <= set(outputs):
        raise DeployFailed(
            f"the endpoint's answer has outputs {sorted(outputs)}, not label and probabilities"
        )
    served = np.asarray(outputs["probabilities"]["data"], dtype=np.float32).reshape(len(inputs), -1)
    served_labels = outputs["label"]["data"]
    wrong = [i for i, label in enumerate(served_labels) if label != labels[int(expected[i].argmax())]]
    if wrong:
        raise DeployFailed(
            f"the endpoint predicted other labels than the gate judged for {len(wrong)} of {len(inputs)} "
            f"test rows (first: row {wrong[0]}, {served_labels[wrong[0]]!r} for {labels[int(expected[wrong[0]].argmax())]!r})"
        )
    gap = float(np.abs(served - expected).max())
    if gap > tolerance:
        raise DeployFailed(
            f"the endpoint's probabilities differ from the offline ones by up to {gap:.2e} (deploy.tolerance {tolerance:g})"
        )


def _client() -> Any:
    from kubernetes import client

    kube_models.load_client_config()
    return client.CustomObjectsApi()


def _namespace(cfg: Config) -> str:
    namespace = cfg.deploy.namespace or kube_models.pod_namespace()
    if not namespace:
        raise ConfigError(
            "deploy.namespace is empty and this is not a pod; set the InferenceService's namespace"
        )
    return namespace


def _api_error(err: Any, doing: str, namespace: str) -> ModelError:
    if err.status == 403:
        return ModelError(
            f"the pipeline's service account may not {doing} InferenceServices in {namespace}; apply "
            f"k8s/overlays/kserve (its Role) or set deploy.enabled=false"
        )
    if err.status == 404:
        return ModelError(f"the cluster has no InferenceService API ({GROUP}/{VERSION}); install KServe")
    return ModelError(
        f"{doing} InferenceService in {namespace} failed: {err.status} {kube_models.api_message(err)}"
    )


class Services:
    """The InferenceService calls deploy makes (and the Role in k8s/overlays/kserve grants)."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as err:
            if err.status == 404 and _not_found_object(err):
                return None
            raise _api_error(err, "read", self.namespace) from None

    def create(self, service: dict[str, Any]) -> bool:
        """Create; False when one of that name appeared meanwhile (409)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, service)
            return True
        except ApiException as err:
            if err.status == 409:
                return False
            raise _api_error(err, "create", self.namespace) from None

    def replace(self, service: dict[str, Any], resource_version: str) -> bool:
        """Replace the spec the caller read (resourceVersion); False when it changed meanwhile (409)."""
        from kubernetes.client.exceptions import ApiException

        body = {**service, "metadata": {**service["metadata"], "resourceVersion": resource_version}}
        try:
            self.custom.replace_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, service["metadata"]["name"], body
            )
            return True
        except ApiException as err:
            if err.status == 409:
                return False
            raise _api_error(err, "update", self.namespace) from None

    def delete(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as err:
            if err.status != 404:
                raise _api_error(err, "delete", self.namespace) from None


def _not_found_object(err: Any) -> bool:
    """A 404 for the object (a Status naming it), as opposed to the API missing altogether."""
    try:
        body = json.loads(err.body)
        return body.get("reason") == "NotFound" and "details" in body
    except (TypeError, ValueError, AttributeError):
        return False


def _ready(service: dict[str, Any]) -> bool:
    status = service.get("status") or {}
    generation = service.get("metadata", {}).get("generation")
    if generation is not None and status.get("observedGeneration", generation) < generation:
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def wait_ready(
    services: Services, name: str, timeout_s: float, poll_s: float = POLL_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        service = services.get(name) or {}
        if _ready(service):
            return service
        if time.monotonic() > deadline:
            conditions = (service.get("status") or {}).get("conditions") or []
            said = "; ".join(
                f"{c.get('type')}: {c.get('reason', '')} {c.get('message', '')}".rstrip()
                for c in conditions
                if c.get("status") != "True" and (c.get("reason") or c.get("message"))
            )
            raise DeployFailed(
                f"InferenceService {services.namespace}/{name} was not Ready within {timeout_s / 60:g} min "
                f"(deploy.ready_timeout_minutes)" + (f": {said}" if said else "")
            )
        time.sleep(poll_s)


def endpoint(cfg: Config, service: dict[str, Any], canary: int | None) -> str:
    """Where the smoke test reaches the new version: deploy.endpoint, the latest revision's tagged URL
    when a canary shares the traffic, or the service's cluster-local address."""
    if cfg.deploy.endpoint:
        return cfg.deploy.endpoint
    status = service.get("status") or {}
    if canary is not None:
        traffic = (status.get("components") or {}).get("predictor", {}).get("traffic") or []
        latest = [t for t in traffic if t.get("latestRevision") and t.get("url")]
        if latest:
            return latest[0]["url"]
    url = (status.get("address") or {}).get("url") or status.get("url")
    if not url:
        raise DeployFailed(f"InferenceService {service['metadata']['name']} is Ready but reports no URL")
    return url


def _without_status(service: dict[str, Any]) -> dict[str, Any]:
    metadata = {
        k: v for k, v in service["metadata"].items() if k in ("name", "namespace", "labels", "annotations")
    }
    return {
        "apiVersion": service["apiVersion"],
        "kind": service["kind"],
        "metadata": metadata,
        "spec": service["spec"],
    }


def deploy(
    cfg: Config,
    registration: dict[str, Any],
    dataset_dir: str | Path,
    evaluation_dirs: list[str | Path],
    image: str,
    custom: Any = None,
) -> dict[str, Any]:
    """Deploy the version `registration` (register's record) made champion; returns what was done.

    Raises ModelError when the new version was not Ready in time or failed the smoke test, after
    restoring the previous InferenceService (or removing a first one) and the champion alias."""
    name, version = cfg.registry.name, int(registration["version"])
    if not image:
        raise ConfigError(
            "the deploy step has no image for the predictor (WARMSTART_IMAGE); compile with --image"
        )
    if not registration.get("champion"):
        return {
            "deployed": False,
            "summary": f"version {version} is not the champion, so it was not deployed",
        }
    registry = Registry(cfg.registry.uri)
    metadata = registry.metadata(name, version)
    evaluation = judged_evaluation([Path(d) for d in evaluation_dirs], metadata["model_sha256"])
    inputs, expected = smoke_inputs(Path(dataset_dir), evaluation, cfg.deploy.smoke_rows)
    card = load_card(dataset_dir)
    input_name = metadata.get("modality") if metadata.get("modality") in ("image", "audio") else "text"
    service_id, namespace = service_name(cfg), _namespace(cfg)
    services = Services(custom if custom is not None else _client(), namespace)

    live = services.get(service_id)
    live_version = int(live["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, 0)) if live else None
    canary = None
    if live and live_version != version and 0 < cfg.deploy.canary_percent < 100:
        canary = cfg.deploy.canary_percent
    service = build_inference_service(
        cfg, service_id, namespace, version, registry.version_uri(name, version), image, canary
    )
    if live is None:
        if not services.create(service):
            raise ModelError(
                f"InferenceService {namespace}/{service_id} was created by someone else meanwhile; run deploy again"
            )
        print(
            f"deploy: created InferenceService {namespace}/{service_id} for {name} version {version}",
            flush=True,
        )
    elif live_version == version:
        print(
            f"deploy: {namespace}/{service_id} already serves version {version}; smoke-testing it", flush=True
        )
    else:
        if not services.replace(service, live["metadata"]["resourceVersion"]):
            raise ModelError(
                f"InferenceService {namespace}/{service_id} changed while deploy updated it; run deploy again"
            )
        share = f"{canary}% of the traffic" if canary else "all traffic"
        print(
            f"deploy: {namespace}/{service_id}: version {version} takes {share} (was version {live_version})",
            flush=True,
        )

    try:
        ready = wait_ready(services, service_id, cfg.deploy.ready_timeout_minutes * 60)
        url = endpoint(cfg, ready, canary)
        smoke_test(
            url, service_id, version, input_name, inputs, expected, card["label_names"], cfg.deploy.tolerance
        )
    except DeployFailed as err:
        undone = roll_back(
            services, service_id, live, registry, name, version, registration.get("previous_champion")
        )
        raise ModelError(f"deploying {name} version {version} failed: {err}; {undone}") from None
    print(
        f"deploy: the smoke test passed: {len(inputs)} test rows answered as the gate judged them", flush=True
    )
    if canary is not None and cfg.deploy.promote:
        current = services.get(service_id)
        promoted = {
            **service,
            "spec": {"predictor": {**service["spec"]["predictor"], "canaryTrafficPercent": 100}},
        }
        if current and services.replace(promoted, current["metadata"]["resourceVersion"]):
            canary = None
            print(f"deploy: version {version} promoted to all traffic", flush=True)
    where = f"{namespace}/{service_id}"
    summary = f"deployed version {version} as {where}" + (
        f" ({canary}% canary beside version {live_version})" if canary is not None else ""
    )
    return {
        "deployed": True,
        "service": service_id,
        "namespace": namespace,
        "version": version,
        "previous_version": live_version,
        "canary_percent": canary,
        "url": url,
        "smoke_rows": len(inputs),
        "summary": summary,
    }


def roll_back(
    services: Services,
    service_id: str,
    live: dict[str, Any] | None,
    registry: Registry,
    name: str,
    version: int,
    previous_champion: int | None,
) -> str:
    """Restore the InferenceService as it was (or remove a new one) and move the champion alias back
    from `version` by compare-and-swap; returns what was done, in words."""
    if live is None:
        services.delete(service_id)
        traffic = f"the new InferenceService {services.namespace}/{service_id} was removed"
    else:
        current = services.get(service_id)
        restored = current is not None and services.replace(
            _without_status(live), current["metadata"]["resourceVersion"]
        )
        was = live["metadata"].get("annotations", {}).get(VERSION_ANNOTATION, "?")
        traffic = (
            f"traffic is back on version {was}"
            if restored
            else f"the InferenceService changed meanwhile and was left as it is (version {was} was live before)"
        )
    if registry.swap_alias(name, "champion", version, previous_champion):
        champion = (
            f"the champion is version {previous_champion} again"
            if previous_champion is not None
            else "the champion alias was removed (there was none before)"
        )
    else:
        champion = f"the champion alias had moved from version {version} meanwhile and was left as it is"
    return f"{traffic}; {champion}"
