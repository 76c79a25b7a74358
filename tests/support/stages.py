"""Configs for tiny, seconds-long trainings, and running the DAG's first stages by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from warmstart.config import PLACEMENT_KEYS, Config


def tiny_config(
    data: Path,
    model: Path,
    registry: Path | None = None,
    images: bool = False,
    tune: dict | None = None,
    **train,
) -> Config:
    """A config that trains a tiny model for a few seconds (on the synthetic reviews, or on images).

    Each arm trains at its one rate unless `tune` (the tune section) turns the search on."""
    columns = {} if images else {"text_column": "text", "label_column": "sentiment"}
    values = {
        "data": {"source": str(data), "test_source": "", "test_fraction": 0.25, **columns},
        "model": {"source": str(model), "max_length": 32},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "learning_rate": 3e-3,
            "scratch_learning_rate": 3e-3,
            "eval_points": 3,
            # The same trajectories on every processor: auto would be bf16 on one with bf16
            # instructions. bf16 is tested on its own, and by the end-to-end run on the real model.
            "precision": "fp32",
            **{key: value for key, value in train.items() if key not in PLACEMENT_KEYS},
        },
        "placement": {key: value for key, value in train.items() if key in PLACEMENT_KEYS},
        "tune": tune if tune is not None else {"enabled": False},
        "gate": {"bootstrap_samples": 2000},
        "registry": {"uri": str(registry or ""), "name": "tiny"},
    }
    return Config.from_dict(values)


def stage_inputs(cfg: Config, work: Path) -> tuple[Config, Path]:
    """Ingest `cfg`'s data into WORK/data and fetch its model into WORK/base, as the DAG's first stages do."""
    from warmstart.fetch_model.sources import fetch_model
    from warmstart.ingest.dataset import ingest

    ingest(cfg.data, work / "data")
    fetch_model(cfg.model, work / "base")
    return cfg, work


def assert_resume_matches_an_unbroken_run(cfg: Config, work: Path, out: Path, monkeypatch, step: int) -> None:
    """Train the scratch arm once unbroken, and once with a crash right after the first checkpoint is
    stored (a pod lost there) and a restart: the restart resumes from `step` and ends identically."""
    from warmstart.finetune.checkpoints import Checkpoints
    from warmstart.finetune.launch import finetune

    def arm(name):
        return finetune(cfg, "scratch", work / "data", work / "base", out / name / "m", out / name / "e")

    class Crash(Exception):
        pass

    original = Checkpoints.save

    def save_then_crash(self, local_dir, step):
        original(self, local_dir, step)
        raise Crash

    unbroken = arm("unbroken")
    monkeypatch.setattr(Checkpoints, "save", save_then_crash)
    with pytest.raises(Crash):
        arm("resumed")
    monkeypatch.setattr(Checkpoints, "save", original)
    resumed = arm("resumed")
    assert resumed["resumed_from_step"] == step
    assert resumed["model_sha256"] == unbroken["model_sha256"]
    assert resumed["learning_curve"] == unbroken["learning_curve"]


def with_train(cfg: Config, **changes) -> Config:
    """`cfg` with some train.* keys changed (and placement.* keys, for the ones that moved there)."""
    from warmstart.config import PLACEMENT_KEYS

    placement = {key: changes.pop(key) for key in list(changes) if key in PLACEMENT_KEYS}
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update=changes),
            "placement": cfg.placement.model_copy(update=placement),
        }
    )


def tiny_image_config(data: Path, model: Path, registry: Path | None = None, **train) -> Config:
    """A config that trains the tiny ViT on an image folder for a few seconds."""
    return tiny_config(data, model, registry, images=True, **{"epochs": 3, **train})
