"""Audio clips: decoding an encoded file into one mono float32 signal, and resampling it.

libsndfile (through `soundfile`) decodes WAV, FLAC, OGG (Vorbis, Opus) and MP3; `soxr` resamples. ingest
decodes every clip once and stores the signal at `data.sample_rate`; the model inputs resample again only
when a model wants another rate, and `warmstart serve` decodes what a request sends the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")


@dataclass(frozen=True)
class Clip:
    """A decoded clip: the mono signal at `rate`, and what the file held before (its rate, length
    in seconds and container format); `cut` when it was longer than the most seconds kept."""

    signal: np.ndarray
    rate: int
    source_rate: int
    seconds: float
    format: str
    cut: bool


def decode(data: bytes, rate: int, max_seconds: float | None = None) -> Clip | None:
    """The clip in `data` (an encoded file) as float32 mono at `rate` Hz, its channels averaged and
    cut to its first `max_seconds`; None when libsndfile cannot decode it or it holds no samples."""
    import soundfile

    if not data:
        return None
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as handle:
            source_rate, kind = handle.samplerate, handle.format
            frames = handle.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    if frames.size == 0 or not np.isfinite(frames).all():
        return None
    seconds = len(frames) / source_rate
    if max_seconds and seconds > max_seconds:
        frames = frames[: int(round(max_seconds * source_rate))]
    signal = resample(frames.mean(axis=1, dtype=np.float32), source_rate, rate)
    return Clip(signal, rate, source_rate, seconds, kind, bool(max_seconds and seconds > max_seconds))


def resample(signal: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """`signal` at `rate` Hz (soxr's high quality), or `signal` itself when the rates agree."""
    if source_rate == rate:
        return np.ascontiguousarray(signal, dtype=np.float32)
    import soxr

    return np.ascontiguousarray(soxr.resample(signal, source_rate, rate, quality="HQ"), dtype=np.float32)


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    """`signal` as a 32-bit float WAV file: what `decode` reads back sample for sample (deploy's smoke
    test sends test rows this way)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()
