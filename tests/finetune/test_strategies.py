"""Each transfer strategy trains exactly the parameters it should, at the rates it should."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors import safe_open
from support.stages import stage_inputs, tiny_config

from warmstart.config import TrainConfig
from warmstart.finetune.launch import finetune
from warmstart.finetune.strategies import prepare
from warmstart.finetune.train import build_model, build_model_from_dir, predict_test_split


@pytest.fixture
def classifier(tiny_random_model):
    return build_model("pretrained", tiny_random_model, ["neg", "pos"], seed=0)


def frozen_names(model):
    return {name for name, p in model.named_parameters() if not p.requires_grad}


def test_full_trains_everything(classifier):
    model, groups = prepare(classifier, TrainConfig(strategy="full"), "pretrained", 1e-4)
    assert not frozen_names(model)
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert {g["weight_decay"] for g in groups} == {0.01, 0.0}


def test_partial_freeze_freezes_embeddings_and_the_first_blocks(classifier):
    model, groups = prepare(
        classifier, TrainConfig(strategy="partial_freeze", freeze_layers=1), "pretrained", 1e-4
    )
    frozen = frozen_names(model)
    assert frozen
    assert all(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in frozen)
    assert {
        n for n, _ in model.named_parameters() if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
    } == frozen
    trained = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) not in trained for n, p in model.named_parameters() if n in frozen)


def test_llrd_gives_earlier_blocks_lower_rates(classifier):
    model, groups = prepare(classifier, TrainConfig(strategy="llrd", layer_decay=0.5), "pretrained", 1e-3)
    assert not frozen_names(model)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.weight"])] == pytest.approx(1e-3)
    assert rate_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(5e-4)
    assert rate_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(2.5e-4)
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert len(rate_of) == len(named)


def test_lora_trains_adapters_and_the_head_only(classifier):
    total = sum(p.numel() for p in classifier.parameters())
    model, groups = prepare(classifier, TrainConfig(strategy="lora", lora_rank=4), "pretrained", 1e-3)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("lora_A" in n and "query" in n for n in trainable)
    # 2 blocks × (query, value) × rank 4 × (32 in + 32 out), plus the head (32·2 + 2).
    assert sum(p.numel() for g in groups for p in g["params"]) == 2 * 2 * 4 * 64 + 66
    assert sum(p.numel() for g in groups for p in g["params"]) < total / 10


def test_feature_extraction_trains_the_classification_layer_only(classifier):
    model, groups = prepare(classifier, TrainConfig(strategy="feature_extraction"), "pretrained", 1e-3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    assert sum(p.numel() for g in groups for p in g["params"]) == 32 * 2 + 2
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


@pytest.mark.parametrize("strategy", ["feature_extraction", "partial_freeze", "llrd", "lora"])
def test_scratch_always_trains_everything(tiny_random_model, strategy):
    scratch = build_model("scratch", tiny_random_model, ["neg", "pos"], seed=0)
    model, _ = prepare(scratch, TrainConfig(strategy=strategy), "scratch", 1e-3)
    assert model is scratch and not frozen_names(model)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_csv, tiny_random_model):
    work = tmp_path_factory.mktemp("strategies")
    cfg = tiny_config(synthetic_csv, tiny_random_model, epochs=1)
    return stage_inputs(cfg, work)


def test_partial_freeze_leaves_frozen_weights_as_they_were(prepared):
    cfg, work = prepared
    cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"strategy": "partial_freeze", "freeze_layers": 1})}
    )
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "pf" / "m", work / "pf" / "e")
    assert (
        summary["strategy"] == "partial_freeze"
        and summary["trainable_parameters"] < summary["total_parameters"]
    )
    with (
        safe_open(work / "base" / "model.safetensors", "np") as base,
        safe_open(work / "pf" / "m" / "model.safetensors", "np") as tuned,
    ):
        assert np.array_equal(
            base.get_tensor("embeddings.word_embeddings.weight"),
            tuned.get_tensor("bert.embeddings.word_embeddings.weight"),
        )
        assert np.array_equal(
            base.get_tensor("encoder.layer.0.output.dense.weight"),
            tuned.get_tensor("bert.encoder.layer.0.output.dense.weight"),
        )
        assert not np.array_equal(
            base.get_tensor("encoder.layer.1.output.dense.weight"),
            tuned.get_tensor("bert.encoder.layer.1.output.dense.weight"),
        )


def test_a_lora_model_is_saved_merged_and_loads_like_any_other(prepared):
    cfg, work = prepared
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"strategy": "lora", "lora_rank": 4})})
    summary = finetune(
        cfg, "pretrained", work / "data", work / "base", work / "lora" / "m", work / "lora" / "e"
    )
    assert summary["trainable_parameters"] < summary["total_parameters"] / 10
    with safe_open(work / "lora" / "m" / "model.safetensors", "np") as tuned:
        assert not any("lora" in key for key in tuned.keys())
    assert "adapter_config.json" not in {p.name for p in (work / "lora" / "m").iterdir()}
    model, inputs = build_model_from_dir(work / "lora" / "m", "text", cfg.model.max_length)
    _, probabilities = predict_test_split(model, inputs, work / "data", 64)
    stored = pq.read_table(work / "lora" / "e" / "predictions.parquet").column("probabilities").to_pylist()
    assert np.allclose(probabilities, np.array(stored), atol=1e-5)
    assert json.loads((work / "lora" / "m" / "config.json").read_text())["id2label"] == {
        "0": "neg",
        "1": "pos",
    }


def test_cached_features_train_the_same_layer_as_running_the_frozen_network(prepared):
    """Training on features computed once equals re-running the frozen network every step."""
    cfg, work = prepared
    summaries, weights = {}, {}
    for cache in (True, False):
        train = cfg.train.model_copy(
            update={"strategy": "feature_extraction", "cache_features": cache, "learning_rate": 1e-2}
        )
        out = work / f"fe-{cache}"
        summaries[cache] = finetune(
            cfg.model_copy(update={"train": train}),
            "pretrained",
            work / "data",
            work / "base",
            out / "m",
            out / "e",
        )
        with safe_open(out / "m" / "model.safetensors", "np") as tuned:
            weights[cache] = {key: tuned.get_tensor(key) for key in tuned.keys()}
    assert summaries[True]["cached_features"] and not summaries[False]["cached_features"]
    assert summaries[True]["trainable_parameters"] == 32 * 2 + 2
    for key, value in weights[False].items():
        assert np.allclose(weights[True][key], value, atol=1e-5), key
    with safe_open(work / "base" / "model.safetensors", "np") as base:
        assert np.array_equal(
            base.get_tensor("encoder.layer.1.output.dense.weight"),
            weights[True]["bert.encoder.layer.1.output.dense.weight"],
        )
    untrained = build_model("pretrained", work / "base", ["neg", "pos"], seed=cfg.train.seed)
    assert not np.allclose(weights[True]["classifier.weight"], untrained.classifier.weight.detach().numpy())
    curves = [[point["accuracy"] for point in summaries[c]["learning_curve"]] for c in (True, False)]
    assert np.allclose(curves[0], curves[1], atol=1e-6)
    assert summaries[True]["test_metrics"] == pytest.approx(summaries[False]["test_metrics"], abs=1e-6)
