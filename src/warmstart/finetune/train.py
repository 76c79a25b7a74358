"""finetune: train a text, image or audio classifier from the pretrained weights or from a random init.

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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warmstart.artifacts import (
    SUMMARY_FILE,
    WEIGHTS_FILE,
    load_card,
    verify_manifest,
    write_predictions,
    write_validation_predictions,
)
from warmstart.augment import Augmentation
from warmstart.config import Config
from warmstart.errors import ModelError
from warmstart.finetune.checkpoints import Checkpoints, arm_run
from warmstart.finetune.strategies import classification_layer, finished, prepare
from warmstart.finetune.tuning import RANK_RULE, grid, middle, ranking, rungs, survivors
from warmstart.inputs import Inputs, auto_model, build_classifier, inputs_for
from warmstart.metrics import all_metrics
from warmstart.precision import native_bf16, resolve_precision
from warmstart.stage import CPU_THREADS_ENV, user_errors
from warmstart.storage import sha256_file

Init = Literal["pretrained", "scratch"]
INITS: tuple[Init, ...] = ("pretrained", "scratch")
# The same, inside a training checkpoint, so that a resumed run still has the points before it.
CHECKPOINT_VALIDATION_FILE = "warmstart_validation.json"
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


def build_model_from_dir(model_dir: Path, modality: str, max_length: int, max_seconds: float | None = None):
    """A trained classifier and its inputs from a directory (safetensors only, no remote code)."""
    inputs = inputs_for(modality, model_dir, max_length, max_seconds=max_seconds)
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


def _world() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) in a single process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


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


def batch_mean_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy averaged over every row of the optimizer step, however many passes the step's
    batch took (gradient accumulation, or `micro_batches`).

    The Trainer sees that a model such as BertForSequenceClassification accepts loss keyword
    arguments and so does not divide its loss by the accumulation steps, but that head ignores them
    and returns each pass's mean: the gradient of an accumulated step was the sum of the passes'
    means, k times too large (Adam hardly minds; gradient clipping does). Summing here and dividing by
    the step's row count gives the gradient of one batch.
    """
    import torch

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    loss = torch.nn.functional.cross_entropy(
        logits.float().view(-1, logits.shape[-1]), labels.view(-1), reduction="sum"
    )
    return loss / (num_items_in_batch if num_items_in_batch is not None else labels.numel())


def micro_batches(arm: _Arm) -> int:
    """Pieces each shuffled text batch is cut into by length, one forward and backward pass each, their
    gradients summed into the batch's one optimizer step: 2 in a single CPU process, 1 elsewhere.

    Every step is still exactly a shuffled batch (the gradient of the same rows); only less padding is
    computed, since the short half of a batch is no longer padded to its longest text. On the demo's
    SST-2 phrases MiniLM's step took 0.275 s in two pieces against 0.342 s in one (by hand; four
    pieces were slower than two in an earlier measurement: the matrices get too small). Not on a GPU, where padding is cheap and bigger batches are faster
    (unmeasured), nor with several processes.
    """
    text = arm.inputs.modality == "text" and not arm.cache and not arm.cfg.train.group_by_length
    batch = arm.cfg.train.batch_size
    return 2 if text and not arm.cuda and arm.world == 1 and batch >= 8 and batch % 2 == 0 else 1


