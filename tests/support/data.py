"""Generated data for tests: synthetic labelled reviews (a rule a tiny model learns) and striped images."""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "wonderful", "superb", "delightful", "moving", "brilliant", "charming"]


NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "tedious", "clumsy", "lifeless"]


FILLER = "the a film story cast plot scene it was is and with its this one two actor music".split()


def synthetic_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """Short texts whose label is carried by one sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "pos" if i % 2 else "neg"
        words = rng.sample(FILLER, 6) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return rows


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "sentiment")
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def stripe_image(orientation: str, seed: int, fmt: str = "PNG") -> bytes:
    """An encoded image of horizontal or vertical stripes in random colours and size, with noise."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(24, 48, size=2))
    period = int(rng.integers(4, 8))
    axis = np.arange(height)[:, None] if orientation == "horizontal" else np.arange(width)[None, :]
    on = ((axis // (period // 2)) % 2 == 0) & np.ones((height, width), dtype=bool)
    light, dark = rng.integers(150, 256, size=3), rng.integers(0, 100, size=3)
    pixels = np.where(on[..., None], light, dark) + rng.normal(0, 12, size=(height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype("uint8")).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image_folder(root: Path, per_class: int, seed: int) -> Path:
    """ROOT/horizontal/*.png|jpg and ROOT/vertical/*: an image folder of two classes."""
    for c, orientation in enumerate(("horizontal", "vertical")):
        (root / orientation).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            fmt = "JPEG" if i % 3 == 0 else "PNG"
            image = stripe_image(orientation, seed * 100_000 + c * 10_000 + i, fmt)
            (root / orientation / f"{i:03d}.{'jpg' if fmt == 'JPEG' else 'png'}").write_bytes(image)
    return root
