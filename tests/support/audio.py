"""Audio for the tests: real speech spoken by Debian's espeak-ng, generated tones, and a tiny random
wav2vec2 with its feature extractor (safetensors). No pretrained audio weights can be downloaded here."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="needs Debian's espeak-ng (apt-get install espeak-ng)"
)

# Four accents of English, the keyword-spotting task's speakers.
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029")


def spoken_words(
    root: Path,
    words: tuple[str, ...] = ("yes", "no", "up", "down"),
    voices: tuple[str, ...] = VOICES,
    speeds: tuple[int, ...] = (130, 175),
    pitches: tuple[int, ...] = (35, 65),
) -> Path:
    """A folder with one subfolder per word of WAV files (22,050 Hz, 16-bit, as espeak-ng writes
    them): every word in every voice, speed (words a minute) and pitch."""
    for word, voice, speed, pitch in itertools.product(words, voices, speeds, pitches):
        folder = root / word
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{voice}-{speed}-{pitch}.wav"
        subprocess.run(
            [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(target), word],
            check=True,
            capture_output=True,
        )
    return root


def tone(frequency: float, seconds: float, rate: int, seed: int) -> np.ndarray:
    """A sine tone with a little noise, float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, len(t))
    return (0.5 * np.sin(2 * np.pi * frequency * t) + noise).astype(np.float32)


def write_tones(root: Path, per_class: int, rate: int = 8000, fmt: str = "WAV") -> Path:
    """Two classes of tones (low, high) as audio files of `fmt` (WAV, FLAC, OGG), each clip different."""
    import soundfile

    suffix = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}[fmt]
    for label, base in (("low", 220.0), ("high", 1760.0)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            signal = tone(base * (1 + i / 50), 0.25 + i / 100, rate, seed=i)
            soundfile.write(root / label / f"{i}{suffix}", signal, rate, format=fmt)
    return root


def tiny_wav2vec2(target: Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide wav2vec2 encoder with random weights and its 16 kHz feature extractor."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 4, 4),
        conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        classifier_proj_size=32,
        mask_time_prob=0.0,
    )
    Wav2Vec2Model(config).save_pretrained(target)
    Wav2Vec2FeatureExtractor(
        sampling_rate=16000, do_normalize=True, return_attention_mask=True
    ).save_pretrained(target)
    return target