def _trainer_class(batch_rows: int):
    """The Trainer with a training order that depends only on (data_seed, epoch), in shuffled batches
    of `batch_rows` rows (by default; see train.group_by_length).

    The stock samplers draw from the global RNG when an epoch starts, so a run resumed from a
    checkpoint would see a different order than the run it continues; seeding each epoch's order from
    the data seed and the epoch number makes a resumed run end exactly as an unbroken one. Within each
    shuffled batch the rows come shortest first, so the pieces `micro_batches` cuts it into carry
    little padding.
    """
    import torch
    from torch.utils.data import RandomSampler, Sampler, SequentialSampler
    from transformers import PreTrainedModel, Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class ShuffledBatches(Sampler):
        def __init__(self, lengths: list[int], seed: int) -> None:
            self.lengths, self.seed, self.epoch = np.asarray(lengths), seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return len(self.lengths)

        def __iter__(self):
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(len(self.lengths), generator=generator).numpy()
            for start in range(0, len(order), batch_rows):
                rows = order[start : start + batch_rows]
                yield from rows[np.argsort(self.lengths[rows], kind="stable")].tolist()

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

        def _get_eval_sampler(self, eval_dataset):
            # Validation rows in their own order (already sorted by length): each prediction lines up
            # with its row, for the learning curve's per-row predictions.
            return SequentialSampler(eval_dataset) if eval_dataset is not None else None

        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed or self.args.seed
            if type(sampler) is LengthGroupedSampler:
                return EpochSeededSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
            if type(sampler) is RandomSampler:
                dataset = train_dataset if train_dataset is not None else self.train_dataset
                names = getattr(dataset, "column_names", None) or []
                lengths = dataset["length"] if "length" in names else [1] * len(dataset)
                return ShuffledBatches(lengths, seed)
            return sampler

    return SeededTrainer


def arm_rates(cfg: Config, init: Init, learning_rates: list[float] | None) -> list[float]:
    """The rates an arm searches: `learning_rates` in order, or by default its whole tuning grid."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return sorted(float(rate) for rate in learning_rates) if learning_rates else grid(cfg, init)


def train(
    cfg: Config,
    init: Init,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
    learning_rates: list[float] | None = None,
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Train one arm in this process (alone, or as one torchrun worker) and write its model, test
    predictions, learning curve and summary. Where the training runs is warmstart.finetune.launch's choice.

    The arm tries `learning_rates` (default: its whole tuning grid, warmstart.finetune.tuning) by successive
    halving on the validation split and keeps the best; `fraction` < 1 trains on that share of the
    training split (nested, stratified), on the same step budget. Under torchrun the first worker
    writes the outputs.
    """
    rates = arm_rates(cfg, init, learning_rates)
    paths = (Path(dataset_dir), Path(base_model_dir), Path(model_dir), Path(evaluation_dir))
    if "LOCAL_RANK" in os.environ:  # a torchrun worker: the processes of a node share one directory
        shared = os.environ.get(TRAINER_DIR_ENV) or Path(tempfile.gettempdir()) / (
            f"warmstart-trainer-{os.environ.get('TORCHELASTIC_RUN_ID', '')}-{os.environ.get('MASTER_PORT', '')}"
        )
        Path(shared).mkdir(parents=True, exist_ok=True)
        return _train(cfg, init, *paths, Path(shared), rates, fraction)
    with tempfile.TemporaryDirectory(prefix="warmstart-trainer-") as trainer_dir:
        return _train(cfg, init, *paths, Path(trainer_dir), rates, fraction)


def nested_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Row indices of a stratified `fraction` of the rows, in row order; a smaller fraction's rows are
    always among a larger one's (each class's rows in one seeded order, cut at the same place)."""
    if fraction >= 1:
        return np.arange(len(labels))
    order = np.random.default_rng(seed).permutation(len(labels))
    keep = []
    for label in np.unique(labels):
        rows = order[labels[order] == label]
        keep.append(rows[: max(1, math.ceil(fraction * len(rows)))])
    return np.sort(np.concatenate(keep))


@dataclass
class _Arm:
    """What every trial of one arm shares: the data, its inputs, the budget, the precision, the placement."""

    cfg: Config
    init: Init
    card: dict[str, Any]
    manifest: dict[str, Any]
    dataset_dir: Path
    base_model_dir: Path
    inputs: Inputs
    train: Any
    validation: Any
    fraction: float
    precision: str
    strategy: str
    cache: bool
    total_steps: int
    steps_per_epoch: int
    eval_every: int
    eval_batch_size: int
    rank: int
    world: int
    cuda: bool
    workers: int
    augmentation: Augmentation | None = None  # train.augment: the training rows' augmentation
    started: float = field(default_factory=time.perf_counter)
    cached: tuple[Any, Any] | None = None  # the frozen network's features (feature extraction)


@dataclass
class _Trial:
    """One learning rate of the arm's search: where it trains, how far it got, what it measured."""

    learning_rate: float
    directory: Path
    checkpoints: Checkpoints | None
    resume: Path | None = None  # the checkpoint it continues from
    resumed_from_step: int | None = None
    steps: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)  # its learning-curve points
    validation: dict[int, list[int]] = field(default_factory=dict)  # step → predicted class per row
    model: Any = None  # kept once it has trained its last step, until the search ends
    seconds: float = 0.0
    samples_per_second: float | None = None

    def point(self, step: int | None = None) -> dict[str, Any]:
        """Its learning-curve point at `step` or the last one before it (default: its latest)."""
        if not self.history:
            return {"step": 0, "accuracy": 0.0, "macro_f1": 0.0, "loss": math.inf}
        if step is None:
            return self.history[-1]
        return ([point for point in self.history if point["step"] <= step] or self.history[:1])[-1]


