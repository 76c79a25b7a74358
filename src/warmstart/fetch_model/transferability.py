"""Transferability before fine-tuning: LogME (You, Liu, Wang & Long, ICML 2021) on frozen features.

LogME treats each class's one-hot target as a Bayesian linear regression on the frozen features,
y = F w + e with w ~ N(0, 1/alpha) and e ~ N(0, 1/beta), and scores the features by the log of the
evidence p(y | F) at its maximum over alpha and beta, per example and averaged over the classes.
The maximum is found with MacKay's fixed-point updates in the singular basis of F (the paper's
Algorithm 1). Higher is better; scores of different models on the same data are comparable.

This is written out rather than taken from `transformer-ranker`: see `bench/logme.py` and its
results for the comparison (correctness against the evidence computed directly, and speed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """log p(target | features, alpha, beta) computed directly (explicit matrices): the reference the
    fast path is checked against. Cost O(d³); for tests and small problems."""
    f, y = np.asarray(features, np.float64), np.asarray(target, np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    return float(
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - 0.5 * logdet
        - beta / 2 * np.sum((f @ m - y) ** 2)
        - alpha / 2 * m @ m
        - n / 2 * math.log(2 * math.pi)
    )


def logme_reference(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME the slow, obvious way: `log_evidence` maximised over (alpha, beta) by Nelder-Mead for
    each class. The reference `logme` is checked against (tests, bench/logme.py)."""
    from scipy.optimize import minimize

    scores = []
    for label in np.unique(labels):
        y = (np.asarray(labels) == label).astype(np.float64)
        best = minimize(
            lambda p, y=y: -log_evidence(features, y, math.exp(p[0]), math.exp(p[1])),
            x0=[0.0, 0.0],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
        )
        scores.append(-best.fun / len(y))
    return float(np.mean(scores))


def _maximum_evidence(
    u_target: np.ndarray, rest: float, sigma: np.ndarray, n: int, d: int, tol: float, max_iter: int
) -> tuple[float, float, float]:
    """(max log evidence, alpha, beta) for one target, from its projection on the left singular vectors."""
    z2 = u_target**2
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        shrink = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / shrink))  # the effective number of parameters
        weights2 = float(np.sum(beta**2 * sigma * z2 / shrink**2))  # |m|²
        residual2 = float(np.sum(z2 * (alpha / shrink) ** 2)) + rest  # |F m − y|²
        new_alpha, new_beta = gamma / max(weights2, 1e-300), (n - gamma) / max(residual2, 1e-300)
        done = abs(new_alpha / new_beta - alpha / beta) <= tol * alpha / beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    shrink = alpha + beta * sigma
    weights2 = float(np.sum(beta**2 * sigma * z2 / shrink**2))
    residual2 = float(np.sum(z2 * (alpha / shrink) ** 2)) + rest
    # log|A| over all d directions: the singular values, and alpha alone where F has no rank.
    logdet = float(np.sum(np.log(shrink))) + (d - len(sigma)) * math.log(alpha)
    evidence = (
        d / 2 * math.log(alpha)
        + n / 2 * math.log(beta)
        - 0.5 * logdet
        - beta / 2 * residual2
        - alpha / 2 * weights2
        - n / 2 * math.log(2 * math.pi)
    )
    return evidence, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray, tol: float = 1e-7, max_iter: int = 200) -> float:
    """The LogME score of `features` (n × d) for integer class `labels` (n): the mean over classes of
    the maximum log evidence per example."""
    f = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    if n > d:
        # The d × d Gram matrix's eigenpairs give the same singular values and directions as an SVD of
        # F, at a fraction of the cost when n ≫ d (the paper's reference code does the same).
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > sigma.max() * d * np.finfo(np.float64).eps
        sigma, v = sigma[keep], v[:, keep]

        def project(y: np.ndarray) -> np.ndarray:
            return (v.T @ (f.T @ y)) / np.sqrt(sigma)
    else:
        u, singular, _ = np.linalg.svd(f, full_matrices=False)
        sigma = singular**2

        def project(y: np.ndarray) -> np.ndarray:
            return u.T @ y

    scores = []
    for label in np.unique(labels):
        y = (labels == label).astype(np.float64)
        projected = project(y)
        rest = max(float(y @ y - projected @ projected), 0.0)  # the part of y outside F's column space
        evidence, _, _ = _maximum_evidence(projected, rest, sigma, n, d, tol, max_iter)
        scores.append(evidence / n)
    return float(np.mean(scores))


