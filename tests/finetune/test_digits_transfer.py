"""Transfer on real pixels: a tiny ResNet pretrained here on scikit-learn's handwritten 0–4, handed to
`warmstart run` as the start for 5–9 with 10 scans per digit, against the same network from scratch.

No pretrained vision weights can be downloaded on this machine, so the start is made the way a hub
model is: trained on other classes of the same kind of image, saved without its head. The verdict
is warmstart's own; nothing here fixes it (bench/digits_transfer.py measures the same at several K
against a plain PyTorch loop).
"""

from __future__ import annotations

import json

from support.cli import run_warmstart
from support.digits import TARGET_DIGITS, digits_run_config, pretrain_on_source_digits, write_digit_folder

from warmstart.registry import Registry


def test_a_start_pretrained_on_other_digits_is_found_to_transfer_and_registered(tmp_path):
    start = pretrain_on_source_digits(tmp_path / "resnet-digits-0-4")
    assert start["train_accuracy"] > 0.95  # the start learned its own digits
    folder = write_digit_folder(tmp_path / "digits-5-9", TARGET_DIGITS)
    config = digits_run_config(tmp_path / "config.yaml", folder, start["model_dir"], shots=10)

    work = tmp_path / "work"
    result = run_warmstart("run", "--config", str(config), "--workdir", str(work))

    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((work / "summary.json").read_text())
    assert summary["verdict"] == "positive", summary["reason"]
    assert summary["gain"]["ci_low"] > 0
    # Against a baseline that learned: the scratch arm's interval lies above the floor (a constant digit).
    assert summary["baselines"]["learned"], summary["baselines"]
    assert summary["scratch"]["accuracy"] > summary["baselines"]["value"] + 0.1
    # The pretrained start already knows more: a linear probe of its frozen features beats its random init's.
    assert summary["tests"]["start"]["finding"] == "higher", summary["tests"]["start"]
    assert summary["test_rows"] > 350  # the held-out split is uncut by the shots
    assert summary["registered"]["version"] == 1 and summary["registered"]["champion"]
    registry = Registry(str(work / "registry"))
    assert registry.metadata("digits", 1)["modality"] == "image"
    version = registry.download_version("digits", 1, tmp_path / "registered")
    assert json.loads((version / "config.json").read_text())["id2label"] == {
        str(i): str(digit) for i, digit in enumerate(TARGET_DIGITS)
    }
