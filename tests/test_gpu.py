"""Finetune on a CUDA GPU: bf16 autocast, fused AdamW, torch.compile, and two processes on two GPUs.

Skipped without a GPU (CI has none); run with `pytest -m gpu` on a GPU machine.
"""

import pytest
import torch
from conftest import stage_inputs, tiny_config

from warmstart.finetune import finetune

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_csv, tiny_pretrained_model):
    work = tmp_path_factory.mktemp("gpu")
    cfg = tiny_config(synthetic_csv, tiny_pretrained_model, epochs=1, learning_rate=1e-3)
    return stage_inputs(cfg, work)


def run(prepared, name, **train):
    cfg, work = prepared
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})
    return finetune(cfg, "pretrained", work / "data", work / "base", work / name / "m", work / name / "e")


def test_auto_precision_is_bf16_with_fused_adamw(prepared, monkeypatch):
    fused = []
    original = torch.optim.AdamW.__init__

    def spy(self, *args, **kwargs):
        fused.append(kwargs.get("fused"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    summary = run(prepared, "auto")
    assert summary["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert fused == [True]
    assert summary["test_metrics"]["accuracy"] > 0.8


def test_torch_compile_trains(prepared):
    summary = run(prepared, "compiled", compile=True)
    assert summary["test_metrics"]["accuracy"] > 0.8


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_processes_on_two_gpus(prepared):
    summary = run(prepared, "ddp", nproc_per_node=2, batch_size=8)
    assert summary["processes"] == 2 and summary["test_metrics"]["accuracy"] > 0.8
