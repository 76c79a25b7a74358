"""Train-time augmentation (`train.augment`), the same for both arms.

Each training row's augmentation is drawn from a generator seeded by `train.seed`, the epoch and the
row's id alone, so the pretrained arm and the scratch arm see exactly the same augmented row at the
same epoch, whatever order their batches come in, and a run resumed from a checkpoint sees what the
unbroken run saw. Validation and test rows are never augmented. The work is done by kept libraries:
kornia for images (it runs on the torch installed; torchvision's wheels may not), audiomentations for
audio. Text has none: no kept library does it well (see docs/data.md).
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np

from warmstart.errors import ConfigError

IMAGE_AUGMENTATION = (
    "random resized crops (60–100% of the area, aspect 3:4 to 4:3), horizontal flips (p 0.5) and colour jitter "
    "(brightness, contrast, saturation ±20%, hue ±0.02; p 0.8), by kornia"
)
AUDIO_AUGMENTATION = (
    "gain (±6 dB), Gaussian noise (amplitude 0.001–0.01), time shift (±10%, rolled over) and speed (0.9–1.1×), "
    "each with p 0.5, by audiomentations"
)
TEXT_REFUSAL = (
    "train.augment is for images and audio; this data is text, and no kept library augments text well "
    "(rule-based word swaps change labels, back-translation needs translation models), so set train.augment: false"
)


def describe(modality: str) -> str:
    return {"image": IMAGE_AUGMENTATION, "audio": AUDIO_AUGMENTATION}[modality]


def check_augment(modality: str) -> None:
    """Refuse train.augment where it cannot run, before any training: text data, or audio without
    audiomentations installed."""
    if modality == "text":
        raise ConfigError(TEXT_REFUSAL)
    if modality == "audio":
        try:
            import audiomentations  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.augment on audio needs audiomentations: pip install 'warmstart[audio]', or set "
                "train.augment: false"
            ) from None
    if modality == "image":
        try:
            import kornia  # noqa: F401
        except ImportError:
            raise ConfigError(
                "train.augment on images needs kornia: pip install kornia, or set train.augment: false"
            ) from None


class Augmentation:
    """Augments one training row at a time, seeded by (seed, epoch, row id); `epoch` is set by the
    trainer when each epoch begins."""

    def __init__(self, modality: str, seed: int) -> None:
        check_augment(modality)
        self.modality, self.seed, self.epoch = modality, seed, 0
        self.description = describe(modality)
        self._pipelines: dict[Any, Any] = {}

    def row_seed(self, row: int) -> int:
        digest = hashlib.sha256(f"{self.seed}:{self.epoch}:{row}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def image(self, image: Any, row: int) -> Any:
        """A PIL image, augmented, as a PIL image of the same size."""
        import torch
        from PIL import Image

        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        pipeline = self._image_pipeline(pixels.shape[1], pixels.shape[2])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.row_seed(row))
            out = pipeline(pixels[None])[0]
        array = (out.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(array)

    def _image_pipeline(self, height: int, width: int) -> Any:
        if (height, width) not in self._pipelines:
            import kornia.augmentation as K

            self._pipelines[height, width] = K.AugmentationSequential(
                K.RandomResizedCrop((height, width), scale=(0.6, 1.0), ratio=(0.75, 4 / 3)),
                K.RandomHorizontalFlip(p=0.5),
                K.ColorJitter(0.2, 0.2, 0.2, 0.02, p=0.8),
            )
        return self._pipelines[height, width]

    def audio(self, signal: np.ndarray, rate: int, row: int) -> np.ndarray:
        """A float32 mono signal, augmented (its length may change with the speed)."""
        if "audio" not in self._pipelines:
            import audiomentations as A

            self._pipelines["audio"] = A.Compose(
                [
                    A.Gain(min_gain_db=-6.0, max_gain_db=6.0, p=0.5),
                    A.AddGaussianNoise(min_amplitude=0.001, max_amplitude=0.01, p=0.5),
                    A.Shift(min_shift=-0.1, max_shift=0.1, rollover=True, p=0.5),
                    A.TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=False, p=0.5),
                ]
            )
        # audiomentations draws from Python's and numpy's global generators: seed them for this row, and
        # leave them as they were for everything else.
        saved = random.getstate(), np.random.get_state()
        try:
            seed = self.row_seed(row)
            random.seed(seed)
            np.random.seed(seed)
            # As one channel of a (channels, samples) array: the speed change's stretcher takes no 1-D input.
            out = self._pipelines["audio"](
                samples=np.array(signal, dtype=np.float32)[None, :], sample_rate=rate
            )[0]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
        return np.ascontiguousarray(out, dtype=np.float32)
