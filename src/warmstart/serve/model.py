"""What `warmstart serve` serves: one registered version, checked before it is loaded, and its predictions.

A version comes from a registry (its files and metadata.json) or from a directory that holds both, as
KServe's storage initializer leaves a version's storageUri in /mnt/models. The weights must be
safetensors whose sha256 is the one the registry recorded when the gate passed them; anything else is
refused before a byte of it is loaded. Predictions run as the gate's offline predictions did: the same
tokenizer settings or image processor, fp32, softmax over the registered labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.artifacts import WEIGHTS_FILE
from warmstart.errors import ModelError, WarmstartError
from warmstart.registry import METADATA_FILE, Registry
from warmstart.storage import sha256_file

PICKLED = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def fetch_version(registry_uri: str, name: str, version: int | None, target: Path) -> Path:
    """Download `version` of `name` (default: the champion) with its metadata into `target`."""
    registry = Registry(registry_uri)
    if version is None:
        version = registry.alias(name, "champion")
        if version is None:
            known = registry.versions(name)
            raise WarmstartError(
                f"{name} has no champion in {registry_uri}"
                + (
                    f"; pass --version (versions: {', '.join(map(str, known))})"
                    if known
                    else "; register one first"
                )
            )
    metadata = registry.metadata(name, version)
    target.mkdir(parents=True, exist_ok=True)
    registry.download_version(name, version, target)
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    return target


def check_version_dir(model_dir: Path) -> dict[str, Any]:
    """The version's metadata, once its weights are found to be safetensors with the recorded sha256."""
    metadata_file = model_dir / METADATA_FILE
    if not metadata_file.is_file():
        raise ModelError(
            f"{model_dir} holds no {METADATA_FILE}; serve a registered version (its whole directory, "
            f"or --registry with --name)"
        )
    metadata = json.loads(metadata_file.read_text())
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        pickled = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLED)
        raise ModelError(
            f"{model_dir} holds no {WEIGHTS_FILE}"
            + (
                f" (only pickled weights: {', '.join(pickled)}, which warmstart never loads)"
                if pickled
                else ""
            )
        )
    digest = sha256_file(weights)
    if digest != metadata.get("model_sha256"):
        raise ModelError(
            f"{weights} has sha256 {digest[:12]}…, but {metadata.get('name')} version {metadata.get('version')} "
            f"was registered with {str(metadata.get('model_sha256'))[:12]}…; refusing to serve weights the gate "
            f"did not judge"
        )
    return metadata


class Classifier:
    """A registered classifier: rows in (texts, or encoded images or audio files), class probabilities out."""

    def __init__(self, model_dir: Path, batch_size: int = 32) -> None:
        import torch

        from warmstart.finetune.train import build_model_from_dir

        self.metadata = check_version_dir(model_dir)
        self.modality = self.metadata.get("modality", "text")
        config = self.metadata.get("config", {})
        max_length = config.get("model", {}).get("max_length", 128)
        max_seconds = config.get("data", {}).get("max_seconds")
        self.model, self.inputs = build_model_from_dir(model_dir, self.modality, max_length, max_seconds)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()
        labels = self.model.config.id2label
        self.labels = [labels[i] for i in sorted(labels, key=int)]
        self.batch_size = batch_size
        self._torch = torch

    def probabilities(self, rows: list[Any]) -> np.ndarray:
        """Softmax over the labels for each row, in batches of `batch_size`."""
        torch = self._torch
        out = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(rows), self.batch_size):
                batch = self.inputs.tensors(rows[start : start + self.batch_size])
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
                out[start : start + len(logits)] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out