def _arm(cfg: Config, init: Init, dataset_dir: Path, base_model_dir: Path, fraction: float) -> _Arm:
    """Load and encode the splits once for all of an arm's trials, and fix the step budget."""
    import torch

    card = load_card(dataset_dir)
    train_cfg = cfg.train
    rank, world = _world()
    cuda = torch.cuda.is_available()
    precision = resolve_precision(train_cfg.precision, cuda, native_bf16(cuda))
    strategy = train_cfg.strategy if init == "pretrained" else "full"
    # Augmented rows differ every epoch, so their features cannot be computed once.
    cache = strategy == "feature_extraction" and train_cfg.cache_features and not train_cfg.augment
    manifest = verify_manifest(base_model_dir)
    model_name = f"model.source '{manifest['source']}'"
    inputs = inputs_for(card.get("modality", "text"), base_model_dir, cfg.model.max_length, model_name)
    train = _load_split(dataset_dir, "train")
    if train_cfg.max_train_samples and train_cfg.max_train_samples < len(train):
        train = train.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_train_samples))
    # The budget is the whole split's: a smaller share of the rows gets the same number of steps.
    steps_per_epoch = math.ceil(
        math.ceil(len(train) / (train_cfg.batch_size * world)) / train_cfg.gradient_accumulation_steps
    )
    total_steps = train_cfg.max_steps or max(1, math.ceil(steps_per_epoch * train_cfg.epochs))
    if fraction < 1:
        labels = np.asarray(train.with_format(None)["label"])
        train = train.select(nested_subset(labels, fraction, cfg.data.split_seed))
    validation = _load_split(dataset_dir, "validation")
    if train_cfg.max_eval_samples and train_cfg.max_eval_samples < len(validation):
        validation = validation.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_eval_samples))
    augmentation = Augmentation(inputs.modality, train_cfg.seed) if train_cfg.augment else None
    train = inputs.encode(train, augmentation=augmentation)
    validation = inputs.encode(validation, for_evaluation=True)
    workers = loader_workers(cuda, cache)
    if workers and inputs.modality == "text":
        # The tokenizer ran threaded above; forked workers only pad, and say so rather than warn.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return _Arm(
        cfg=cfg,
        init=init,
        card=card,
        manifest=manifest,
        dataset_dir=dataset_dir,
        base_model_dir=base_model_dir,
        inputs=inputs,
        train=train,
        validation=validation,
        fraction=fraction,
        precision=precision,
        strategy=strategy,
        cache=cache,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        eval_every=max(1, math.ceil(total_steps / train_cfg.eval_points)),
        eval_batch_size=max(64, train_cfg.batch_size),
        rank=rank,
        world=world,
        cuda=cuda,
        workers=workers,
        augmentation=augmentation,
    )


def _with_rate(cfg: Config, init: Init, learning_rate: float) -> Config:
    """`cfg` with the arm's rate set to `learning_rate`: what one trial trains with."""
    copy = cfg.model_copy(deep=True)
    if init == "pretrained":
        copy.train.learning_rate = learning_rate
    else:
        copy.train.scratch_learning_rate = learning_rate
    return copy


