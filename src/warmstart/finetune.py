"""finetune: train a sequence classifier from the pretrained weights or from a random init.

Both arms share everything but the initial weights and the learning rate: the same architecture,
tokenizer, training rows, step budget, batch size and seed. The run writes the trained model
(safetensors, config, tokenizer), per-example test predictions and a learning curve: the
validation metrics at step 0 and at evenly spaced steps through the budget.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warmstart.config import Config
from warmstart.errors import ModelError
from warmstart.fetch import load_manifest
from warmstart.ingest import load_card
from warmstart.metrics import all_metrics
from warmstart.storage import sha256_file
from warmstart.strategies import finished, prepare

Init = Literal["pretrained", "scratch"]
INITS: tuple[Init, ...] = ("pretrained", "scratch")
SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions.parquet"
WEIGHTS_FILE = "model.safetensors"


def _load_split(dataset_dir: Path, split: str):
    from datasets import Dataset

    return Dataset(pq.read_table(dataset_dir / f"{split}.parquet"))


def _tokenize(dataset, tokenizer, max_length: int):
    def encode(batch: dict[str, list]) -> dict[str, Any]:
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=["text"], keep_in_memory=True)


def build_model(init: Init, base_model_dir: Path, label_names: list[str], seed: int):
    """The classifier for one arm: pretrained weights, or the same config randomly initialised."""
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    transformers.set_seed(seed)
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    try:
        if init == "pretrained":
            return AutoModelForSequenceClassification.from_pretrained(
                base_model_dir, use_safetensors=True, trust_remote_code=False, **labels
            )
        config = AutoConfig.from_pretrained(base_model_dir, trust_remote_code=False, **labels)
        return AutoModelForSequenceClassification.from_config(config)
    except (ValueError, OSError, KeyError) as err:
        raise ModelError(
            f"the model in {base_model_dir} cannot be built as a sequence classifier ({err}); "
            f"choose an encoder that transformers' AutoModelForSequenceClassification supports"
        ) from None


def build_model_from_dir(model_dir: Path):
    """A trained classifier and its tokenizer from a directory (safetensors only, no remote code)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=False
    )
    return model, AutoTokenizer.from_pretrained(model_dir)


