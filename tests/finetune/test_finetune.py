import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support.stages import stage_inputs, tiny_config, with_train

from warmstart.errors import ConfigError
from warmstart.finetune.launch import finetune
from warmstart.finetune.train import resolve_precision


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_csv, tiny_random_model):
    work = tmp_path_factory.mktemp("finetune")
    cfg = tiny_config(synthetic_csv, tiny_random_model)
    return stage_inputs(cfg, work)


@pytest.mark.parametrize("init", ["pretrained", "scratch"])
def test_an_arm_writes_model_predictions_and_curve(prepared, init):
    cfg, work = prepared
    summary = finetune(cfg, init, work / "data", work / "base", work / init / "model", work / init / "eval")
    files = {p.name for p in (work / init / "model").iterdir()}
    assert "model.safetensors" in files and "config.json" in files and "tokenizer.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((work / init / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}

    predictions = pq.read_table(work / init / "eval" / "predictions.parquet").to_pandas()
    test_rows = pq.read_table(work / "data" / "test.parquet").to_pandas()
    assert predictions["id"].tolist() == test_rows["id"].tolist()
    assert predictions["label"].tolist() == test_rows["label"].tolist()
    probabilities = np.stack(predictions["probabilities"].to_numpy())
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (probabilities.argmax(axis=1) == predictions["predicted"]).all()

    curve = summary["learning_curve"]
    assert curve[0]["step"] == 0
    assert curve[-1]["step"] == summary["steps"]
    assert len(curve) >= cfg.train.eval_points + 1
    expected_rate = cfg.train.learning_rate if init == "pretrained" else cfg.train.scratch_learning_rate
    assert summary["learning_rate"] == expected_rate
    # Throughput once warmed up: the samples of the timed steps over their time, evaluations left out.
    steps_timed = summary["steps"] - max(1, summary["steps"] // 10)
    assert 0 < summary["train_samples_per_second"]
    assert summary["train_samples_per_second"] * summary["train_seconds"] > steps_timed * cfg.train.batch_size


def test_same_seed_same_model_whether_batches_are_collated_in_worker_processes(prepared, monkeypatch):
    """On a GPU, data-loader processes pad the batches; that must not change what is learnt."""
    cfg, work = prepared
    first = finetune(cfg, "scratch", work / "data", work / "base", work / "a" / "model", work / "a" / "eval")
    monkeypatch.setattr("warmstart.finetune.train.loader_workers", lambda cuda, cached_features: 2)
    second = finetune(cfg, "scratch", work / "data", work / "base", work / "b" / "model", work / "b" / "eval")
    assert first["model_sha256"] == second["model_sha256"]
    assert first["learning_curve"] == second["learning_curve"]


def test_pretrained_start_transfers(tmp_path, synthetic_csv, tiny_pretrained_model):
    """A model pre-trained on the same kind of data starts (step 0) far above one trained from scratch."""
    cfg = tiny_config(synthetic_csv, tiny_pretrained_model)
    stage_inputs(cfg, tmp_path)
    arms = {
        init: finetune(
            cfg, init, tmp_path / "data", tmp_path / "base", tmp_path / init / "m", tmp_path / init / "e"
        )
        for init in ("pretrained", "scratch")
    }
    assert arms["pretrained"]["learning_curve"][0]["accuracy"] > 0.9
    assert arms["scratch"]["learning_curve"][0]["accuracy"] < 0.75


def test_step_budget_accumulation_and_schedule(prepared):
    """max_steps overrides epochs; with accumulation a step is several batches; the cosine schedule runs."""
    cfg, work = prepared
    train = cfg.train.model_copy(
        update={"max_steps": 5, "gradient_accumulation_steps": 2, "lr_schedule": "cosine", "eval_points": 5}
    )
    summary = finetune(
        cfg.model_copy(update={"train": train}),
        "scratch",
        work / "data",
        work / "base",
        work / "s" / "m",
        work / "s" / "e",
    )
    assert summary["steps"] == 5
    assert [p["step"] for p in summary["learning_curve"]] == [0, 1, 2, 3, 4, 5]
    # 16 rows per batch and 2 batches per step: an epoch is ceil(ceil(rows / 16) / 2) steps.
    rows = json.loads((work / "data" / "data_card.json").read_text())["rows"]["train"]
    steps_per_epoch = math.ceil(math.ceil(rows / 16) / 2)
    assert summary["learning_curve"][-1]["epoch"] == pytest.approx(round(5 / steps_per_epoch, 4))
    assert summary["lr_schedule"] == "cosine"


def test_an_accumulated_step_is_the_step_of_one_batch(prepared):
    """Two passes of 8 rows per step train exactly as one pass of 16: the step's loss is the mean over
    its 16 rows, not the sum of two means (BERT's head ignores the Trainer's row count). Cached
    features and no dropout, so the two runs may differ only in rounding."""
    from safetensors import safe_open

    cfg, work = prepared
    weights, steps = {}, set()
    for batch, accumulation in ((16, 1), (8, 2)):
        tuned = with_train(
            cfg,
            strategy="feature_extraction",
            learning_rate=0.5,  # large steps, so clipping (max norm 1) and a doubled gradient would show
            weight_decay=0.0,
            batch_size=batch,
            gradient_accumulation_steps=accumulation,
        )
        out = work / f"accumulate-{batch}"
        summary = finetune(tuned, "pretrained", work / "data", work / "base", out / "m", out / "e")
        steps.add(summary["steps"])
        with safe_open(out / "m" / "model.safetensors", "np") as tensors:
            weights[batch] = tensors.get_tensor("classifier.weight")
    assert len(steps) == 1
    assert np.allclose(weights[16], weights[8], atol=1e-5), (weights[16], weights[8])


def test_early_stopping_ends_an_arm_whose_metric_stopped_improving(prepared):
    cfg, work = prepared
    cfg = with_train(cfg, epochs=8, eval_points=16, early_stopping_patience=3, learning_rate=1e-2)
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "es" / "m", work / "es" / "e")
    accuracies = [point["accuracy"] for point in summary["learning_curve"]]
    assert summary["stopped_early"] and summary["steps_trained"] < summary["steps"]
    assert summary["learning_curve"][-1]["step"] == summary["steps_trained"]
    last_gain = accuracies.index(max(accuracies))
    assert last_gain >= 1, accuracies
    assert len(accuracies) - 1 - last_gain == 3, "stops `patience` evaluations after the last gain"


