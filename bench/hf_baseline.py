"""The Hugging Face Trainer setups a user would write instead of warmstart, for the benchmarks.

`GLUE_STYLE` is what one copies from transformers' `run_glue.py` example: every text padded to the
maximum length (its `pad_to_max_length` default), the stock Trainer, fp32. `HF_DEFAULTS` is the same
with TrainingArguments' own batch size, learning rate and schedule. `TUNED` is the Trainer as an
experienced user sets it up: dynamic padding and length-grouped batches; `TUNED_BF16` adds bf16 autocast.
Both report the same throughput measurement as warmstart's finetune (`throughput_meter`: samples per
second after the first tenth of the steps, evaluations left out) and the test accuracy.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Setup:
    """One HF Trainer configuration."""

    name: str
    pad_to_max_length: bool
    group_by_length: bool
    bf16: bool = False
    # Leave the batch size, learning rate and schedule at TrainingArguments' defaults.
    trainer_defaults: bool = False


GLUE_STYLE = Setup("hf_glue_style", pad_to_max_length=True, group_by_length=False)
HF_DEFAULTS = Setup("hf_defaults", pad_to_max_length=True, group_by_length=False, trainer_defaults=True)
TUNED = Setup("hf_tuned", pad_to_max_length=False, group_by_length=True)
TUNED_BF16 = Setup("hf_tuned_bf16", pad_to_max_length=False, group_by_length=True, bf16=True)


def train_and_test(
    setup: Setup,
    model: Any,
    tokenizer: Any,
    train_rows: dict[str, list],
    test_rows: dict[str, list] | None,
    *,
    max_length: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    epochs: float = 3.0,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Fine-tune `model` on `train_rows` ({text, label}) with the HF Trainer; test on `test_rows`."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

    from warmstart.finetune.train import throughput_meter

    def tokenize(batch: dict[str, list]) -> dict[str, Any]:
        padding = "max_length" if setup.pad_to_max_length else False
        return tokenizer(batch["text"], padding=padding, truncation=True, max_length=max_length)

    def encoded(rows: dict[str, list]) -> Any:
        return Dataset.from_dict(rows).map(tokenize, batched=True, remove_columns=["text"])

    started = time.perf_counter()
    train = encoded(train_rows)
    test = encoded(test_rows) if test_rows else None
    steps = max_steps if max_steps > 0 else int(np.ceil(len(train) / batch_size) * epochs)
    with tempfile.TemporaryDirectory() as output_dir:
        tuned = (
            {}
            if setup.trainer_defaults
            else {
                "per_device_train_batch_size": batch_size,
                "learning_rate": learning_rate,
                "warmup_steps": 0.1,
                "weight_decay": 0.01,
            }
        )
        args = TrainingArguments(
            output_dir=str(Path(output_dir)),
            max_steps=steps,
            per_device_eval_batch_size=max(64, batch_size),
            bf16=setup.bf16,
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
            train_sampling_strategy="group_by_length" if setup.group_by_length else "random",
            **tuned,
        )
        samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
        meter = throughput_meter(samples_per_step, steps)
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=default_data_collator
            if setup.pad_to_max_length
            else DataCollatorWithPadding(tokenizer),
            callbacks=[meter],
        )
        trained = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - trained
        accuracy = None
        if test is not None:
            prediction = trainer.predict(test)
            accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    return {
        "setup": setup.name,
        "batch_size": samples_per_step,
        "steps": steps,
        "bf16": setup.bf16,
        "samples_per_second": round(meter.samples_per_second, 2) if meter.samples_per_second else None,
        "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "test_accuracy": round(accuracy, 4) if accuracy is not None else None,
    }
