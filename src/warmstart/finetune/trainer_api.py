"""The Kubeflow Trainer API that warmstart's TrainJobs and the runtimes in k8s/ are checked against.

`trainer_crds.json` holds the openAPIV3Schema of the Trainer's CRDs from one release (RELEASE, SOURCE),
less descriptions, defaults, CEL rules and list-type markers, which a JSON Schema validator does not
read; `python -m warmstart.finetune.trainer_api CRD.yaml...` writes it from the release's CRD files.
An object is checked as the API server's strict field validation would: a field the schema does not
name is an error (without fieldValidation=Strict, the server drops it and carries on). The CEL rules
(`x-kubernetes-validations`, such as immutability) and ObjectMeta's own checks are not made here.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path
from typing import Any

from warmstart.errors import ConfigError

RELEASE = "v2.3.0"
SOURCE = f"https://github.com/kubeflow/trainer/tree/{RELEASE}/manifests/base/crds"
SCHEMAS = Path(__file__).with_name("trainer_crds.json")
# Schema keywords a JSON Schema validator ignores; dropped when vendoring to keep the file small.
UNREAD = {
    "description",
    "default",
    "x-kubernetes-validations",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
}
# The CRD leaves metadata to the API server; these are the ObjectMeta fields a manifest may set.
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}
MODELS = {
    "TrainJob": "TrainerV1alpha1TrainJob",
    "ClusterTrainingRuntime": "TrainerV1alpha1ClusterTrainingRuntime",
    "TrainingRuntime": "TrainerV1alpha1TrainingRuntime",
}


def vendored_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD's openAPIV3Schema without the keywords in UNREAD (property names are kept as they are)."""
    out = {}
    for key, value in schema.items():
        if key in UNREAD:
            continue
        if key == "properties":
            out[key] = {name: vendored_schema(sub) for name, sub in value.items()}
        elif isinstance(value, dict):
            out[key] = vendored_schema(value)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out[key] = [vendored_schema(sub) for sub in value]
        else:
            out[key] = value
    return out


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Close every object that Kubernetes would prune: one without additionalProperties (a map) or
    x-kubernetes-preserve-unknown-fields keeps only the properties it names."""
    if schema.get("type") == "object" and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
    for key, value in schema.items():
        if key == "properties":
            for sub in value.values():
                _strict(sub)
        elif isinstance(value, dict):
            _strict(value)
        elif isinstance(value, list):
            for sub in value:
                if isinstance(sub, dict):
                    _strict(sub)
    return schema


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema

    schemas = json.loads(SCHEMAS.read_text())["schemas"]
    schema = copy.deepcopy(schemas.get(kind) or schemas["ClusterTrainingRuntime"])  # see main()
    schema["properties"]["metadata"] = copy.deepcopy(OBJECT_META)
    schema = _strict(schema)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _path(parts: Any) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".")


def schema_problems(obj: dict[str, Any]) -> list[str]:
    """Where `obj` (a TrainJob or a (Cluster)TrainingRuntime) departs from its CRD schema, one line each."""
    kind = obj.get("kind")
    if kind not in MODELS:
        return [f"kind: '{kind}' is none of {', '.join(MODELS)}"]
    problems = []
    for error in _validator(kind).iter_errors(obj):
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties", {}))
            problems += [
                f"{_path([*error.absolute_path, key])}: unknown field"
                for key in error.instance
                if key not in known
            ]
        else:
            problems.append(f"{_path(error.absolute_path) or '(top level)'}: {error.message}")
    return sorted(problems)


def _lost(sent: Any, kept: Any, path: list[Any]) -> list[str]:
    if isinstance(sent, dict) and isinstance(kept, dict):
        return [p for key, value in sent.items() for p in _lost(value, kept.get(key), [*path, key])]
    if isinstance(sent, list) and isinstance(kept, list) and len(sent) == len(kept):
        return [p for i, (a, b) in enumerate(zip(sent, kept, strict=True)) for p in _lost(a, b, [*path, i])]
    return [] if sent == kept else [_path(path)]


def model_losses(obj: dict[str, Any]) -> list[str]:
    """The fields of `obj` that a round trip through the kubeflow-trainer-api models does not return as
    they were (the models' from_dict drops keys it does not know without a word)."""
    from kubeflow_trainer_api import models

    model = getattr(models, MODELS[obj["kind"]])
    return _lost(obj, model.from_dict(obj).to_dict(), [])


def check(obj: dict[str, Any], where: str) -> None:
    """Raise ConfigError listing every field of `obj` that the Trainer's CRD schema refuses or that the
    installed kubeflow-trainer-api models would lose."""
    problems = schema_problems(obj)
    if problems:
        raise ConfigError(
            f"{where} does not fit the Kubeflow Trainer {RELEASE} {obj.get('kind')} schema: {'; '.join(problems)}"
        )
    lost = model_losses(obj)
    if lost:
        raise ConfigError(
            f"{where} loses {', '.join(lost)} in the kubeflow-trainer-api models; "
            f"pip install 'kubeflow-trainer-api>={RELEASE.lstrip('v')}'"
        )


def main(paths: list[str]) -> None:
    import yaml

    schemas = {}
    for path in paths:
        crd = yaml.safe_load(Path(path).read_text())
        (version,) = crd["spec"]["versions"]
        schemas[crd["spec"]["names"]["kind"]] = vendored_schema(version["schema"]["openAPIV3Schema"])
    # TrainingRuntime's schema is ClusterTrainingRuntime's; one copy is kept.
    if schemas.get("TrainingRuntime") == schemas.get("ClusterTrainingRuntime"):
        schemas.pop("TrainingRuntime", None)
    document = {"release": RELEASE, "source": SOURCE, "schemas": schemas}
    SCHEMAS.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