def _trial(arm: _Arm, learning_rate: float, directory: Path) -> _Trial:
    """A trial, resumed from its newest stored checkpoint when a restarted task finds one."""
    directory.mkdir(parents=True, exist_ok=True)
    checkpoints = _checkpoints(arm, learning_rate)
    trial = _Trial(learning_rate, directory, checkpoints)
    found = _resume_point(checkpoints, directory)
    if found is not None:
        _continue_from(trial, found)
        trial.resumed_from_step = trial.steps
    return trial


def _continue_from(trial: _Trial, checkpoint: Path) -> None:
    """Point `trial` at a checkpoint: its step, its learning-curve points and its validation predictions."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    trial.resume, trial.steps = checkpoint, int(state["global_step"])
    trial.history = _curve_points(state["log_history"])
    saved = checkpoint / CHECKPOINT_VALIDATION_FILE
    if saved.is_file():
        trial.validation = {int(step): rows for step, rows in json.loads(saved.read_text()).items()}


def _curve_points(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The learning curve from the Trainer's log: validation metrics and loss at each evaluation."""
    return [
        {
            "step": entry["step"],
            "accuracy": entry["eval_accuracy"],
            "macro_f1": entry["eval_macro_f1"],
            "loss": entry["eval_loss"],
        }
        for entry in log_history
        if "eval_accuracy" in entry
    ]


def _checkpoints(arm: _Arm, learning_rate: float) -> Checkpoints | None:
    cfg = arm.cfg
    root = cfg.checkpoint_root()
    if not root or not cfg.placement.checkpoint_steps:
        return None
    extra = {"fraction": arm.fraction} if arm.fraction < 1 else {}
    run = arm_run(_with_rate(cfg, arm.init, learning_rate), arm.init, arm.card, arm.manifest, **extra)
    return Checkpoints(root, run, cfg.placement.checkpoint_keep)


def _train(
    cfg: Config,
    init: Init,
    dataset_dir: Path,
    base_model_dir: Path,
    model_dir: Path,
    evaluation_dir: Path,
    trainer_dir: Path,
    learning_rates: list[float],
    fraction: float = 1.0,
) -> dict[str, Any]:
    """Successive halving over `learning_rates` (one rate: plain training), then the chosen run's outputs."""
    import datasets
    import torch
    import transformers

    if os.environ.get(CPU_THREADS_ENV):
        torch.set_num_threads(int(os.environ[CPU_THREADS_ENV]))
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    arm = _arm(cfg, init, dataset_dir, base_model_dir, fraction)
    trials = [_trial(arm, rate, trainer_dir / f"lr-{index}") for index, rate in enumerate(learning_rates)]
    schedule = rungs(len(trials), arm.total_steps, cfg.tune.reduction, arm.eval_every)
    alive, reached, centre, rows = trials, 0, middle(grid(cfg, init)), len(arm.validation)
    for step, count in schedule:
        # The best `count` at the last rung's step go on (all of them at the first rung).
        ranked = [_ranked(t, reached) for t in alive]
        alive = [alive[i] for i in survivors(ranked, count, cfg.gate.metric, centre, rows)]
        for trial in alive:
            _train_trial(arm, trial, step)
        for trial in trials:
            if trial not in alive:
                trial.model = None  # out of the search: its weights are not needed
        reached = step
    chosen = alive[ranking([_ranked(t, reached) for t in alive], cfg.gate.metric, centre, rows)[0]]
    if arm.rank != 0:
        return {}
    summary = _write_outputs(arm, chosen, trials, schedule, model_dir, evaluation_dir)
    for trial in trials:
        if trial.checkpoints:
            trial.checkpoints.clear()  # the model is written: a rerun starts afresh
    return summary


def _ranked(trial: _Trial, step: int) -> dict[str, Any]:
    """The trial as a rung compares it: its rate and its validation at `step` (or its last point before:
    a trial that stopped early, or one a restarted task found further on)."""
    return {"learning_rate": trial.learning_rate, "validation": trial.point(step)}


