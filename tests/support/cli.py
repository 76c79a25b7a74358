"""Running the `warmstart` command as a user does, in a new process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from support.data import synthetic_rows, write_csv


def run_warmstart(
    *args: str, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """The `warmstart` command in a new process, as a user runs it (with `env` added to the
    environment); output captured."""
    return subprocess.run(
        [sys.executable, "-m", "warmstart", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )


def tiny_run_config(tmp_path: Path, model: Path, **gate) -> Path:
    """A config file for `warmstart run` that trains the tiny model on 240 synthetic reviews in seconds."""
    data = write_csv(tmp_path / "reviews.csv", synthetic_rows(240, seed=21))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "source": str(data),
                    "test_source": "",
                    "text_column": "text",
                    "label_column": "sentiment",
                    "test_fraction": 0.4,
                },
                "model": {"source": str(model), "max_length": 32},
                "train": {
                    "epochs": 1,
                    "batch_size": 16,
                    "learning_rate": 1e-3,
                    "scratch_learning_rate": 1e-3,
                    "eval_points": 2,
                    # The same trajectory on every processor (auto is bf16 on one with bf16 instructions):
                    # the champion test's deliberately worse challenger depends on it.
                    "precision": "fp32",
                },
                "gate": {"bootstrap_samples": 2000, **gate},
                "registry": {"name": "tiny-reviews"},
            }
        )
    )
    return config


def unprivileged(command: list[str]) -> list[str] | None:
    """`command` run so that file permissions bind it: as is for a user, in a user namespace (where
    root's override of permissions does not reach root's own files) for root; None if neither works."""
    if os.getuid() != 0:
        return command
    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "true"]).returncode == 0:
        return ["unshare", "--user", *command]
    return None
