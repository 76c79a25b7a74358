"""finetune: train a text or image classifier from the pretrained weights or from a random init.

Both arms share everything but the initial weights and the learning rate: the same architecture,
tokenizer or image processor, training rows, step budget, batch size and seed. The run writes the
trained model (safetensors, config, tokenizer or image processor), per-example test predictions and
a learning curve: the validation metrics at step 0 and at evenly spaced steps through the budget.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warmstart.checkpoints import Checkpoints, arm_run
from warmstart.config import Config
from warmstart.errors import ConfigError, ModelError
from warmstart.fetch import verify_manifest
from warmstart.ingest import load_card
from warmstart.inputs import Inputs, auto_model, build_classifier, inputs_for
from warmstart.metrics import all_metrics
from warmstart.stage import ERROR_FILE_ENV, user_errors
from warmstart.storage import sha256_file
from warmstart.strategies import classification_layer, finished, prepare

Init = Literal["pretrained", "scratch"]
INITS: tuple[Init, ...] = ("pretrained", "scratch")
SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions.parquet"
WEIGHTS_FILE = "model.safetensors"
# Where torchrun workers keep their shared Trainer checkpoints (set by the launching process).
TRAINER_DIR_ENV = "WARMSTART_TRAINER_DIR"


def _load_split(dataset_dir: Path, split: str):
    from datasets import Dataset

    return Dataset(pq.read_table(dataset_dir / f"{split}.parquet"))


def build_model(init: Init, base_model_dir: Path, label_names: list[str], seed: int, modality: str = "text"):
    """The classifier for one arm: pretrained weights, or the same config randomly initialised."""
    import transformers

    transformers.set_seed(seed)
    return build_classifier(modality, base_model_dir, label_names, pretrained=init == "pretrained")


def build_model_from_dir(model_dir: Path, modality: str, max_length: int):
    """A trained classifier and its inputs from a directory (safetensors only, no remote code)."""
    inputs = inputs_for(modality, model_dir, max_length)
    model = auto_model(modality).from_pretrained(model_dir, use_safetensors=True, trust_remote_code=False)
    return model, inputs


def _forward_batches(model, inputs: Inputs, dataset, batch_size: int, precision: str = "fp32"):
    """Run `model` over an encoded dataset (under `precision` autocast); yields each batch's row indices
    and output."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for rows, batch in inputs.batches(dataset, batch_size):
            yield rows, model(**{k: v.to(device) for k, v in batch.items()})


def predict_probabilities(model, inputs: Inputs, dataset, batch_size: int) -> np.ndarray:
    """Class probabilities in the dataset's own order.

    A plain inference loop rather than Trainer.predict: with length grouping the Trainer also
    shuffles prediction order, and per-example predictions must line up with their test rows.
    """
    import torch

    probabilities = np.empty((len(dataset), model.config.num_labels), dtype=np.float32)
    for rows, output in _forward_batches(model, inputs, dataset, batch_size):
        probabilities[rows] = torch.softmax(output.logits.float(), dim=-1).cpu().numpy()
    return probabilities


def loader_workers(cuda: bool, cached_features: bool) -> int:
    """Data-loader processes that collate text batches or decode images while the model trains.

    On a GPU the main process would otherwise pad each batch (or decode its images) while the GPU
    waits: on an H200, BERT-base at batch 256 trained at 2,641 samples/s with batches collated in the
    main process and at 3,665 with these 4 processes (the bare model loop: 4,099; see
    bench/gpu_throughput.py). On a CPU the workers would take cores from training, and cached
    features need no collating.
    """
    return 4 if cuda and not cached_features else 0


def _evaluated_at(log_history: list[dict[str, Any]], step: int) -> bool:
    return any("eval_accuracy" in entry and entry["step"] == step for entry in log_history)


def native_bf16(cuda: bool) -> bool:
    """Whether this machine computes in bf16 natively: a GPU that supports it, or a CPU with AVX-512 BF16
    or AMX instructions (without them, CPU bf16 is emulated and far slower than fp32)."""
    import torch

    if cuda:
        return torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch >= 2.1
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(precision: str, cuda: bool, bf16_native: bool) -> str:
    """fp32, bf16 or fp16 for `train.precision` on this machine.

    auto: bf16 where the hardware computes it natively; otherwise fp16 on a GPU and fp32 on a CPU.
    """
    if precision == "auto":
        if bf16_native:
            return "bf16"
        return "fp16" if cuda else "fp32"
    if precision == "fp16" and not cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU and this machine has none; use auto or bf16")
    return precision


