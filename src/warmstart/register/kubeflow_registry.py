"""Record a registered version in a Kubeflow Model Registry (optional; `pip install warmstart[kubeflow]`).

The warmstart registry (`registry.uri`) stays the source of truth: the Kubeflow Model Registry gets an
index entry pointing at the stored files, so the version shows up in the Kubeflow UI and KServe can
deploy it. A failure here does not undo the warmstart registration; it is reported in the result.
"""

from __future__ import annotations

from typing import Any

import transformers

MODEL_FORMAT = "huggingface"  # what KServe's Hugging Face runtime serves: config, tokenizer, safetensors


def model_registry_call(name: str, version: int, uri: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `ModelRegistry.register_model` for one warmstart version."""
    gate = metadata["gate"]
    return {
        "name": name,
        "uri": uri,
        "version": str(version),
        "model_format_name": MODEL_FORMAT,
        "model_format_version": transformers.__version__.split(".")[0],
        "version_description": gate["reason"],
        "metadata": {
            "warmstart_verdict": gate["verdict"],
            "warmstart_metric": gate["metric"],
            "warmstart_gain": float(gate["gain"]["estimate"]),
            "warmstart_gain_ci_low": float(gate["gain"]["ci_low"]),
            "warmstart_gain_ci_high": float(gate["gain"]["ci_high"]),
            "warmstart_accuracy": float(metadata["metrics"]["pretrained"]["accuracy"]),
            "warmstart_model_sha256": metadata["model_sha256"],
            "warmstart_data_fingerprint": metadata["lineage"]["data_fingerprint"],
            "warmstart_base_model": metadata["lineage"]["base_model"],
        },
    }


def record_version(
    server: str, author: str, name: str, version: int, uri: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Register the version in the Kubeflow Model Registry at `server`; returns what happened."""
    try:
        from model_registry import ModelRegistry
    except ImportError:
        return {
            "recorded": False,
            "reason": "the model-registry client is not installed: pip install warmstart[kubeflow]",
        }
    try:
        client = ModelRegistry(server, author=author, is_secure=server.startswith("https://"))
        model = client.register_model(**model_registry_call(name, version, uri, metadata))
    except (
        Exception
    ) as err:  # the client raises many kinds (HTTP, connection, API); none may undo our version
        return {"recorded": False, "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
    return {"recorded": True, "server": server, "id": str(getattr(model, "id", ""))}
