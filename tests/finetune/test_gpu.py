"""Finetune on a CUDA GPU: bf16 autocast, fused AdamW, torch.compile, and two processes on two GPUs.

Skipped without a GPU (CI has none); run with `pytest -m gpu` on a GPU machine.
"""

import warnings

import pytest
import torch
from support.stages import stage_inputs, tiny_config

from warmstart.finetune.launch import finetune

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
    summary = run(prepared, "auto", precision="auto")  # tiny_config pins fp32 for the CPU tests
    assert summary["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    assert fused == [True]
    assert summary["test_metrics"]["accuracy"] > 0.8


def test_torch_compile_trains(prepared):
    summary = run(prepared, "compiled", compile=True)
    assert summary["test_metrics"]["accuracy"] > 0.8


def test_no_gpu_sync_between_training_steps(prepared, monkeypatch):
    """Once warmed up, the host queues step after step without waiting for the GPU. The Trainer's
    defaults waited twice a step: accelerate's blocking batch copy and the loss's NaN filter.
    Compiled, as the fastest setting runs: in eager mode transformers' own check of the attention
    mask on the host waits once per forward, and that is the model's, not the loop's."""
    import warmstart.finetune.train

    meter = warmstart.finetune.throughput_meter
    watched_steps = []

    def watching_meter(samples_per_step, total_steps):
        callback = meter(samples_per_step, total_steps)
        step_end = callback.on_step_end

        def on_step_end(args, state, control, **kwargs):
            step_end(args, state, control, **kwargs)  # its own synchronize, at the warm step, is outside
            # From here to the next step's end: the next batch's copy, forward, backward, optimizer.
            # The last step is left out: the evaluation after it synchronises, as it must.
            inside = callback.warm_step < state.global_step < state.max_steps - 1
            torch.cuda.set_sync_debug_mode("warn" if inside else "default")
            if inside:
                watched_steps.append(state.global_step)

        callback.on_step_end = on_step_end
        return callback

    monkeypatch.setattr(warmstart.finetune, "throughput_meter", watching_meter)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(prepared, "sync", precision="auto", batch_size=8, eval_points=1, compile=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]
    assert len(watched_steps) >= 20
    assert len(syncs) < len(watched_steps) / 4, (
        f"{len(syncs)} syncs in {len(watched_steps)} steps: {syncs[:8]}"
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_processes_on_two_gpus(prepared):
    summary = run(prepared, "ddp", nproc_per_node=2, batch_size=8)
    assert summary["processes"] == 2 and summary["test_metrics"]["accuracy"] > 0.8
