"""screen: choose the pretrained model to fine-tune before any training, by LogME on frozen features.

With `model.candidates` set, fetch_model scores `model.source` and every candidate on (a sample of)
the training split: each model's encoder runs once, frozen, its last hidden states are mean-pooled
per row, and LogME (You, Liu, Wang & Long, ICML 2021; see warmstart.fetch_model.transferability) measures how
well those features explain the labels. The same architecture as `model.source` with random
weights is scored too: a floor that says how much of a score any network of that shape would get.
The best-scoring pretrained candidate is fetched as the base model; the ranking goes to the gate's
report. LogME ranks; it does not decide. Fine-tuning and the gate still judge the chosen model
against scratch.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.artifacts import SCREENING_FILE, load_manifest
from warmstart.config import Config
from warmstart.fetch_model.probe import feature_precision, split_rows
from warmstart.fetch_model.sources import fetch

RANDOM_INIT = "random init"
METHOD = "LogME (You et al., ICML 2021) on mean-pooled frozen features of the training split"


def _score(
    model_dir: Path,
    rows: Any,
    labels: np.ndarray,
    modality: str,
    max_length: int,
    name: str,
    random_init: bool = False,
    seed: int = 0,
    precision: str = "fp32",
) -> tuple[float, float, np.ndarray]:
    from warmstart.fetch_model.transferability import logme, mean_pooled_features

    started = time.perf_counter()
    features = mean_pooled_features(
        model_dir,
        rows,
        max_length,
        modality,
        random_init=random_init,
        seed=seed,
        name=name,
        precision=precision,
    )
    return logme(features, labels), time.perf_counter() - started, features


def fetch_best(
    cfg: Config,
    dataset_dir: str | Path,
    output_dir: str | Path,
    screening_dir: str | Path | None = None,
    features: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fetch the base model into `output_dir`: `model.source`, or with `model.candidates` the one with
    the best LogME score. Returns its manifest and the screening (also written to `screening_dir`).
    A `features` dict receives the screened training rows' features of the chosen model
    (`pretrained`) and of the random init (`random_init`), for the linear probe to reuse."""
    output_dir = Path(output_dir)
    sources = list(dict.fromkeys([cfg.model.source, *cfg.model.candidates]))
    if len(sources) == 1:
        manifest = fetch(cfg.model.source, output_dir, cfg.registry.uri)
        screening: dict[str, Any] = {
            "screened": False,
            "chosen": cfg.model.source,
            "reason": "model.candidates is empty: model.source is fine-tuned without a pre-screen",
        }
    else:
        manifest, screening = _screen(cfg, sources, Path(dataset_dir), output_dir, features)
    if screening_dir is not None:
        Path(screening_dir).mkdir(parents=True, exist_ok=True)
        (Path(screening_dir) / SCREENING_FILE).write_text(json.dumps(screening, indent=2))
    return manifest, screening


def _screen(
    cfg: Config,
    sources: list[str],
    dataset_dir: Path,
    output_dir: Path,
    features: dict[str, np.ndarray] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fetch every source, score each by LogME on the training rows against the random-init floor,
    and move the best into `output_dir`: its manifest and the screening."""
    from warmstart.artifacts import load_card

    modality = load_card(dataset_dir).get("modality", "text")
    rows = split_rows(dataset_dir, "train", cfg.model.screen_rows, cfg.train.seed)
    labels = np.asarray(rows["label"])
    # The precision training runs in, so the linear probe can reuse these features.
    precision = feature_precision(cfg)

    def score(directory: Path, what: str, **random_init: Any) -> tuple[float, float, np.ndarray]:
        return _score(
            directory, rows, labels, modality, cfg.model.max_length, what, precision=precision, **random_init
        )

    ranking = []
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warmstart-screen-", dir=output_dir.parent) as scratch:
        fetched, pooled = [], []
        for index, uri in enumerate(sources):
            what = "model.source" if index == 0 else f"model.candidates[{cfg.model.candidates.index(uri)}]"
            directory = Path(scratch) / str(index)
            manifest = fetch(uri, directory, cfg.registry.uri, what)
            logme, seconds, found = score(directory, f"{what} '{uri}'")
            fetched.append(directory)
            pooled.append(found)
            ranking.append(_entry(uri, manifest, logme, seconds))
            print(f"screen: {uri} LogME {logme:.4f} ({seconds:.0f}s)", flush=True)
        # Seeded as the linear probe's random init (and the first scratch run's), so it can reuse these.
        floor, seconds, random_features = score(
            fetched[0], "model.source", random_init=True, seed=cfg.train.run_seeds()[0]
        )
        print(f"screen: {RANDOM_INIT} ({sources[0]}'s architecture) LogME {floor:.4f}", flush=True)
        best = max(range(len(sources)), key=lambda i: (ranking[i]["logme"], -i))
        if features is not None:
            features.update(pretrained=pooled[best], random_init=random_features)
        for index, entry in enumerate(ranking):
            entry.update(above_floor=entry["logme"] > floor, chosen=index == best)
        ranking.append(
            {
                "source": f"{RANDOM_INIT} ({load_manifest(fetched[0])['architecture']})",
                "logme": floor,
                "seconds": round(seconds, 2),
                "floor": True,
                "chosen": False,
            }
        )
        if output_dir.exists():
            shutil.rmtree(output_dir)
        shutil.move(fetched[best], output_dir)
    screening = {
        "screened": True,
        "method": METHOD,
        "rows": len(rows),
        "chosen": sources[best],
        "floor": floor,
        "ranking": sorted(ranking, key=lambda entry: -entry["logme"]),
    }
    return load_manifest(output_dir), screening


def _entry(uri: str, manifest: dict[str, Any], score: float, seconds: float) -> dict[str, Any]:
    return {
        "source": uri,
        "revision": manifest["revision"],
        "architecture": manifest["architecture"],
        "parameters": manifest["parameters"],
        "logme": score,
        "seconds": round(seconds, 2),
        "floor": False,
    }