def _world() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) in a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _checkpoints(
    cfg: Config, init: Init, card: dict[str, Any], manifest: dict[str, Any]
) -> Checkpoints | None:
    root = cfg.checkpoint_root()
    if not root or not cfg.train.checkpoint_steps:
        return None
    run = arm_run(cfg, init, card, manifest)
    return Checkpoints(root, run, cfg.train.checkpoint_keep)


def encoder_features(model, inputs: Inputs, dataset, batch_size: int, precision: str = "fp32") -> np.ndarray:
    """The input of the final classification layer for every row, from one pass of the frozen network
    (in the autocast `precision` training uses, so the layer sees what it would see uncached)."""
    import torch

    layer = classification_layer(model)
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    features = np.empty((len(dataset), layer.in_features), dtype=np.float32)
    try:
        for rows, _ in _forward_batches(model, inputs, dataset, batch_size, precision):
            features[rows] = captured.pop().float().cpu().numpy()
    finally:
        hook.remove()
    return features


def layer_on_features(layer):
    """A module applying the classification `layer` to cached features, with the model's own loss.

    The layer is shared with the full model, so training this module trains the registered model.
    """
    import torch
    from transformers.modeling_outputs import SequenceClassifierOutput

    class LayerOnFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, features, labels=None, length=None):  # length: kept for length-grouped batches
            logits = self.layer(features)
            loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return LayerOnFeatures()


def _cached(model, inputs: Inputs, dataset, batch_size: int, precision: str):
    """`dataset` with its inputs replaced by the frozen network's features."""
    from datasets import Dataset

    labels = dataset.with_format(None)["label"]
    return Dataset.from_dict(
        {
            "features": encoder_features(model, inputs, dataset, batch_size, precision),
            "label": labels,
            **inputs.cache_columns(dataset),
        }
    ).with_format("numpy")