def predict_probabilities(model, tokenizer, dataset, batch_size: int) -> np.ndarray:
    """Class probabilities in the dataset's own order, computed on length-sorted batches.

    A plain inference loop rather than Trainer.predict: with length grouping the Trainer also
    shuffles prediction order, and per-example predictions must line up with their test rows.
    """
    import torch
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer)
    features = dataset.remove_columns(
        [c for c in dataset.column_names if c not in tokenizer.model_input_names]
    )
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    probabilities = np.empty((len(dataset), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([features[int(i)] for i in rows])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            probabilities[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probabilities


def _evaluated_at(log_history: list[dict[str, Any]], step: int) -> bool:
    return any("eval_accuracy" in entry and entry["step"] == step for entry in log_history)


def finetune(
    cfg: Config,
    init: Init,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    model_dir: str | Path,
    evaluation_dir: str | Path,
) -> dict[str, Any]:
    """Train one arm and write its model, test predictions, learning curve and summary."""
    import datasets
    import torch
    import transformers
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_callback import PrinterCallback

    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    dataset_dir, base_model_dir = Path(dataset_dir), Path(base_model_dir)
    model_dir, evaluation_dir = Path(model_dir), Path(evaluation_dir)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    card = load_card(dataset_dir)
    label_names = card["label_names"]
    train_cfg = cfg.train

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    train = _load_split(dataset_dir, "train")
    if train_cfg.max_train_samples and train_cfg.max_train_samples < len(train):
        train = train.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_train_samples))
    validation = _load_split(dataset_dir, "validation")
    if train_cfg.max_eval_samples and train_cfg.max_eval_samples < len(validation):
        validation = validation.shuffle(seed=train_cfg.seed).select(range(train_cfg.max_eval_samples))
    train, validation = (_tokenize(d, tokenizer, cfg.model.max_length) for d in (train, validation))
    # Evaluation order does not change the metric; sorted batches carry almost no padding.
    validation = validation.select(np.argsort(np.asarray(validation["length"]), kind="stable"))

    # A step is one optimizer update: batch_size × gradient_accumulation_steps examples.
    steps_per_epoch = math.ceil(
        math.ceil(len(train) / train_cfg.batch_size) / train_cfg.gradient_accumulation_steps
    )
    total_steps = train_cfg.max_steps or max(1, math.ceil(steps_per_epoch * train_cfg.epochs))
    eval_every = max(1, math.ceil(total_steps / train_cfg.eval_points))
    learning_rate = train_cfg.learning_rate if init == "pretrained" else train_cfg.scratch_learning_rate
    model, parameter_groups = prepare(
        build_model(init, base_model_dir, label_names, train_cfg.seed), train_cfg, init, learning_rate
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    classes = len(label_names)

    def compute_metrics(prediction) -> dict[str, float]:
        return all_metrics(prediction.label_ids, prediction.predictions.argmax(-1), classes)

    started = time.perf_counter()

    class ProgressLine(TrainerCallback):
        """One line per learning-curve point: readable in a terminal and in a pod's log."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            print(
                f"finetune[{init}] step {state.global_step}/{total_steps} "
                f"validation accuracy {metrics.get('eval_accuracy', float('nan')):.4f} "
                f"macro_f1 {metrics.get('eval_macro_f1', float('nan')):.4f} "
                f"({time.perf_counter() - started:.0f}s)",
                flush=True,
            )

    with tempfile.TemporaryDirectory(prefix="warmstart-trainer-") as scratch_space:
        args = TrainingArguments(
            output_dir=scratch_space,
            per_device_train_batch_size=train_cfg.batch_size,
            per_device_eval_batch_size=max(64, train_cfg.batch_size),
            max_steps=total_steps,
            learning_rate=learning_rate,
            weight_decay=train_cfg.weight_decay,
            warmup_steps=train_cfg.warmup_ratio,
            gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
            lr_scheduler_type=train_cfg.lr_schedule,
            eval_strategy="steps",
            eval_steps=eval_every,
            eval_on_start=True,
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            seed=train_cfg.seed,
            data_seed=train_cfg.seed,
            train_sampling_strategy="group_by_length",
            disable_tqdm=not sys.stderr.isatty(),
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=validation,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=compute_metrics,
            callbacks=[ProgressLine()],
            # The strategy's parameter groups; the Trainer adds the warmup and decay schedule.
            optimizers=(torch.optim.AdamW(parameter_groups, lr=learning_rate), None),
        )
        trainer.remove_callback(PrinterCallback)  # ProgressLine reports; raw log dicts are noise
        trainer.train()
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
    model = finished(model)  # LoRA adapters merged: predict with, and save, exactly what is registered
    test_rows, probabilities = predict_test_split(
        model, tokenizer, dataset_dir, cfg.model.max_length, args.per_device_eval_batch_size
    )

    test_metrics = all_metrics(test_rows.column("label").to_numpy(), probabilities.argmax(axis=1), classes)

    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir)  # safetensors; no pickled training_args beside it
    tokenizer.save_pretrained(model_dir)
    write_predictions(evaluation_dir, test_rows, probabilities)
    summary = {
        "init": init,
        "learning_rate": learning_rate,
        "strategy": train_cfg.strategy if init == "pretrained" else "full",
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": test_rows.num_rows,
        "steps": total_steps,
        "gradient_accumulation_steps": train_cfg.gradient_accumulation_steps,
        "lr_schedule": train_cfg.lr_schedule,
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "seed": train_cfg.seed,
        "train_seconds": round(train_seconds, 2),
        "test_metrics": test_metrics,
        "learning_curve": curve,
        "label_names": label_names,
        "model_sha256": sha256_file(model_dir / WEIGHTS_FILE),
        "base_model": load_manifest(base_model_dir)["source"],
        "data_fingerprint": card["fingerprint"],
        "test_fingerprint": card["fingerprints"]["test"],
    }
    (evaluation_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def predict_test_split(
    model, tokenizer, dataset_dir: Path, max_length: int, batch_size: int
) -> tuple[pa.Table, np.ndarray]:
    """The test split and `model`'s class probabilities for each of its rows."""
    from datasets import Dataset

    test_rows = pq.read_table(dataset_dir / "test.parquet")
    test = _tokenize(Dataset(test_rows), tokenizer, max_length)
    return test_rows, predict_probabilities(model, tokenizer, test, batch_size)


def write_predictions(evaluation_dir: Path, test_rows: pa.Table, probabilities: np.ndarray) -> None:
    """predictions.parquet: per test row its id, text, label, predicted label and class probabilities."""
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "id": test_rows.column("id"),
                "text": test_rows.column("text"),
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
