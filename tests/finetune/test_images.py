"""Image classification through the same stages: image folders and tables of paths or bytes, a tiny
random-init ViT as the "pretrained" model, fetched from a directory, S3 or the Hub cache."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.cli import run_warmstart
from support.data import stripe_image, write_image_folder
from support.stages import assert_resume_matches_an_unbroken_run, stage_inputs, tiny_image_config

from warmstart.artifacts import load_evaluation
from warmstart.config import DataConfig, ModelConfig
from warmstart.errors import DataError, ModelError
from warmstart.fetch_model.sources import fetch_model
from warmstart.finetune.launch import finetune
from warmstart.finetune.strategies import block_indices, depth, prepare
from warmstart.gate.policy import gate
from warmstart.ingest.dataset import ingest
from warmstart.registry import Registry


def test_an_image_folder_is_split_cleaned_and_described(tmp_path, image_folder):
    root = tmp_path / "stripes"
    shutil.copytree(image_folder, root)
    shutil.copyfile(root / "vertical" / "001.png", root / "vertical" / "copy-of-001.png")  # a duplicate
    (root / "vertical" / "broken.png").write_bytes((root / "vertical" / "002.png").read_bytes()[:60])
    (root / "vertical" / "notes.txt").write_text("not an image")
    (root / "horizontal" / "nested").mkdir()
    (root / "horizontal" / "nested" / "extra.png").write_bytes(stripe_image("horizontal", 7))

    card = ingest(DataConfig(source=str(root), test_source="", test_fraction=0.25), tmp_path / "out")

    assert card["modality"] == "image" and card["format"] == "imagefolder"
    assert card["label_names"] == ["horizontal", "vertical"]
    assert card["removed"]["duplicates"] == 1 and card["removed"]["unreadable"] == 1
    assert sum(card["rows"].values()) == 121  # 120 + the nested one; the copy, broken file and notes are gone
    assert card["images"]["formats"] == {"JPEG": 40, "PNG": 81}
    assert 24 <= card["images"]["width"][0] <= card["images"]["width"][1] < 48
    splits = {name: pq.read_table(tmp_path / "out" / f"{name}.parquet") for name in ("train", "test")}
    assert splits["train"].column_names == ["id", "name", "image", "label"]
    assert (
        "horizontal/nested/extra.png"
        in splits["train"].column("name").to_pylist() + splits["test"].column("name").to_pylist()
    )
    train_images = set(splits["train"].column("image").to_pylist())
    assert not train_images & set(splits["test"].column("image").to_pylist())


def test_tables_of_paths_or_bytes_hold_the_same_data_as_the_folder(tmp_path, image_folder):
    """The fingerprint is over the images' bytes and labels: a folder, a JSONL of relative paths and
    Parquet files of bytes or {bytes, path} structs give the same value."""
    files = sorted(p.relative_to(image_folder).as_posix() for p in image_folder.rglob("*.*"))
    labels = [name.split("/")[0] for name in files]
    (image_folder.parent / "index.jsonl").write_text(
        "".join(
            json.dumps({"file": f"{image_folder.name}/{f}", "class": y}) + "\n"
            for f, y in zip(files, labels, strict=True)
        )
    )
    images = [(image_folder / f).read_bytes() for f in files]
    pq.write_table(pa.table({"img": images, "class": labels}), tmp_path / "bytes.parquet")
    structs = pa.array([{"bytes": b, "path": f} for b, f in zip(images, files, strict=True)])
    pq.write_table(pa.table({"img": structs, "class": labels}), tmp_path / "structs.parquet")

    def fingerprint(source, column):
        values = {"source": str(source), "test_source": "", "image_column": column, "label_column": "class"}
        return ingest(DataConfig(**values), tmp_path / f"out-{source.stem}")["fingerprint"]

    folder = ingest(DataConfig(source=str(image_folder), test_source=""), tmp_path / "folder")["fingerprint"]
    assert fingerprint(image_folder.parent / "index.jsonl", "file") == folder
    # A CSV of relative paths in another encoding: the paths are still read from the CSV's folder.
    (image_folder.parent / "index.csv").write_text(
        "file,class\n"
        + "".join(f"{image_folder.name}/{f},{y}\n" for f, y in zip(files, labels, strict=True)),
        encoding="utf-16",
    )
    values = {"image_column": "file", "label_column": "class", "encoding": "utf-16", "test_source": ""}
    card = ingest(DataConfig(source=str(image_folder.parent / "index.csv"), **values), tmp_path / "utf16")
    assert card["fingerprint"] == folder
    assert fingerprint(tmp_path / "bytes.parquet", "img") == folder
    assert fingerprint(tmp_path / "structs.parquet", "img") == folder


def test_image_data_mistakes_get_one_clear_error(tmp_path, image_folder):
    index = tmp_path / "index.jsonl"
    index.write_text(
        json.dumps({"file": str(image_folder / "vertical" / "000.jpg"), "y": "v"})
        + "\n"
        + json.dumps({"file": "missing/photo.png", "y": "h"})
        + "\n"
    )
    with pytest.raises(
        DataError,
        match=r"line 2: image '.*missing/photo.png': .* does not exist.*the row says 'missing/photo.png'; relative paths are read from the data file's folder",
    ):
        ingest(DataConfig(source=str(index), image_column="file", label_column="y"), tmp_path / "a")
    table = tmp_path / "index.csv"  # the header is line 1, as an editor shows it
    table.write_text(f"file,y\n{image_folder / 'vertical' / '000.jpg'},v\n\nmissing/photo.png,h\n")
    with pytest.raises(DataError, match=r"index.csv', line 4: image '.*missing/photo.png'"):
        ingest(DataConfig(source=str(table), image_column="file", label_column="y"), tmp_path / "b")
    pq.write_table(pa.table({"img": [1, 2], "y": ["a", "b"]}), tmp_path / "numbers.parquet")
    with pytest.raises(DataError, match="holds int64; it needs image file paths"):
        ingest(
            DataConfig(source=str(tmp_path / "numbers.parquet"), image_column="img", label_column="y"),
            tmp_path / "b",
        )
    with pytest.raises(DataError, match="has no column 'picture'.*set data.image_column"):
        ingest(DataConfig(source=str(index), image_column="picture", label_column="y"), tmp_path / "c")

    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copyfile(image_folder / "vertical" / "001.png", flat / "001.png")
    with pytest.raises(DataError, match="images outside any class folder"):
        ingest(DataConfig(source=str(flat)), tmp_path / "d")
    (flat / "001.png").unlink()
    (flat / "empty-class").mkdir()
    with pytest.raises(DataError, match="hold no images"):
        ingest(DataConfig(source=str(flat)), tmp_path / "e")


def test_a_model_that_does_not_fit_the_data_is_refused(
    tmp_path, image_folder, tiny_vision_model, tiny_random_model, synthetic_csv
):
    from support.stages import tiny_config

    images, _ = stage_inputs(tiny_image_config(image_folder, tiny_random_model), tmp_path / "images")
    with pytest.raises(
        ModelError, match=r"model.source .*tiny-random-bert.* has no image processor.*needs a vision model"
    ):
        finetune(images, "pretrained", *(tmp_path / "images" / d for d in ("data", "base", "m", "e")))
    text, _ = stage_inputs(tiny_config(synthetic_csv, tiny_vision_model), tmp_path / "text")
    with pytest.raises(
        ModelError,
        match=r"model.source .*tiny-random-vit.* has no usable tokenizer.*text data needs a language model",
    ):
        finetune(text, "pretrained", *(tmp_path / "text" / d for d in ("data", "base", "m", "e")))


def test_images_go_through_finetune_and_the_gate(tmp_path, image_folder, tiny_vision_model):
    """ingest → fetch → finetune (the saved random init as 'pretrained', and scratch) → gate."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    cfg, work = stage_inputs(tiny_image_config(image_folder, tiny_vision_model), tmp_path)
    for init in ("pretrained", "scratch"):
        summary = finetune(cfg, init, work / "data", work / "base", work / init, work / f"{init}-evaluation")
        assert summary["modality"] == "image" and summary["steps_trained"] == summary["steps"]
        assert [point["step"] for point in summary["learning_curve"]][0] == 0
        _, predictions = load_evaluation(work / f"{init}-evaluation")
        assert predictions.num_rows == summary["test_rows"] == 30
        assert predictions.column("name").to_pylist()[0].startswith(("horizontal/", "vertical/"))
    model = AutoModelForImageClassification.from_pretrained(work / "pretrained", use_safetensors=True)
    assert model.config.id2label == {0: "horizontal", 1: "vertical"}
    assert AutoImageProcessor.from_pretrained(work / "pretrained").size == {"height": 32, "width": 32}

    result = gate(cfg.gate, work / "pretrained-evaluation", work / "scratch-evaluation", work / "gate")
    assert result["verdict"] in ("positive", "neutral", "negative")
    pretrained, _ = load_evaluation(work / "pretrained-evaluation")
    assert result["pretrained"]["accuracy"] == pretrained["test_metrics"]["accuracy"]
    assert result["gain"]["ci_low"] <= result["gain"]["estimate"] <= result["gain"]["ci_high"]


