"""Model inputs: what turns a split's rows into tensors, for text and for images.

finetune, the feature cache and evaluate_champion go through one of these two classes, so the rest
of the training code does not care what kind of data it has. Text is tokenized once (evaluation
rows sorted by length, so their batches carry little padding); images stay encoded in the splits and
are decoded and processed batch by batch, as they are read.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from warmstart.errors import ConfigError, ModelError

MODALITIES = ("text", "image")


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
        except (OSError, ValueError) as err:
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

    def encode(self, dataset, for_evaluation: bool = False):
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

    def pixel_values(self, images: list[bytes]) -> Any:
        from PIL import Image

        decoded = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
        return self.processor(decoded, return_tensors="pt")["pixel_values"]

    def encode(self, dataset, for_evaluation: bool = False):
        """The dataset with images decoded and processed as rows are read (nothing held in memory)."""

        def transform(batch: dict[str, list]) -> dict[str, Any]:
            return {"pixel_values": self.pixel_values(batch["image"]), "labels": batch["label"]}

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


Inputs = TextInputs | ImageInputs


def inputs_for(modality: str, model_dir: Path, max_length: int, name: str = "") -> Inputs:
    """The inputs of `modality` data ('text' or 'image') for the model in `model_dir` (`name` says
    which model in errors)."""
    name = name or f"the model in {model_dir}"
    if modality == "image":
        return ImageInputs(Path(model_dir), name)
    if modality == "text":
        return TextInputs(Path(model_dir), max_length, name)
    raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")


def auto_model(modality: str) -> Any:
    """The transformers Auto class of a classifier for `modality` data."""
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    return AutoModelForImageClassification if modality == "image" else AutoModelForSequenceClassification


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
            f"the model in {model_dir} cannot be built as a{'n' if modality == 'image' else ''} {modality} classifier "
            f"({str(err).splitlines()[0]}); choose a model that transformers' {auto.__name__} supports"
        ) from None