def _arguments(arm: _Arm, trial: _Trial) -> Any:
    """The Trainer's arguments for one trial: the whole budget's schedule, whichever rung it stops at."""
    from transformers import TrainingArguments

    train_cfg = arm.cfg.train
    pieces = micro_batches(arm)
    return TrainingArguments(
        output_dir=str(trial.directory),
        per_device_train_batch_size=train_cfg.batch_size // pieces,
        per_device_eval_batch_size=arm.eval_batch_size,
        max_steps=arm.total_steps,
        learning_rate=trial.learning_rate,
        weight_decay=train_cfg.weight_decay,
        warmup_steps=train_cfg.warmup_ratio,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps * pieces,
        lr_scheduler_type=train_cfg.lr_schedule,
        bf16=arm.precision == "bf16",
        fp16=arm.precision == "fp16",
        torch_compile=train_cfg.compile,
        eval_strategy="steps",
        eval_steps=arm.eval_every,
        eval_on_start=trial.resume is None,  # the step-0 point; a resumed run has it in its restored history
        # Checkpoints at placement.checkpoint_steps and epoch ends go to the store; a rung's checkpoint, which
        # the trial continues from, is asked for by the rung itself (see _rung_callback).
        save_strategy="steps",
        save_steps=arm.cfg.placement.checkpoint_steps or arm.total_steps,
        save_total_limit=1,
        save_only_model=False,
        metric_for_best_model=f"eval_{arm.cfg.gate.metric}",
        greater_is_better=True,
        restore_callback_states_from_checkpoint=True,
        logging_strategy="no",
        # The training loss is never logged, so its NaN filter would only cost a GPU sync each step.
        logging_nan_inf_filter=False,
        report_to=[],
        seed=train_cfg.seed,
        data_seed=train_cfg.seed,
        # Shuffled batches unless asked otherwise; see train.group_by_length for why.
        train_sampling_strategy="group_by_length"
        if train_cfg.group_by_length and arm.inputs.modality == "text"
        else "random",
        remove_unused_columns=arm.inputs.remove_unused_columns,
        disable_tqdm=not sys.stderr.isatty() or arm.rank != 0,
        dataloader_num_workers=arm.workers,
        dataloader_pin_memory=arm.cuda,
        # Pinned batches go to the GPU without waiting for it: accelerate's default blocking copy
        # synchronises every step, so the host could not queue the next step while this one runs.
        accelerator_config={"non_blocking": arm.cuda},
        use_cpu=not arm.cuda,
        ddp_backend=("nccl" if arm.cuda else "gloo") if arm.world > 1 else None,
    )


def _train_trial(arm: _Arm, trial: _Trial, stop_at: int) -> None:
    """Train `trial` from where it is to step `stop_at` (or until early stopping ends it)."""
    from transformers import default_data_collator
    from transformers.trainer_callback import PrinterCallback

    if trial.steps >= stop_at or trial.stopped_early:
        return  # a restarted task found it there already, or it has ended
    train_cfg = arm.cfg.train
    args = _arguments(arm, trial)
    model, parameter_groups = prepare(
        build_model(
            arm.init, arm.base_model_dir, arm.card["label_names"], train_cfg.seed, arm.inputs.modality
        ),
        train_cfg,
        arm.init,
        trial.learning_rate,
    )
    model.to(args.device)
    started = time.perf_counter()
    if arm.cache:
        if arm.cached is None:  # the frozen network is the same for every rate: its features once
            arm.cached = tuple(
                _cached(model, arm.inputs, split, arm.eval_batch_size, arm.precision)
                for split in (arm.train, arm.validation)
            )
        train, validation = arm.cached
        trained, collator = layer_on_features(classification_layer(model)), default_data_collator
    else:
        train, validation = arm.train, arm.validation
        trained, collator = model, arm.inputs.collator()
    trainer, throughput = _trainer(
        arm, trial, stop_at, args, (trained, parameter_groups), collator, train, validation
    )
    trainer.remove_callback(PrinterCallback)  # Progress reports; raw log dicts are noise
    trainer.train(resume_from_checkpoint=str(trial.resume) if trial.resume else None)
    step = trainer.state.global_step
    if not _evaluated_at(trainer.state.log_history, step):
        trainer.evaluate()
    trial.steps, trial.history = step, _curve_points(trainer.state.log_history)
    trial.stopped_early = step < stop_at
    trial.seconds += time.perf_counter() - started
    trial.samples_per_second = throughput.samples_per_second or trial.samples_per_second
    saved = trial.directory / f"checkpoint-{step}"
    trial.resume = saved if saved.is_dir() else trial.resume
    if step >= arm.total_steps or trial.stopped_early:
        # Kept until the search ends (off the GPU while others train), LoRA adapters merged: predict
        # with, and save, exactly what is registered.
        trial.model = finished(model).to("cpu")


