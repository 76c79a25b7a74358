"""A plain PyTorch training loop: the reference warmstart's arms are measured against.

It is what an engineer writes by hand, with nothing of warmstart in it: the model from its config
(from scratch) or its weights (pretrained), AdamW with weight decay on every parameter, linear
warmup over the first 10% of the steps then linear decay, shuffled batches padded to their longest
text, no gradient clipping, fp32, texts cut at `max_length` tokens. Test rows are predicted in
order at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np


def train_and_test(
    model_dir: Path,
    train_rows: dict[str, list],
    test_rows: dict[str, list],
    *,
    pretrained: bool,
    learning_rate: float,
    seed: int,
    epochs: float = 3.0,
    batch_size: int = 32,
    max_length: int = 64,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
) -> dict[str, Any]:
    """Train on `train_rows` ({text, label}) and return the test accuracy, macro-F1 and time."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    classes = int(max(train_rows["label"] + test_rows["label"])) + 1
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if pretrained:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=classes, use_safetensors=True
        )
    else:
        model = AutoModelForSequenceClassification.from_config(
            AutoConfig.from_pretrained(model_dir, num_labels=classes)
        )
    train = tokenizer(train_rows["text"], truncation=True, max_length=max_length)
    test = tokenizer(test_rows["text"], truncation=True, max_length=max_length)
    labels = np.asarray(train_rows["label"])
    steps = math.ceil(math.ceil(len(labels) / batch_size) * epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)

    def batch(encoded: Any, rows: np.ndarray) -> Any:
        return tokenizer.pad(
            {key: [encoded[key][i] for i in rows] for key in ("input_ids", "attention_mask")},
            return_tensors="pt",
        )

    rng = np.random.default_rng(seed)
    started, step = time.perf_counter(), 0
    model.train()
    while step < steps:
        order = rng.permutation(len(labels))
        for begin in range(0, len(order), batch_size):
            if step == steps:
                break
            rows = order[begin : begin + batch_size]
            loss = model(**batch(train, rows), labels=torch.as_tensor(labels[rows])).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
    train_seconds = time.perf_counter() - started
    model.eval()
    predicted = []
    with torch.no_grad():
        for begin in range(0, len(test_rows["label"]), 128):
            rows = np.arange(begin, min(begin + 128, len(test_rows["label"])))
            predicted.append(model(**batch(test, rows)).logits.argmax(-1).numpy())
    guesses, truth = np.concatenate(predicted), np.asarray(test_rows["label"])
    f1 = [
        2 * np.sum((guesses == c) & (truth == c)) / max(1, np.sum(guesses == c) + np.sum(truth == c))
        for c in range(classes)
    ]
    return {
        "test_accuracy": round(float(np.mean(guesses == truth)), 4),
        "test_macro_f1": round(float(np.mean(f1)), 4),
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
    }
