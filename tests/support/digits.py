"""Real images for the image path: scikit-learn's handwritten digits, a tiny ResNet pretrained on some
of them by a plain PyTorch loop, and that loop's fine-tuning and scoring (the outside reference).

The 1,797 digits are 8×8 scans with 17 grey levels (the UCI optical-recognition set scikit-learn
ships). Each is written as a 32×32 greyscale PNG, one folder per digit, the layout `data.source`
takes. Upscaled to fill the frame, the set is too easy to show transfer: a from-scratch CNN reaches
0.95 on 10 scans per digit, and a start pretrained on other digits adds nothing the gate can tell
(bench/digits_transfer.py). So by default each scan is placed as a scanned form might hold it: at a
random size (16 to 28 pixels), angle (±15°) and position on the canvas, seeded by its row in the set,
so every run writes the same files. Handling that variation is what a network learns from many digits
and a few-shot scratch model cannot. Nothing here imports warmstart: it is what a user brings to it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SOURCE_DIGITS = (0, 1, 2, 3, 4)  # what the start is pretrained on
TARGET_DIGITS = (5, 6, 7, 8, 9)  # what warmstart transfers it to
CANVAS = 32
SIZES = (16, 28)  # pixels, the digit's side on the canvas
ANGLE = 15.0  # degrees either way
STEPS = 120  # the fine-tuning budget of either arm, at every K
LEARNING_RATES = [1e-3, 3e-3, 1e-2]  # each arm's grid, in warmstart and in the plain loop


def render(scan: np.ndarray, seed: int, placed: bool = True) -> Any:
    """One 8×8 scan (grey levels 0 to 16) as a 32×32 greyscale image: placed at a size, angle and
    position drawn from `seed`, or (`placed=False`) upscaled to fill the frame."""
    from PIL import Image

    grey = Image.fromarray((scan * (255 / 16)).round().astype("uint8"), mode="L")
    if not placed:
        return grey.resize((CANVAS, CANVAS), Image.Resampling.BILINEAR)
    rng = np.random.default_rng(seed)
    size = int(rng.integers(SIZES[0], SIZES[1] + 1))
    digit = grey.resize((size, size), Image.Resampling.BILINEAR)
    digit = digit.rotate(float(rng.uniform(-ANGLE, ANGLE)), resample=Image.Resampling.BILINEAR)
    canvas = Image.new("L", (CANVAS, CANVAS))
    canvas.paste(digit, tuple(int(v) for v in rng.integers(0, CANVAS - size + 1, size=2)))
    return canvas


def digit_pngs(digits: Iterable[int], placed: bool = True) -> list[tuple[str, bytes, int]]:
    """(name, PNG bytes, digit) for every scan of `digits`, named DIGIT/ROW.png by its row in the set."""
    from sklearn.datasets import load_digits

    wanted = set(digits)
    scans = load_digits()
    rows = []
    for row, (scan, digit) in enumerate(zip(scans.images, scans.target, strict=True)):
        if int(digit) in wanted:
            buffer = io.BytesIO()
            render(scan, seed=row, placed=placed).save(buffer, format="PNG")
            rows.append((f"{int(digit)}/{row:04d}.png", buffer.getvalue(), int(digit)))
    return rows


def write_digit_folder(root: Path, digits: Iterable[int], placed: bool = True) -> Path:
    """ROOT/5/0005.png, ROOT/6/...: an image folder of one class per digit."""
    for name, png, _ in digit_pngs(digits, placed):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(png)
    return root


def tiny_resnet(digits: tuple[int, ...], seed: int) -> Any:
    """A 3-stage ResNet of basic blocks, 16 to 64 channels wide (80,000 parameters), randomly
    initialised with `seed`, classifying `digits`: a convolutional network that trains in seconds on
    2 cores."""
    import torch
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 64],
        depths=[1, 1, 1],
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=len(digits),
        id2label={i: str(digit) for i, digit in enumerate(digits)},
        label2id={str(digit): i for i, digit in enumerate(digits)},
    )
    return ResNetForImageClassification(config)


def image_processor() -> Any:
    """Resize to 32×32, scale to [0, 1] and normalise to [-1, 1] (the processor saved with the model)."""
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": CANVAS, "width": CANVAS})


def pixel_values(pngs: list[bytes], processor: Any) -> Any:
    """The model's input for encoded images, decoded to RGB as warmstart decodes them."""
    from PIL import Image

    images = [Image.open(io.BytesIO(png)).convert("RGB") for png in pngs]
    return processor(images, return_tensors="pt")["pixel_values"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside, as warmstart trains each of its two arms on a 2-core machine.

    A network this small gains nothing from a second thread, and two threads spin against any other
    busy process: on this project's 2-core machine with other tests running, 20 steps took 23.6 s on
    two threads and 1.5 s on one (by hand).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_plain(
    model: Any,
    pixels: Any,
    labels: np.ndarray,
    *,
    learning_rate: float,
    steps: int,
    seed: int,
    batch_size: int = 16,
    weight_decay: float = 0.01,
    warmup: float = 0.1,
) -> Any:
    """A plain PyTorch loop: `steps` AdamW steps on shuffled batches (reshuffled each pass), linear
    warmup over the first 10% then linear decay, fp32, no augmentation. Trains `model` in place."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    targets = torch.as_tensor(np.asarray(labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(warmup * steps), steps)
    rng = np.random.default_rng(seed)
    model.train()
    step = 0
    with one_thread():
        while step < steps:
            order = rng.permutation(len(targets))
            for begin in range(0, len(order), batch_size):
                if step == steps:
                    break
                rows = torch.as_tensor(order[begin : begin + batch_size])
                model(pixel_values=pixels[rows], labels=targets[rows]).loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                step += 1
    return model


def accuracy(model: Any, pixels: Any, labels: np.ndarray) -> float:
    """The share of `labels` that `model` predicts."""
    import torch

    model.eval()
    with one_thread(), torch.inference_mode():
        logits = [model(pixel_values=pixels[i : i + 256]).logits for i in range(0, len(pixels), 256)]
    return float(np.mean(torch.cat(logits).argmax(-1).numpy() == np.asarray(labels)))


def pretrain_on_source_digits(
    target: Path, seed: int = 0, steps: int = 240, placed: bool = True
) -> dict[str, Any]:
    """Pretrain the tiny ResNet on every scan of digits 0–4 (901 images, about 8 passes in batches of
    32) and save its network without the head, in safetensors with its image processor, in `target`:
    a start as a model hub ships one, whose classification layer the user's task replaces. Returns
    the directory and the accuracy on the images it trained on."""
    rows = digit_pngs(SOURCE_DIGITS, placed)
    processor = image_processor()
    pixels = pixel_values([png for _, png, _ in rows], processor)
    labels = np.asarray([SOURCE_DIGITS.index(digit) for _, _, digit in rows])
    model = tiny_resnet(SOURCE_DIGITS, seed)
    train_plain(model, pixels, labels, learning_rate=3e-3, steps=steps, seed=seed, batch_size=32)
    model.resnet.save_pretrained(target)
    processor.save_pretrained(target)
    return {"model_dir": target, "train_accuracy": accuracy(model, pixels, labels), "rows": len(rows)}


def digits_run_config(
    path: Path,
    folder: Path,
    start: Path,
    shots: int,
    seeds: tuple[int, ...] = (0,),
    bootstrap: int = 2000,
    reduction: int = 3,
) -> Path:
    """A `warmstart run` config at PATH: transfer `start` to the digits in `folder` with `shots`
    training scans per digit. The test split (45%, about 400 scans) and validation split (20% of the
    rest) are cut before the shots and stay the same at every K; each arm's rate is tuned on
    LEARNING_RATES, on the same budget of STEPS steps, by successive halving with `reduction` (3, the
    default: the rates are compared after 30 steps and one goes on; 4 or more: all three train the
    whole budget and are compared there)."""
    config = {
        "data": {
            "source": str(folder),
            "test_source": "",
            "test_fraction": 0.45,
            "validation_fraction": 0.2,
            "shots_per_class": shots,
        },
        "model": {"source": str(start)},
        "train": {
            "max_steps": STEPS,
            "batch_size": 16,
            "learning_rate": LEARNING_RATES[1],
            "scratch_learning_rate": LEARNING_RATES[1],
            "eval_points": 4,
            "seeds": list(seeds),
            # As the plain loop trains, and the same trajectory on every processor.
            "precision": "fp32",
        },
        "tune": {
            "learning_rates": LEARNING_RATES,
            "scratch_learning_rates": LEARNING_RATES,
            "reduction": reduction,
        },
        # Nothing to resume here, and a few-shot epoch is a few steps: the checkpoint at every epoch end
        # (30 a trial at K=10) took 5 of the run's 41 s (measured).
        "placement": {"checkpoint_steps": 0},
        "gate": {"bootstrap_samples": bootstrap},
        "registry": {"name": "digits"},
    }
    path.write_text(yaml.safe_dump(config))
    return path