def _trainer(
    arm: _Arm,
    trial: _Trial,
    stop_at: int,
    args: Any,
    model_and_groups: tuple[Any, Any],
    collator: Any,
    train: Any,
    validation: Any,
) -> tuple[Any, Any]:
    """The Trainer for one stretch of a trial (to `stop_at`), with its callbacks: progress lines, the
    throughput meter (returned too), early stopping when asked, and the rung's stop. `model_and_groups`
    is what trains (the model, or a head on cached features) and the strategy's parameter groups."""
    import torch
    from transformers import EarlyStoppingCallback

    train_cfg = arm.cfg.train
    trained, parameter_groups = model_and_groups
    classes = len(arm.card["label_names"])
    latest: dict[str, np.ndarray] = {}

    def compute_metrics(prediction) -> dict[str, float]:
        latest["predicted"] = prediction.predictions.argmax(-1)
        return all_metrics(prediction.label_ids, latest["predicted"], classes)

    throughput = throughput_meter(
        train_cfg.batch_size * arm.world * train_cfg.gradient_accumulation_steps, arm.total_steps
    )
    callbacks: list[Any] = [_progress_callback(arm, trial, latest), throughput]
    if train_cfg.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(train_cfg.early_stopping_patience, train_cfg.early_stopping_threshold)
        )
    callbacks.append(_rung_callback(stop_at))  # after early stopping: it saves where that stops
    if trial.resume is not None and arm.rank == 0 and trial.resumed_from_step == trial.steps:
        print(
            f"{_label(arm, trial)} resuming from step {trial.steps} of {arm.total_steps} "
            f"({trial.checkpoints.uri if trial.checkpoints else trial.resume})",
            flush=True,
        )
    trainer = _trainer_class(train_cfg.batch_size)(
        model=trained,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=collator,
        processing_class=None if arm.cache else arm.inputs.processor,
        compute_metrics=compute_metrics,
        compute_loss_func=batch_mean_loss,
        callbacks=callbacks,
        # The strategy's parameter groups; the Trainer adds the warmup and decay schedule. Fused AdamW
        # (one kernel over all parameters) on CPU too: its step took 4 to 6× less time than the per-tensor
        # loop on MiniLM on the 2-core CPU.
        optimizers=(torch.optim.AdamW(parameter_groups, lr=trial.learning_rate, fused=True), None),
    )
    return trainer, throughput


def _label(arm: _Arm, trial: _Trial) -> str:
    rate = f" lr {trial.learning_rate:g}" if arm.cfg.tune.enabled else ""
    share = f" rows {arm.fraction:g}" if arm.fraction < 1 else ""
    return f"finetune[{arm.init} seed {arm.cfg.train.seed}{share}{rate}]"


