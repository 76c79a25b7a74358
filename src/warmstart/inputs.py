"""Model inputs: what turns a split's rows into tensors, for text, images and audio.

finetune, the feature cache and evaluate_champion go through one of these classes, so the rest of
the training code does not care what kind of data it has. Text is tokenized once (evaluation rows
sorted by length, so their batches carry little padding); images stay encoded in the splits and are
decoded and processed batch by batch, as they are read; audio is stored decoded, and each clip goes
through the model's feature extractor as it is read, padded per batch by the collator. Training rows
of images and audio can be augmented (`warmstart.augment`), never evaluation rows.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.errors import ConfigError, DataError, ModelError

MODALITIES = ("text", "image", "audio")


def token_limit(model_dir: Path, tokenizer: Any) -> int | None:
    """The most tokens the model takes: its position embeddings (config.json) and the tokenizer's
    model_max_length, whichever is smaller (None when neither says)."""
    import json

    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    limits = [config.get("max_position_embeddings"), getattr(tokenizer, "model_max_length", None)]
    known = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000]
    return min(known, default=None)


class TextInputs:
    """Tokenized text for AutoModelForSequenceClassification."""

    modality = "text"
    remove_unused_columns = True

    def __init__(self, model_dir: Path, max_length: int, name: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.processor = AutoTokenizer.from_pretrained(model_dir)
        except (OSError, ValueError, TypeError, KeyError) as err:  # TypeError: a speech model's absent vocab
            raise ModelError(
                f"{name} has no usable tokenizer ({str(err).splitlines()[0]}); text data needs "
                f"a language model with its tokenizer files (an image model needs image data)"
            ) from None
        limit = token_limit(Path(model_dir), self.processor)
        if limit and max_length > limit:
            raise ConfigError(
                f"model.max_length={max_length} is more than {name} takes ({limit} tokens); set "
                f"model.max_length to at most {limit}"
            )
        self.max_length = max_length

    def encode(self, dataset, for_evaluation: bool = False, augmentation: Any = None):
        """Token ids and a `length` column; evaluation rows come sorted by length (the order does not
        change a metric, and sorted batches carry almost no padding)."""

        def tokenize(batch: dict[str, list]) -> dict[str, Any]:
            encoded = self.processor(batch["text"], truncation=True, max_length=self.max_length)
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return encoded

        # In memory, and named rather than fingerprinted: hashing the tokenizer into a fingerprint took
        # about half a second a call, and nothing is cached on disk to find again.
        encoded = dataset.map(
            tokenize,
            batched=True,
            remove_columns=["text"],
            keep_in_memory=True,
            new_fingerprint=f"{dataset._fingerprint}-tokens-{self.max_length}",
        )
        if for_evaluation:
            encoded = encoded.select(np.argsort(np.asarray(encoded["length"]), kind="stable"))
        return encoded

    def collator(self) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.processor)

    def batches(self, dataset, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Length-sorted batches of an encoded dataset: each batch's row indices and its model inputs."""
        collate = self.collator()
        features = dataset.remove_columns(
            [c for c in dataset.column_names if c not in self.processor.model_input_names]
        )
        order = np.argsort(np.asarray(dataset["length"]), kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield rows, collate([features[int(i)] for i in rows])

    def cache_columns(self, dataset) -> dict[str, Any]:
        return {"length": dataset["length"]}  # the length-grouped order stays the same on cached features

    def tensors(self, texts: list[str]) -> dict[str, Any]:
        """Model inputs for a few rows at once, tokenized as `encode` does (warmstart serve)."""
        return self.processor(
            texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )


class ImageInputs:
    """Images processed by the model's AutoImageProcessor for AutoModelForImageClassification."""

    modality = "image"
    remove_unused_columns = False  # the Trainer must leave the encoded images to the transform

    def __init__(self, model_dir: Path, name: str) -> None:
        from transformers import AutoImageProcessor

        if not (model_dir / "preprocessor_config.json").is_file():
            raise ModelError(
                f"{name} has no image processor (preprocessor_config.json); image data needs "
                f"a vision model that AutoModelForImageClassification supports (ViT, DeiT, ConvNeXt, ResNet...)"
            )
        try:
            self.processor = AutoImageProcessor.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as err:
            raise ModelError(
                f"the image processor of {name} cannot be loaded ({str(err).splitlines()[0]})"
            ) from None

    def pixel_values(
        self, images: list[bytes], augmentation: Any = None, rows: list[int] | None = None
    ) -> Any:
        from PIL import Image

        decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
        if augmentation is not None:
            decoded = [augmentation.image(image, row) for image, row in zip(decoded, rows or [], strict=True)]
        return self.processor(decoded, return_tensors="pt")["pixel_values"]

    def encode(self, dataset, for_evaluation: bool = False, augmentation: Any = None):
        """The dataset with images decoded and processed as rows are read (nothing held in memory);
        training rows augmented by `augmentation` (a `warmstart.augment.Augmentation`) when given."""

        def transform(batch: dict[str, list]) -> dict[str, Any]:
            rows = batch["id"] if augmentation is not None else None
            return {
                "pixel_values": self.pixel_values(batch["image"], augmentation, rows),
                "labels": batch["label"],
            }

        return dataset.with_transform(transform)

    def collator(self) -> Any:
        from transformers import default_data_collator

        return default_data_collator

    def batches(self, dataset, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        for start in range(0, len(dataset), batch_size):
            rows = np.arange(start, min(start + batch_size, len(dataset)))
            yield rows, {"pixel_values": dataset[start : start + batch_size]["pixel_values"]}

    def cache_columns(self, dataset) -> dict[str, Any]:
        return {}

    def tensors(self, images: list[bytes]) -> dict[str, Any]:
        """Model inputs for a few encoded images at once (warmstart serve)."""
        return {"pixel_values": self.pixel_values(images)}


class AudioInputs:
    """Audio clips through the model's AutoFeatureExtractor for AutoModelForAudioClassification
    (wav2vec2, HuBERT, WavLM, AST, Whisper's encoder...)."""

    modality = "audio"
    remove_unused_columns = False  # the Trainer must leave the samples to the transform

    def __init__(self, model_dir: Path, name: str, max_seconds: float | None = None) -> None:
        from transformers import AutoFeatureExtractor

        if not (model_dir / "preprocessor_config.json").is_file():
            raise ModelError(
                f"{name} has no feature extractor (preprocessor_config.json); audio data needs an audio "
                f"model that AutoModelForAudioClassification supports (wav2vec2, HuBERT, WavLM, AST, Whisper...)"
            )
        not_audio = ModelError(
            f"{name} has no audio feature extractor (preprocessor_config.json names "
            f"{_processor_kind(model_dir)}), so it is not an audio model; audio data needs one that "
            f"AutoModelForAudioClassification supports (wav2vec2, HuBERT, WavLM, AST, Whisper...)"
        )
        try:
            self.processor = AutoFeatureExtractor.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError):
            raise not_audio from None
        self.rate = getattr(self.processor, "sampling_rate", None)
        if not self.rate or not hasattr(self.processor, "pad"):
            raise not_audio
        self.max_seconds = max_seconds
        self.input_names = [*self.processor.model_input_names, "attention_mask"]

    def signals(self, samples: list[bytes], rates: list[int]) -> list[np.ndarray]:
        """Stored float32 samples as signals at the model's rate, cut to `max_seconds`."""
        from warmstart.audio import resample

        keep = int(self.max_seconds * self.rate) if self.max_seconds else None
        return [
            resample(np.frombuffer(data, np.float32), int(rate), self.rate)[:keep]
            for data, rate in zip(samples, rates, strict=True)
        ]

    def features(self, signals: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each signal's model inputs, unpadded (the collator pads a batch to its longest clip)."""
        rows = []
        for signal in signals:
            encoded = self.processor(signal, sampling_rate=self.rate, return_tensors="np")
            rows.append({key: value[0] for key, value in encoded.items() if key in self.input_names})
        return rows

    def encode(self, dataset, for_evaluation: bool = False, augmentation: Any = None):
        """The dataset with clips resampled (if the model wants another rate) and featurised as rows
        are read; training rows augmented by `augmentation` when given."""

        def transform(batch: dict[str, list]) -> dict[str, Any]:
            signals = self.signals(batch["audio"], batch["sample_rate"])
            if augmentation is not None:
                signals = [
                    augmentation.audio(signal, self.rate, row)
                    for signal, row in zip(signals, batch["id"], strict=True)
                ]
            rows = self.features(signals)
            encoded: dict[str, Any] = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
            return {**encoded, "labels": batch["label"]}

        return dataset.with_transform(transform)

    def collator(self) -> Any:
        return self.collate

    def collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch: the rows' inputs stacked, or padded to the longest by the feature extractor."""
        import torch

        features = [{key: row[key] for key in row if key != "labels"} for row in rows]
        shapes = {np.shape(row[self.processor.model_input_names[0]]) for row in features}
        if len(shapes) == 1:
            batch = {key: torch.as_tensor(np.stack([row[key] for row in features])) for key in features[0]}
        else:
            batch = dict(self.processor.pad(features, padding="longest", return_tensors="pt"))
        if rows and "labels" in rows[0]:
            batch["labels"] = torch.as_tensor([int(row["labels"]) for row in rows])
        return batch

    def batches(self, dataset, batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        for start in range(0, len(dataset), batch_size):
            rows = np.arange(start, min(start + batch_size, len(dataset)))
            batch = dataset[start : start + batch_size]
            keys = [key for key in batch if key != "labels"]
            inputs = self.collate([{key: batch[key][i] for key in keys} for i in range(len(rows))])
            yield rows, inputs

    def cache_columns(self, dataset) -> dict[str, Any]:
        return {}

    def tensors(self, clips: list[bytes]) -> dict[str, Any]:
        """Model inputs for a few encoded audio files at once (warmstart serve): each decoded, made mono,
        resampled to the model's rate and cut to `max_seconds`, as ingest did for training."""
        from warmstart.audio import decode

        signals = []
        for index, data in enumerate(clips):
            clip = decode(data, self.rate, self.max_seconds)
            if clip is None:
                raise DataError(
                    f"instance {index} is not audio that libsndfile can decode; send a WAV, FLAC, OGG or MP3 file"
                )
            signals.append(clip.signal)
        return self.collate(self.features(signals))


def _processor_kind(model_dir: Path) -> str:
    import json

    try:
        config = json.loads((model_dir / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return "nothing readable"
    kind = (
        config.get("feature_extractor_type") or config.get("image_processor_type")
        if isinstance(config, dict)
        else None
    )
    return kind or "no processor type"


Inputs = TextInputs | ImageInputs | AudioInputs


def inputs_for(
    modality: str, model_dir: Path, max_length: int, name: str = "", max_seconds: float | None = None
) -> Inputs:
    """The inputs of `modality` data ('text', 'image' or 'audio') for the model in `model_dir` (`name`
    says which model in errors; `max_seconds` cuts audio clips)."""
    name = name or f"the model in {model_dir}"
    if modality == "image":
        return ImageInputs(Path(model_dir), name)
    if modality == "audio":
        return AudioInputs(Path(model_dir), name, max_seconds)
    if modality == "text":
        return TextInputs(Path(model_dir), max_length, name)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def auto_model(modality: str) -> Any:
    """The transformers Auto class of a classifier for `modality` data."""
    import transformers

    return getattr(
        transformers,
        {"image": "AutoModelForImageClassification", "audio": "AutoModelForAudioClassification"}.get(
            modality, "AutoModelForSequenceClassification"
        ),
    )


def build_classifier(modality: str, model_dir: Path, label_names: list[str], pretrained: bool) -> Any:
    """A classifier for `label_names`: the weights in `model_dir`, or its config randomly initialised.

    A classification head of another size in the checkpoint (ImageNet's 1,000 classes, or a
    regression model's single output) is replaced by a new one, trained with cross-entropy; the rest
    of the network keeps its pretrained weights.
    """
    from transformers import AutoConfig

    auto = auto_model(modality)
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
        # A start trained for regression or multi-label output would keep that loss otherwise.
        "problem_type": "single_label_classification",
    }
    try:
        if pretrained:
            return auto.from_pretrained(
                model_dir,
                use_safetensors=True,
                trust_remote_code=False,
                ignore_mismatched_sizes=True,
                **labels,
            )
        return auto.from_config(AutoConfig.from_pretrained(model_dir, trust_remote_code=False, **labels))
    except (ValueError, OSError, KeyError) as err:
        raise ModelError(
            f"the model in {model_dir} cannot be built as a{'n' if modality in ('image', 'audio') else ''} {modality} classifier "
            f"({str(err).splitlines()[0]}); choose a model that transformers' {auto.__name__} supports"
        ) from None
