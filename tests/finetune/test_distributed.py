"""Data-parallel training under torchrun: two CPU processes (gloo) train one model, as one process does."""

import pytest
from support.stages import stage_inputs, tiny_config, with_train

from warmstart.errors import ModelError
from warmstart.finetune.launch import finetune


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_csv, tiny_pretrained_model):
    work = tmp_path_factory.mktemp("ddp")
    cfg = tiny_config(synthetic_csv, tiny_pretrained_model, epochs=1, learning_rate=1e-3)
    return stage_inputs(cfg, work)


def test_two_torchrun_processes_write_one_model_that_matches_one_process(prepared):
    cfg, work = prepared
    one = finetune(
        with_train(cfg, batch_size=16),
        "pretrained",
        work / "data",
        work / "base",
        work / "1" / "m",
        work / "1" / "e",
    )
    two = finetune(
        with_train(cfg, batch_size=8, nproc_per_node=2),
        "pretrained",
        work / "data",
        work / "base",
        work / "2" / "m",
        work / "2" / "e",
    )
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["steps"] == one["steps"], "the same global batch gives the same number of optimizer steps"
    assert sorted(p.name for p in (work / "2" / "m").glob("*.safetensors")) == ["model.safetensors"]
    assert two["learning_curve"][0]["accuracy"] == pytest.approx(one["learning_curve"][0]["accuracy"])
    assert abs(two["test_metrics"]["accuracy"] - one["test_metrics"]["accuracy"]) <= 0.03
    assert two["test_metrics"]["accuracy"] > 0.8


def test_a_worker_error_comes_back_as_one_message(prepared):
    cfg, work = prepared
    with pytest.raises(
        ModelError, match="torchrun with 2 processes failed: train.precision fp16 needs a CUDA GPU"
    ):
        finetune(
            with_train(cfg, nproc_per_node=2, precision="fp16"),
            "pretrained",
            work / "data",
            work / "base",
            work / "bad" / "m",
            work / "bad" / "e",
        )
    assert not (work / "bad" / "e" / "summary.json").exists()