def _progress_callback(arm: _Arm, trial: _Trial, latest: dict[str, np.ndarray]) -> Any:
    """One line per learning-curve point (readable in a terminal and in a pod's log); each point's
    per-row validation predictions kept, and written into every checkpoint; checkpoints leave the pod
    as soon as the Trainer has written them, and at every epoch end."""
    import torch
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_save = False  # the model itself is written next; a checkpoint is waste

        def on_epoch_begin(self, args, state, control, **kwargs):
            if arm.augmentation is not None:  # a resumed epoch's rows get what the unbroken run gave them
                arm.augmentation.epoch = math.floor((state.epoch or 0) + 1e-6)

        def on_epoch_end(self, args, state, control, **kwargs):
            if trial.checkpoints and state.global_step < state.max_steps:
                control.should_save = True

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if "predicted" in latest:
                trial.validation[state.global_step] = latest.pop("predicted").astype(int).tolist()
            if state.is_world_process_zero:
                print(
                    f"{_label(arm, trial)} step {state.global_step}/{arm.total_steps} "
                    f"validation accuracy {metrics.get('eval_accuracy', float('nan')):.4f} "
                    f"macro_f1 {metrics.get('eval_macro_f1', float('nan')):.4f} "
                    f"({time.perf_counter() - arm.started:.0f}s)",
                    flush=True,
                )

        def on_save(self, args, state, control, **kwargs):
            if arm.world > 1:
                torch.distributed.barrier()  # every worker's RNG state is on disk
            if state.is_world_process_zero:
                saved = trial.directory / f"checkpoint-{state.global_step}"
                (saved / CHECKPOINT_VALIDATION_FILE).write_text(json.dumps(trial.validation))
                if trial.checkpoints:
                    trial.checkpoints.save(saved, state.global_step)

    return Progress()