def test_image_training_resumes_from_a_checkpoint_as_if_never_stopped(
    tmp_path, image_folder, tiny_vision_model, monkeypatch
):
    """Image batches come in a seeded order per epoch too, and augmented rows are seeded by epoch and
    row: a run stopped after its first checkpoint and restarted ends with the same weights as an
    unbroken one."""
    cfg = tiny_image_config(
        image_folder,
        tiny_vision_model,
        checkpoint_steps=4,
        checkpoint_uri=str(tmp_path / "ckpt"),
        augment=True,
    )
    cfg, work = stage_inputs(cfg, tmp_path)
    assert_resume_matches_an_unbroken_run(cfg, work, tmp_path, monkeypatch, step=4)


@pytest.mark.parametrize(
    ("strategy", "trainable"),
    [
        ("feature_extraction", lambda names: names == {"classifier.weight", "classifier.bias"}),
        (
            "partial_freeze",
            lambda names: (
                not any("embeddings" in n or ".layers.0." in n for n in names)
                and any(".layers.1." in n for n in names)
            ),
        ),
        (
            "llrd",
            lambda names: any("embeddings" in n for n in names) and any("classifier" in n for n in names),
        ),
        (
            "lora",
            lambda names: (
                all("lora_" in n or "classifier.modules_to_save" in n for n in names)
                and any("lora_A" in n for n in names)
                and any("classifier" in n for n in names)
            ),
        ),
    ],
)
def test_strategies_train_a_vision_model(tmp_path, image_folder, tiny_vision_model, strategy, trainable):
    from transformers import AutoModelForImageClassification

    cfg = tiny_image_config(image_folder, tiny_vision_model, strategy=strategy, freeze_layers=1, epochs=1)
    cfg, work = stage_inputs(cfg, tmp_path)
    from warmstart.finetune.train import build_model

    untrained = build_model("pretrained", work / "base", ["h", "v"], 0, modality="image")
    model, _ = prepare(untrained, cfg.train, "pretrained", 1e-3)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and trainable(names)
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "model", work / "evaluation")
    assert summary["strategy"] == strategy
    assert summary["cached_features"] == (strategy == "feature_extraction")
    AutoModelForImageClassification.from_pretrained(work / "model", use_safetensors=True)  # a plain model