def mean_pooled_features(
    model_dir: str | Path,
    rows: Any,
    max_length: int = 128,
    modality: str = "text",
    batch_size: int = 64,
    random_init: bool = False,
    seed: int = 0,
    name: str = "",
    precision: str = "fp32",
) -> np.ndarray:
    """The frozen encoder's last hidden states averaged per row: over a text's tokens (padding left
    out), an image's patches or feature-map positions, or a clip's frames (padding left out). One row
    of features per input row.

    `rows` is a split as a `datasets.Dataset` (a `text`, `image` or `audio` column) or a list of texts.
    `random_init` gives the same architecture with random weights: the floor a pretrained candidate
    must clear. Any classification head in `model_dir` is left out. Runs on the GPU when there is
    one, under `precision` autocast (bf16, fp16) when asked. `name` says which model in errors.
    """
    return features_of_splits(
        model_dir, {"rows": rows}, max_length, modality, batch_size, random_init, seed, name, precision
    )["rows"]


def frames_mask(mask: Any, frames: int) -> Any:
    """`mask` (batch, positions) over `frames` output positions: itself for text, where they are the
    tokens; for audio, whose mask is over samples and whose encoder outputs fewer frames, each clip's
    first frames in proportion to its share of the padded length."""
    import torch

    if mask.shape[1] == frames:
        return mask
    valid = torch.ceil(mask.sum(1, keepdim=True).float() * frames / mask.shape[1])
    return (torch.arange(frames, device=mask.device)[None, :] < valid).to(mask.dtype)


def features_of_splits(
    model_dir: str | Path,
    splits: dict[str, Any],
    max_length: int = 128,
    modality: str = "text",
    batch_size: int = 64,
    random_init: bool = False,
    seed: int = 0,
    name: str = "",
    precision: str = "fp32",
) -> dict[str, np.ndarray]:
    """`mean_pooled_features` of several splits, with the model loaded once."""
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, AutoModel

    from warmstart.inputs import inputs_for

    model_dir = Path(model_dir)
    inputs = inputs_for(modality, model_dir, max_length, name)
    if random_init:
        torch.manual_seed(seed)
        model: Any = AutoModel.from_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=False))
    else:
        model = AutoModel.from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    found = {}
    for split, rows in splits.items():
        if isinstance(rows, list):
            rows = Dataset.from_dict({"text": rows})
        encoded = inputs.encode(rows)  # row order kept: feature i belongs to row i
        features: np.ndarray | None = None
        with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            for indices, batch in inputs.batches(encoded, batch_size):
                batch = {key: value.to(device) for key, value in batch.items()}
                hidden = model(**batch).last_hidden_state.float()
                if hidden.dim() == 4:  # a convolutional feature map (batch, channels, height, width)
                    pooled = hidden.mean(dim=(2, 3))
                elif "attention_mask" in batch:
                    mask = (
                        frames_mask(batch["attention_mask"], hidden.shape[1]).unsqueeze(-1).to(hidden.dtype)
                    )
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
                else:
                    pooled = hidden.mean(dim=1)
                if features is None:
                    features = np.empty((len(rows), pooled.shape[-1]), dtype=np.float32)
                features[indices] = pooled.cpu().numpy()
        assert features is not None, f"no rows in {split} to compute features of"
        found[split] = features
    return found