def _rung_callback(stop_at: int) -> Any:
    """Ends a trial at its rung's step, evaluated and checkpointed so it can continue from there; and
    checkpoints a trial where early stopping ends it, so its model can be had back."""
    from transformers import TrainerCallback

    class Rung(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == stop_at and stop_at < state.max_steps:
                control.should_evaluate = control.should_save = control.should_training_stop = True

        def on_evaluate(self, args, state, control, **kwargs):
            if control.should_training_stop and state.global_step < state.max_steps:
                control.should_save = True

    return Rung()


def _write_outputs(
    arm: _Arm,
    chosen: _Trial,
    trials: list[_Trial],
    schedule: list[tuple[int, int]],
    model_dir: Path,
    evaluation_dir: Path,
) -> dict[str, Any]:
    """The chosen trial's model, its test and validation predictions, and the summary of the search."""
    cfg, init = arm.cfg, arm.init
    classes = len(arm.card["label_names"])
    model = chosen.model.to("cuda" if arm.cuda else "cpu")
    test_rows, probabilities = predict_test_split(model, arm.inputs, arm.dataset_dir, arm.eval_batch_size)
    test_metrics = all_metrics(test_rows.column("label").to_numpy(), probabilities.argmax(axis=1), classes)
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)  # safetensors; no pickled training_args beside it
    arm.inputs.processor.save_pretrained(model_dir)
    write_predictions(evaluation_dir, test_rows, probabilities)
    curve = [{**point, "epoch": round(point["step"] / arm.steps_per_epoch, 4)} for point in chosen.history]
    write_validation_predictions(evaluation_dir, arm.validation, curve, chosen.validation)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary = {
        "init": init,
        "modality": arm.inputs.modality,
        "learning_rate": chosen.learning_rate,
        "strategy": arm.strategy,
        "cached_features": arm.cache,
        "augmentation": arm.augmentation.description if arm.augmentation else None,
        "precision": arm.precision,
        "processes": arm.world,
        "dataloader_workers": arm.workers,
        "trainable_parameters": trainable,
        "total_parameters": sum(p.numel() for p in model.parameters()),
        "data_fraction": arm.fraction,
        "train_rows": len(arm.train),
        "validation_rows": len(arm.validation),
        "test_rows": test_rows.num_rows,
        "steps": arm.total_steps,
        "steps_trained": chosen.steps,
        "stopped_early": chosen.stopped_early,
        "resumed_from_step": chosen.resumed_from_step,
        "gradient_accumulation_steps": cfg.train.gradient_accumulation_steps,
        "lr_schedule": cfg.train.lr_schedule,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "batches": "length-grouped"
        if cfg.train.group_by_length and arm.inputs.modality == "text"
        else "shuffled",
        "micro_batches": micro_batches(arm),
        "seed": cfg.train.seed,
        # Every trial's training, evaluations included: what this arm's search cost.
        "train_seconds": round(sum(trial.seconds for trial in trials), 2),
        # Samples per second after warm-up, evaluations left out (see throughput_meter).
        "train_samples_per_second": round(chosen.samples_per_second, 2)
        if chosen.samples_per_second
        else None,
        "test_metrics": test_metrics,
        "learning_curve": curve,
        "tuning": {
            "enabled": cfg.tune.enabled,
            "learning_rates": [trial.learning_rate for trial in trials],
            "grid": grid(cfg, init),
            "reduction": cfg.tune.reduction,
            "rungs": [{"step": step, "rates": count} for step, count in schedule],
            "rule": RANK_RULE.format(metric=cfg.gate.metric),
            "trials": [_trial_record(trial, trial is chosen, schedule) for trial in trials],
            # Optimizer steps over all trials: the search's cost (one untuned run: `steps`).
            "steps": sum(trial.steps for trial in trials),
        },
        "label_names": arm.card["label_names"],
        "model_sha256": sha256_file(model_dir / WEIGHTS_FILE),
        "base_model": arm.manifest["source"],
        "base_model_revision": arm.manifest["revision"],
        "data_fingerprint": arm.card["fingerprint"],
        "test_fingerprint": arm.card["fingerprints"]["test"],
    }
    (evaluation_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def _trial_record(trial: _Trial, chosen: bool, schedule: list[tuple[int, int]]) -> dict[str, Any]:
    """One trial for the tuning table: its rate, how far it trained, and its validation at each rung."""
    rung_steps = {step for step, _ in schedule}
    return {
        "learning_rate": trial.learning_rate,
        "steps": trial.steps,
        "stopped_early": trial.stopped_early,
        "validation": {k: v for k, v in trial.point().items() if k != "step"},
        "rungs": [point for point in trial.history if point["step"] in rung_steps],
        "chosen": chosen,
    }


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


def predict_test_split(
    model, inputs: Inputs, dataset_dir: Path, batch_size: int
) -> tuple[pa.Table, np.ndarray]:
    """The test split and `model`'s class probabilities for each of its rows."""
    from datasets import Dataset

    test_rows = pq.read_table(dataset_dir / "test.parquet")
    test = inputs.encode(Dataset(test_rows))
    return test_rows, predict_probabilities(model, inputs, test, batch_size)


def run_arguments(learning_rates: list[float], fraction: float) -> list[str]:
    """The command-line arguments that hand a run's rates and share of the rows to `python -m warmstart.finetune`."""
    return ["--learning-rates", ",".join(repr(rate) for rate in learning_rates), "--fraction", repr(fraction)]


def main(argv: list[str] | None = None) -> None:
    """`python -m warmstart.finetune`: one arm in this process, on its own or as a torchrun worker (also
    on TrainJob nodes, where the inputs and outputs are s3:// URIs)."""
    parser = argparse.ArgumentParser(prog="python -m warmstart.finetune", description=main.__doc__)
    config = parser.add_mutually_exclusive_group(required=True)
    config.add_argument("--config", help="YAML or JSON config file")
    config.add_argument("--config-json", help="the config as a JSON string")
    parser.add_argument("--init", required=True, choices=INITS)
    for name in ("dataset", "base-model", "model", "evaluation"):
        parser.add_argument(f"--{name}", required=True, help="a local directory or an s3:// prefix")
    parser.add_argument(
        "--learning-rates", default="", help="comma-separated rates to search (default: the grid)"
    )
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="share of the training split to learn from"
    )
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
        rates = [float(rate) for rate in options.learning_rates.split(",") if rate]
        if "LOCAL_RANK" not in os.environ and (cfg.train.nproc_per_node > 1 or cfg.train.num_nodes > 1):
            raise ModelError(
                f"python -m warmstart.finetune trains in this process only; with train.nproc_per_node="
                f"{cfg.train.nproc_per_node} and train.num_nodes={cfg.train.num_nodes} start it with torchrun "
                f"(one worker per process), or run the finetune step, which launches them"
            )
        summary = train(
            cfg,
            options.init,
            local["dataset"],
            local["base_model"],
            local["model"],
            local["evaluation"],
            rates or None,
            options.fraction,
        )
        for name in ("model", "evaluation"):
            if summary and scheme_of(getattr(options, name)) == "s3":
                put_tree(local[name], getattr(options, name))