def test_blocks_of_a_stage_based_network_are_counted_across_stages():
    """ConvNeXt numbers its blocks within stages (stages.1.layers.0.); partial_freeze and llrd count
    them through the whole network."""
    from transformers import ConvNextConfig, ConvNextForImageClassification

    from warmstart.config import TrainConfig
    from warmstart.errors import ConfigError

    model = ConvNextForImageClassification(
        ConvNextConfig(num_stages=2, depths=[1, 2], hidden_sizes=[8, 16], num_labels=2)
    )
    blocks = block_indices(model)
    assert depth(model) == 3
    assert {blocks[n] for n in blocks if ".stages.1.layers.0." in n} == {1}
    frozen, _ = prepare(model, TrainConfig(strategy="partial_freeze", freeze_layers=2), "pretrained", 1e-3)
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert any(".stages.1.layers.1." in n for n in trainable)
    assert not any(
        ".stages.0.layers.0." in n or ".stages.1.layers.0." in n or "embeddings" in n for n in trainable
    )
    with pytest.raises(ConfigError, match="no default modules to adapt in ConvNextForImageClassification"):
        prepare(model, TrainConfig(strategy="lora"), "pretrained", 1e-3)


def test_a_vision_model_is_fetched_from_s3_and_from_the_hub_cache(
    tmp_path, s3_prefix, tiny_vision_model, monkeypatch
):
    from warmstart.storage import put_tree

    put_tree(tiny_vision_model, f"{s3_prefix}/vit")
    from_s3 = fetch_model(ModelConfig(source=f"{s3_prefix}/vit"), tmp_path / "from-s3")
    assert set(from_s3["files"]) == {"config.json", "model.safetensors", "preprocessor_config.json"}

    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hub" / "models--tiny--vit" / "snapshots" / commit
    shutil.copytree(tiny_vision_model, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(commit)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    from_hub = fetch_model(ModelConfig(source="hf://tiny/vit@main"), tmp_path / "from-hub")
    assert from_hub["revision"] == commit and from_hub["files"] == from_s3["files"]
    assert from_hub["model_type"] == "vit"


@pytest.fixture(scope="module")
def stripes_pretrained_vit(tmp_path_factory, tiny_vision_model):
    """The tiny ViT after training on other stripe images: a start that transfers."""
    work = tmp_path_factory.mktemp("vit-pretraining")
    folder = write_image_folder(work / "pretraining", per_class=150, seed=99)
    cfg, _ = stage_inputs(tiny_image_config(folder, tiny_vision_model, epochs=4, eval_points=1), work)
    finetune(cfg, "scratch", work / "data", work / "base", work / "model", work / "evaluation")
    return work / "model"


def test_run_on_an_image_folder_in_s3_registers_an_image_classifier(
    tmp_path, s3_prefix, stripes_pretrained_vit
):
    """`warmstart run` with the image folder and the model both on S3, through kfp.local."""
    from warmstart.storage import put_tree

    folder = write_image_folder(tmp_path / "stripes", per_class=60, seed=3)
    put_tree(folder, f"{s3_prefix}/stripes")
    put_tree(stripes_pretrained_vit, f"{s3_prefix}/vit")
    result = run_warmstart(
        "run",
        "--workdir",
        str(tmp_path / "work"),
        *("--set", f"data.source={s3_prefix}/stripes/", "--set", "data.test_source="),
        *("--set", f"model.source={s3_prefix}/vit", "--set", "registry.name=stripes"),
        *(
            "--set",
            "train.epochs=1",
            "--set",
            "train.learning_rate=1e-3",
            "--set",
            "train.scratch_learning_rate=3e-3",
        ),
        *("--set", "train.batch_size=16", "--set", "gate.bootstrap_samples=2000"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["verdict"] == "positive", summary
    assert summary["registered"]["version"] == 1
    registry = Registry(str(tmp_path / "work" / "registry"))
    version = registry.download_version("stripes", 1, tmp_path / "registered")
    assert (version / "preprocessor_config.json").is_file()
    card, _ = registry.store.read("stripes/versions/1/model_card.md")
    assert "ViTForImageClassification image classifier" in card.decode()
    assert "images in class folders" in card.decode()
    assert registry.metadata("stripes", 1)["modality"] == "image"
    assert "torchvision" not in result.stdout + result.stderr
