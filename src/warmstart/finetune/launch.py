"""Where one arm trains, chosen in one place: in this process, in `train.nproc_per_node` torchrun workers
on this node, or on `train.num_nodes` nodes through a Kubeflow Trainer TrainJob (warmstart.finetune.trainjob).
Each runs warmstart.finetune's training, the workers through `python -m warmstart.finetune`; the
training never comes back here. The finetune step calls `finetune`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from warmstart.artifacts import load_summary
from warmstart.config import Config
from warmstart.errors import ModelError
from warmstart.finetune.train import TRAINER_DIR_ENV, Init, arm_rates, run_arguments, train
from warmstart.stage import ERROR_FILE_ENV, read_failure


def finetune(
    cfg: Config,
    init: Init,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    learning_rates: list[float] | None = None,
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Train one arm where the config says and return its summary (see warmstart.finetune.train for
    what it trains and writes): with `train.num_nodes` > 1 a TrainJob, with `train.nproc_per_node` > 1
    torchrun on this node, else this process."""
    rates = arm_rates(cfg, init, learning_rates)
    paths = (Path(dataset_dir), Path(base_model_dir), Path(model_dir), Path(evaluation_dir))
    if cfg.train.num_nodes > 1:
        from warmstart.finetune.trainjob import finetune_on_trainer

        return finetune_on_trainer(cfg, init, *paths, rates, fraction)
    if cfg.train.nproc_per_node > 1:
        return _torchrun(cfg, init, *paths, rates, fraction)
    return train(cfg, init, *paths, rates, fraction)


def _torchrun(
    cfg: Config,
    init: Init,
    dataset_dir: Path,
    base_model_dir: Path,
    model_dir: Path,
    evaluation_dir: Path,
    learning_rates: list[float],
    fraction: float,
) -> dict[str, Any]:
    """Run this finetune in `nproc_per_node` DDP workers via torchrun and return the first worker's summary."""
    with tempfile.TemporaryDirectory(prefix="warmstart-torchrun-") as work:
        work_dir = Path(work)
        trainer_dir, error_file = work_dir / "trainer", work_dir / "error.txt"
        trainer_dir.mkdir()
        config_file = work_dir / "config.json"
        config_file.write_text(cfg.model_dump_json())
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={cfg.train.nproc_per_node}",
            "-m",
            "warmstart.finetune",
            *("--config", str(config_file), "--init", init),
            *("--dataset", str(dataset_dir), "--base-model", str(base_model_dir)),
            *("--model", str(model_dir), "--evaluation", str(evaluation_dir)),
            *run_arguments(learning_rates, fraction),
        ]
        env = {**os.environ, TRAINER_DIR_ENV: str(trainer_dir), ERROR_FILE_ENV: str(error_file)}
        # Workers' progress lines pass through; torchrun's own report of a failed worker is a
        # traceback, shown only when the worker left no message of its own.
        with open(work_dir / "stderr.txt", "w+") as stderr:
            failed = subprocess.run(command, env=env, stderr=stderr).returncode != 0
            if failed:
                _worker_failed(cfg, read_failure(error_file), stderr)
    return load_summary(evaluation_dir)


def _worker_failed(cfg: Config, failure: dict[str, str] | None, stderr: Any) -> None:
    """Raise what a torchrun worker failed on: its own message when it left one (a user's mistake as
    such, a bug as a bug), else torchrun's report, which is a traceback."""
    processes = f"torchrun with {cfg.train.nproc_per_node} processes"
    if failure and failure["kind"] == "user":
        raise ModelError(f"{processes} failed: {failure['message']}")
    if failure:
        raise RuntimeError(f"{processes} failed: {failure['message']}")
    stderr.seek(0)
    sys.stderr.write(stderr.read()[-20_000:])
    raise RuntimeError(f"{processes} failed: a worker failed (its log is above)")