def throughput_meter(samples_per_step: int, total_steps: int) -> Any:
    """A Trainer callback that measures training throughput once warmed up.

    It times the optimizer steps after the first tenth of the budget (so torch.compile, the CUDA
    allocator and the data loader's start are left out), less the time spent evaluating, and reports
    samples per second in `.samples_per_second` (None when too few steps ran). The device is
    synchronised only at the two ends of that window, so the measurement does not slow training.
    Checkpoint writes inside the window count: they are part of what a run costs. Every step counts
    as `samples_per_step` samples (an epoch's last, smaller batch as a full one).
    """
    import torch
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        def __init__(self) -> None:
            self.warm_step = max(1, total_steps // 10)
            self.started: float | None = None
            self.evaluating = 0.0
            self.samples_per_second: float | None = None

        @staticmethod
        def _now() -> float:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.warm_step:
                self.started, self.evaluating = self._now(), 0.0

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.started is not None:
                self.evaluating += (metrics or {}).get("eval_runtime", 0.0)

        def on_train_end(self, args, state, control, **kwargs):
            if self.started is None or state.global_step <= self.warm_step:
                return
            seconds = self._now() - self.started - self.evaluating
            self.samples_per_second = (state.global_step - self.warm_step) * samples_per_step / seconds

    return Throughput()


def _trainer_class():
    """The Trainer with a training order that depends only on (data_seed, epoch).

    The stock samplers draw from the global RNG when an epoch starts, so a run resumed from a
    checkpoint would see a different order than the run it continues; seeding each epoch's order from
    the data seed and the epoch number makes a resumed run end exactly as an unbroken one. Images
    (all of one "length") get a plain seeded shuffle from the same sampler.
    """
    import torch
    from torch.utils.data import RandomSampler
    from transformers import PreTrainedModel, Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededSampler(LengthGroupedSampler):
        def __init__(self, *args, seed: int, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            self.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            return super().__iter__()

    class SeededTrainer(Trainer):
        def _save(self, output_dir=None, state_dict=None):
            super()._save(output_dir, state_dict)
            model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
            if isinstance(model, PreTrainedModel):
                # Checkpoints are written under the architecture's original parameter names but loaded
                # back by the current ones, non-strictly: the renamed weights (ViT's attention, in
                # transformers 5) would silently restart from their initial values. Keep current names.
                model.save_pretrained(
                    output_dir or self.args.output_dir,
                    state_dict=state_dict,
                    save_original_format=False,
                    is_main_process=self.args.should_save,
                )

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                batch_size, lengths = sampler.batch_size, sampler.lengths
            elif type(sampler) is RandomSampler:
                batch_size, lengths = self.args.train_batch_size, [1] * len(sampler.data_source)
            else:
                return sampler
            return EpochSeededSampler(batch_size, lengths=lengths, seed=self.args.data_seed or self.args.seed)

    return SeededTrainer


def finetune(
    cfg: Config,
    init: Init,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
) -> dict[str, Any]:
    """Train one arm and write its model, test predictions, learning curve and summary.

    With `train.nproc_per_node` > 1 this process starts torchrun, which runs the same function in
    every worker; the first worker writes the outputs. With `train.num_nodes` > 1 it submits a
    Kubeflow Trainer TrainJob that does the same on several nodes (warmstart.trainjob).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    dataset_dir, base_model_dir = Path(dataset_dir), Path(base_model_dir)
    model_dir, evaluation_dir = Path(model_dir), Path(evaluation_dir)
    if cfg.train.num_nodes > 1 and "LOCAL_RANK" not in os.environ:
        from warmstart.trainjob import finetune_on_trainer

        return finetune_on_trainer(cfg, init, dataset_dir, base_model_dir, model_dir, evaluation_dir)
    if cfg.train.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        return _torchrun(cfg, init, dataset_dir, base_model_dir, model_dir, evaluation_dir)
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: the processes of a node share one directory
        shared = os.environ.get(TRAINER_DIR_ENV) or Path(tempfile.gettempdir()) / (
            f"warmstart-trainer-{os.environ.get('TORCHELASTIC_RUN_ID', '')}-{os.environ.get('MASTER_PORT', '')}"
        )
        Path(shared).mkdir(parents=True, exist_ok=True)
        return _train(cfg, init, dataset_dir, base_model_dir, model_dir, evaluation_dir, Path(shared))
    with tempfile.TemporaryDirectory(prefix="warmstart-trainer-") as trainer_dir:
        return _train(cfg, init, dataset_dir, base_model_dir, model_dir, evaluation_dir, Path(trainer_dir))


def _train(
    cfg: Config,
    init: Init,
    dataset_dir: Path,
    base_model_dir: Path,
    model_dir: Path,
    evaluation_dir: Path,
    trainer_dir: Path,
) -> dict[str, Any]:
    import datasets
    import torch
    import transformers
    from transformers import EarlyStoppingCallback, TrainerCallback, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    card = load_card(dataset_dir)
    label_names = card["label_names"]
    train_cfg = cfg.train
    rank, world = _world()
    cuda = torch.cuda.is_available()
    precision = resolve_precision(train_cfg.precision, cuda, native_bf16(cuda))
    strategy = train_cfg.strategy if init == "pretrained" else "full"
    cache = strategy == "feature_extraction" and train_cfg.cache_features

    manifest = verify_manifest(base_model_dir)
    model_name = f"model.source '{manifest['source']}'"
    inputs = inputs_for(card.get("modality", "text"), base_model_dir, cfg.model.max_length, model_name)
    train = _load_split(dataset_dir, "train")
    if train_cfg.max_train_samples and train_cfg.max_train_samples < len(train):
        train = train.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_train_samples))
    validation = _load_split(dataset_dir, "validation")
    if train_cfg.max_eval_samples and train_cfg.max_eval_samples < len(validation):
        validation = validation.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_eval_samples))
    train, validation = inputs.encode(train), inputs.encode(validation, for_evaluation=True)

    # A step is one optimizer update: batch_size × processes × gradient_accumulation_steps examples.
    steps_per_epoch = math.ceil(
        math.ceil(len(train) / (train_cfg.batch_size * world)) / train_cfg.gradient_accumulation_steps
    )
    total_steps = train_cfg.max_steps or max(1, math.ceil(steps_per_epoch * train_cfg.epochs))
    eval_every = max(1, math.ceil(total_steps / train_cfg.eval_points))
    learning_rate = train_cfg.learning_rate if init == "pretrained" else train_cfg.scratch_learning_rate
    eval_batch_size = max(64, train_cfg.batch_size)
    checkpoints = _checkpoints(cfg, init, card, manifest)
    resume = _resume_point(checkpoints, trainer_dir)
    workers = loader_workers(cuda, cache)
    if workers and inputs.modality == "text":
        # The tokenizer ran threaded above; forked workers only pad, and say so rather than warn.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = TrainingArguments(
        output_dir=str(trainer_dir),
        per_device_train_batch_size=train_cfg.batch_size,
        per_device_eval_batch_size=eval_batch_size,
        max_steps=total_steps,
        learning_rate=learning_rate,
        weight_decay=train_cfg.weight_decay,
        warmup_steps=train_cfg.warmup_ratio,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        lr_scheduler_type=train_cfg.lr_schedule,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        torch_compile=train_cfg.compile,
        eval_strategy="steps",
        eval_steps=eval_every,
        eval_on_start=resume is None,  # the step-0 point; a resumed run has it in its restored history
        save_strategy="steps" if checkpoints else "no",
        save_steps=train_cfg.checkpoint_steps or total_steps,
        save_total_limit=1,
        save_only_model=False,
        metric_for_best_model=f"eval_{cfg.gate.metric}",
        greater_is_better=True,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="no",
        # The training loss is never logged, so its NaN filter would only cost a GPU sync each step.
        logging_nan_inf_filter=False,
        report_to=[],
        seed=train_cfg.seed,
        data_seed=train_cfg.seed,
        train_sampling_strategy=inputs.sampling,
        remove_unused_columns=inputs.remove_unused_columns,
        disable_tqdm=not sys.stderr.isatty() or rank != 0,
        dataloader_num_workers=workers,
        dataloader_pin_memory=cuda,
        # Pinned batches go to the GPU without waiting for it: accelerate's default blocking copy
        # synchronises every step, so the host could not queue the next step while this one runs.
        accelerator_config={"non_blocking": cuda},
        use_cpu=not cuda,
        ddp_backend=("nccl" if cuda else "gloo") if world > 1 else None,
    )
    model, parameter_groups = prepare(
        build_model(init, base_model_dir, label_names, train_cfg.seed, inputs.modality),
        train_cfg,
        init,
        learning_rate,
    )
    model.to(args.device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    classes = len(label_names)
    started = time.perf_counter()
    if cache:
        train = _cached(model, inputs, train, eval_batch_size, precision)
        validation = _cached(model, inputs, validation, eval_batch_size, precision)
        trained, collator = layer_on_features(classification_layer(model)), default_data_collator
    else:
        trained, collator = model, inputs.collator()

    def compute_metrics(prediction) -> dict[str, float]:
        return all_metrics(prediction.label_ids, prediction.predictions.argmax(-1), classes)

    class Progress(TrainerCallback):
        """One line per learning-curve point (readable in a terminal and in a pod's log); checkpoints
        leave the pod as soon as the Trainer has written them, and at every epoch end."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False  # the model itself is written next; a checkpoint is waste

        def on_epoch_end(self, args, state, control, **kwargs):
            if checkpoints and state.global_step < state.max_steps:
                control.should_save = True

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if state.is_world_process_zero:
                print(
                    f"finetune[{init} seed {train_cfg.seed}] step {state.global_step}/{total_steps} "
                    f"validation accuracy {metrics.get('eval_accuracy', float('nan')):.4f} "
                    f"macro_f1 {metrics.get('eval_macro_f1', float('nan')):.4f} "
                    f"({time.perf_counter() - started:.0f}s)",
                    flush=True,
                )

        def on_save(self, args, state, control, **kwargs):
            if world > 1:
                torch.distributed.barrier()  # every worker's RNG state is on disk
            if checkpoints and state.is_world_process_zero:
                checkpoints.save(trainer_dir / f"checkpoint-{state.global_step}", state.global_step)

    throughput = throughput_meter(
        train_cfg.batch_size * world * train_cfg.gradient_accumulation_steps, total_steps
    )
    callbacks: list[Any] = [Progress(), throughput]
    if train_cfg.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(train_cfg.early_stopping_patience, train_cfg.early_stopping_threshold)
        )
    if resume is not None and rank == 0:
        print(
            f"finetune[{init} seed {train_cfg.seed}] resuming from step {resume.name.split('-')[-1]} of {total_steps} "
            f"({checkpoints.uri})",
            flush=True,
        )
    trainer = _trainer_class()(
        model=trained,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=collator,
        processing_class=None if cache else inputs.processor,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
        # The strategy's parameter groups; the Trainer adds the warmup and decay schedule. Fused AdamW
        # (one kernel over all parameters) on CPU too: its step took 4 to 6× less time than the per-tensor
        # loop on MiniLM on the 2-core CPU.
        optimizers=(torch.optim.AdamW(parameter_groups, lr=learning_rate, fused=True), None),
    )
    trainer.remove_callback(PrinterCallback)  # Progress reports; raw log dicts are noise
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if not _evaluated_at(trainer.state.log_history, trainer.state.global_step):
        trainer.evaluate()
    train_seconds = time.perf_counter() - started
    curve = [
        {
            "step": entry["step"],
            "epoch": round(entry["step"] / steps_per_epoch, 4),
            "accuracy": entry["eval_accuracy"],
            "macro_f1": entry["eval_macro_f1"],
            "loss": entry["eval_loss"],
        }
        for entry in trainer.state.log_history
        if "eval_accuracy" in entry
    ]
    stopped_at = trainer.state.global_step
    if rank != 0:
        return {}
    model = finished(model)  # LoRA adapters merged: predict with, and save, exactly what is registered
    test_rows, probabilities = predict_test_split(model, inputs, dataset_dir, eval_batch_size)

    test_metrics = all_metrics(test_rows.column("label").to_numpy(), probabilities.argmax(axis=1), classes)

    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)  # safetensors; no pickled training_args beside it
    inputs.processor.save_pretrained(model_dir)
    write_predictions(evaluation_dir, test_rows, probabilities)
    summary = {
        "init": init,
        "modality": inputs.modality,
        "learning_rate": learning_rate,
        "strategy": strategy,
        "cached_features": cache,
        "precision": precision,
        "processes": world,
        "dataloader_workers": workers,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": test_rows.num_rows,
        "steps": total_steps,
        "steps_trained": stopped_at,
        "stopped_early": stopped_at < total_steps,
        "resumed_from_step": int(resume.name.split("-")[-1]) if resume else None,
        "gradient_accumulation_steps": train_cfg.gradient_accumulation_steps,
        "lr_schedule": train_cfg.lr_schedule,
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "seed": train_cfg.seed,
        "train_seconds": round(train_seconds, 2),
        # Samples per second after warm-up, evaluations left out (see throughput_meter).
        "train_samples_per_second": round(throughput.samples_per_second, 2)
        if throughput.samples_per_second
        else None,
        "test_metrics": test_metrics,
        "learning_curve": curve,
        "label_names": label_names,
        "model_sha256": sha256_file(model_dir / WEIGHTS_FILE),
        "base_model": manifest["source"],
        "base_model_revision": manifest["revision"],
        "data_fingerprint": card["fingerprint"],
        "test_fingerprint": card["fingerprints"]["test"],
    }
    (evaluation_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    if checkpoints:
        checkpoints.clear()  # the model is written: a rerun starts afresh
    return summary


def _resume_point(checkpoints: Checkpoints | None, trainer_dir: Path) -> Path | None:
    """The newest complete checkpoint, downloaded once per node: the first process to get the lock
    fetches it, the node's other torchrun workers use that copy."""
    if checkpoints is None:
        return None
    with open(trainer_dir / ".restore.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = trainer_dir / ".restored"
        if not marker.exists():
            found = checkpoints.restore(trainer_dir)
            marker.write_text(found.name if found else "")
        name = marker.read_text()
    return trainer_dir / name if name else None


def _torchrun(
    cfg: Config, init: Init, dataset_dir: Path, base_model_dir: Path, model_dir: Path, evaluation_dir: Path
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
        ]
        env = {**os.environ, TRAINER_DIR_ENV: str(trainer_dir), ERROR_FILE_ENV: str(error_file)}
        # Workers' progress lines pass through; torchrun's own report of a failed worker is a
        # traceback, shown only when the worker left no message of its own.
        with open(work_dir / "stderr.txt", "w+") as stderr:
            failed = subprocess.run(command, env=env, stderr=stderr).returncode != 0
            if failed:
                if error_file.exists():
                    reason = error_file.read_text().strip().removeprefix(f"finetune[{init}]: ")
                else:
                    stderr.seek(0)
                    sys.stderr.write(stderr.read()[-20_000:])
                    reason = "a worker failed (its log is above)"
                raise ModelError(f"torchrun with {cfg.train.nproc_per_node} processes failed: {reason}")
    return json.loads((evaluation_dir / SUMMARY_FILE).read_text())


def predict_test_split(
    model, inputs: Inputs, dataset_dir: Path, batch_size: int
) -> tuple[pa.Table, np.ndarray]:
    """The test split and `model`'s class probabilities for each of its rows."""
    from datasets import Dataset

    test_rows = pq.read_table(dataset_dir / "test.parquet")
    test = inputs.encode(Dataset(test_rows))
    return test_rows, predict_probabilities(model, inputs, test, batch_size)


def write_predictions(evaluation_dir: Path, test_rows: pa.Table, probabilities: np.ndarray) -> None:
    """predictions.parquet: per test row its id, text (or image name), label, predicted label and class
    probabilities."""
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    shown = "text" if "text" in test_rows.column_names else "name"
    pq.write_table(
        pa.table(
            {
                "id": test_rows.column("id"),
                shown: test_rows.column(shown),
                "label": test_rows.column("label"),
                "predicted": pa.array(probabilities.argmax(axis=1), pa.int64()),
                "probabilities": pa.array(probabilities.astype(np.float32).tolist(), pa.list_(pa.float32())),
            }
        ),
        evaluation_dir / PREDICTIONS_FILE,
    )


def load_evaluation(evaluation_dir: str | Path) -> tuple[dict[str, Any], pa.Table]:
    evaluation_dir = Path(evaluation_dir)
    summary = json.loads((evaluation_dir / SUMMARY_FILE).read_text())
    return summary, pq.read_table(evaluation_dir / PREDICTIONS_FILE)


def main(argv: list[str] | None = None) -> None:
    """`python -m warmstart.finetune`: one arm, on its own or as a torchrun worker (also on TrainJob nodes,
    where the inputs and outputs are s3:// URIs)."""
    parser = argparse.ArgumentParser(prog="python -m warmstart.finetune", description=main.__doc__)
    config = parser.add_mutually_exclusive_group(required=True)
    config.add_argument("--config", help="YAML or JSON config file")
    config.add_argument("--config-json", help="the config as a JSON string")
    parser.add_argument("--init", required=True, choices=INITS)
    for name in ("dataset", "base-model", "model", "evaluation"):
        parser.add_argument(f"--{name}", required=True, help="a local directory or an s3:// prefix")
    options = parser.parse_args(argv)
    from warmstart.config import load_config
    from warmstart.storage import fetch_tree, put_tree, scheme_of

    with user_errors(f"finetune[{options.init}]"), tempfile.TemporaryDirectory(prefix="warmstart-io-") as io:
        if options.config_json:
            cfg = Config.from_dict(json.loads(options.config_json), where="--config-json")
        else:
            cfg = load_config(options.config)
        local = {}
        for name in ("dataset", "base_model", "model", "evaluation"):
            uri = getattr(options, name)
            remote = scheme_of(uri) == "s3"
            local[name] = Path(io) / name if remote else Path(uri)
            if remote and name in ("dataset", "base_model"):
                fetch_tree(uri, local[name])
        summary = finetune(
            cfg, options.init, local["dataset"], local["base_model"], local["model"], local["evaluation"]
        )
        for name in ("model", "evaluation"):
            if summary and scheme_of(getattr(options, name)) == "s3":
                put_tree(local[name], getattr(options, name))


if __name__ == "__main__":
    main()