def test_bf16_autocast_trains_on_cpu(prepared):
    cfg, work = prepared
    summary = finetune(
        with_train(cfg, precision="bf16", epochs=4, learning_rate=1e-2),
        "pretrained",
        work / "data",
        work / "base",
        work / "bf16" / "m",
        work / "bf16" / "e",
    )
    assert summary["precision"] == "bf16"
    assert summary["learning_curve"][-1]["accuracy"] > 0.9


def test_precision_follows_the_device():
    assert resolve_precision("auto", cuda=False, bf16_native=False) == "fp32"
    assert resolve_precision("auto", cuda=False, bf16_native=True) == "bf16"  # AVX-512 BF16 or AMX
    assert resolve_precision("auto", cuda=True, bf16_native=True) == "bf16"
    assert resolve_precision("auto", cuda=True, bf16_native=False) == "fp16"
    assert resolve_precision("bf16", cuda=False, bf16_native=False) == "bf16"
    assert resolve_precision("fp32", cuda=True, bf16_native=True) == "fp32"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False, bf16_native=False)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads the Linux CPU flags")
def test_bf16_counts_as_native_exactly_where_the_processor_has_bf16_instructions():
    from warmstart.finetune.train import native_bf16

    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert native_bf16(cuda=False) == bool(flags & {"avx512_bf16", "amx_tile"})


def test_a_start_with_another_head_gets_a_new_classification_head(tmp_path, tiny_random_model):
    """A regression model with one output (an STS-B cross-encoder, say) as the start for three
    classes: its head is replaced by a 3-way classifier and trained with cross-entropy."""
    import shutil

    from support.data import write_csv
    from transformers import AutoModelForSequenceClassification

    start = shutil.copytree(tiny_random_model, tmp_path / "regressor")
    model = AutoModelForSequenceClassification.from_pretrained(start, num_labels=1, problem_type="regression")
    model.save_pretrained(start)
    rows = [(f"{word} review number {i}", word) for i in range(90) for word in ("bad", "fine", "great")][:240]
    data = write_csv(tmp_path / "three.csv", rows)
    cfg, work = stage_inputs(tiny_config(data, start, epochs=4, eval_points=1), tmp_path / "work")
    summary = finetune(cfg, "pretrained", work / "data", work / "base", work / "model", work / "eval")
    config = json.loads((work / "model" / "config.json").read_text())
    assert config["problem_type"] == "single_label_classification"
    assert config["id2label"] == {"0": "bad", "1": "fine", "2": "great"}
    assert summary["test_metrics"]["accuracy"] > 0.5


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_base_model_changed_after_fetch_is_refused_before_training(
    tmp_path, synthetic_csv, tiny_random_model, damage
):
    from warmstart.errors import ModelError

    cfg, work = stage_inputs(tiny_config(synthetic_csv, tiny_random_model), tmp_path / "work")
    weights = work / "base" / "model.safetensors"
    if damage == "changed":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0xFF  # one bit pattern in the last tensor: still a readable safetensors file
        weights.write_bytes(bytes(data))
    else:
        weights.unlink()
    problem = "does not match the sha256 in its manifest" if damage == "changed" else "is missing"
    with pytest.raises(ModelError, match=f"model.safetensors in .* {problem}; .* fetch the model again"):
        finetune(cfg, "pretrained", work / "data", work / "base", work / "model", work / "eval")
    assert not (work / "model").exists()
