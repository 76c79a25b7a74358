"""Kubernetes objects checked against the real clients' generated models before they are sent.

A custom resource sent through `CustomObjectsApi` is a plain dict, and an API server without strict
field validation drops a field it does not know without a word. So every key of the object is matched
against the `openapi_types`/`attribute_map` of the models that the `kubernetes` client and, for
KServe's resources, the `kserve` package generate from the APIs' OpenAPI specs: an unknown or
misspelled key, or a value of the wrong kind, is found here instead of vanishing on the cluster.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(str, (.+)\)$")
_PRIMITIVES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


# A pod's own namespace, where the service account's token is mounted.
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def import_kserve() -> Any:
    """The kserve package (None when it is not installed), imported with an empty argv: its
    model_server module parses sys.argv when it loads, and would take this process's arguments."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve
        import kserve.model_server  # noqa: F401
        import kserve.models  # noqa: F401
    except ImportError:
        return None
    finally:
        sys.argv = argv
    return kserve


def load_client_config() -> None:
    """The kubernetes client's configuration: the pod's service account, else the user's kubeconfig."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def pod_namespace() -> str | None:
    """The namespace of the pod this runs in; None outside a pod."""
    return NAMESPACE_FILE.read_text().strip() if NAMESPACE_FILE.exists() else None


def api_message(err: Any) -> str:
    """What the API server said in an ApiException (its Status message), else the HTTP reason."""
    try:
        return json.loads(err.body).get("message", "") or str(err.reason)
    except (TypeError, ValueError, AttributeError):
        return str(err.reason)


def _model(name: str) -> Any:
    import kubernetes.client.models as core

    kserve = import_kserve()
    serving = kserve.models if kserve else None
    for module in (serving, core):
        if module is not None and hasattr(module, name):
            return getattr(module, name)
    if serving is None:
        from warmstart.errors import ConfigError

        raise ConfigError(
            f"checking a KServe object ({name}) needs KServe's models: pip install 'warmstart[serve]'"
        )
    raise KeyError(name)


def problems(value: Any, type_name: str, path: str = "") -> list[str]:
    """Where `value` (JSON as the API takes it) departs from the model `type_name`, one line each."""
    if type_name == "object" or value is None:
        return []
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (
            type_name != "bool" and isinstance(value, bool)
        )
        return [] if ok else [f"{path or '(top)'}: expected {type_name}, got {type(value).__name__}"]
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [p for i, item in enumerate(value) for p in problems(item, match.group(1), f"{path}[{i}]")]
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [p for key, item in value.items() for p in problems(item, match.group(1), f"{path}.{key}")]
    model = _model(type_name)
    if not isinstance(value, dict):
        return [f"{path or '(top)'}: expected an object ({type_name})"]
    by_key = {key: model.openapi_types[attr] for attr, key in model.attribute_map.items()}
    found = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in by_key:
            found.append(f"{where}: unknown field")
        else:
            found += problems(item, by_key[key], where)
    return found
