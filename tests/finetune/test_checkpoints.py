"""Checkpoints leave the pod whole, the newest complete one is resumed without a flag, a kill loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.stages import assert_resume_matches_an_unbroken_run, stage_inputs, tiny_config, with_train

from warmstart.errors import WarmstartError
from warmstart.finetune.checkpoints import MARKER, Checkpoints, run_name
from warmstart.storage import list_s3


def fake_checkpoint(directory, step):
    directory.mkdir(parents=True)
    (directory / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (directory / "model.safetensors").write_bytes(os.urandom(1000))
    (directory / "sub").mkdir()
    (directory / "sub" / "rng_state.pth").write_bytes(b"x" * step)
    return directory


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    return request.getfixturevalue("s3_prefix") if request.param == "s3" else str(tmp_path / "checkpoints")


def test_only_the_newest_complete_checkpoints_are_kept_and_restored(root, tmp_path):
    checkpoints = Checkpoints(root, "pretrained-abc", keep=2)
    assert checkpoints.complete() == [] and checkpoints.restore(tmp_path / "none") is None
    for step in (2, 4, 6):
        checkpoints.save(fake_checkpoint(tmp_path / f"local-{step}", step), step)
    assert checkpoints.complete() == [4, 6]
    # A copy cut off before its marker (a crash mid-upload) is not a checkpoint.
    checkpoints.store.put_file(
        "pretrained-abc/step-000000008/model.safetensors", tmp_path / "local-6" / "model.safetensors"
    )
    assert checkpoints.complete() == [4, 6]

    restored = checkpoints.restore(tmp_path / "restored")
    assert restored.name == "checkpoint-6"
    for name in ("trainer_state.json", "model.safetensors", "sub/rng_state.pth"):
        assert (restored / name).read_bytes() == (tmp_path / "local-6" / name).read_bytes()

    checkpoints.clear()
    assert checkpoints.complete() == [] and not stored_files(root)


def stored_files(root):
    """Every object under `root` (an S3 server may keep empty folders; objects are what count)."""
    if root.startswith("s3://"):
        return list_s3(root)
    return [p for p in Path(root).rglob("*") if p.is_file()]


def test_a_checkpoint_that_changed_after_it_was_written_is_refused(tmp_path):
    checkpoints = Checkpoints(str(tmp_path / "checkpoints"), "scratch-abc", keep=1)
    checkpoints.save(fake_checkpoint(tmp_path / "local", 3), 3)
    (tmp_path / "checkpoints" / "scratch-abc" / "step-000000003" / "model.safetensors").write_bytes(
        b"tampered"
    )
    with pytest.raises(WarmstartError, match="does not match the checksum.*delete"):
        checkpoints.restore(tmp_path / "restored")


def test_the_run_name_changes_with_what_shapes_training_only():
    train = {"epochs": 2, "seed": 0, "checkpoint_uri": "/a", "checkpoint_steps": 5, "checkpoint_keep": 2}
    same = {**train, "checkpoint_uri": "s3://b/c", "checkpoint_steps": 50, "checkpoint_keep": 9}
    assert run_name("pretrained", train, data="fp") == run_name("pretrained", same, data="fp")
    assert run_name("pretrained", train, data="fp") != run_name("scratch", train, data="fp")
    assert run_name("pretrained", train, data="fp") != run_name("pretrained", {**train, "seed": 1}, data="fp")
    assert run_name("pretrained", train, data="fp") != run_name("pretrained", train, data="other")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, synthetic_csv, tiny_random_model):
    work = tmp_path_factory.mktemp("resume")
    cfg = tiny_config(synthetic_csv, tiny_random_model)
    return stage_inputs(cfg, work)


def start_finetune(config_file, work, name):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "warmstart.finetune",
            *("--config", str(config_file), "--init", "pretrained"),
            *("--dataset", str(work / "data"), "--base-model", str(work / "base")),
            *("--model", str(work / name / "model"), "--evaluation", str(work / name / "evaluation")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_finetune_killed_after_a_checkpoint_resumes_and_ends_as_if_never_killed(prepared, tmp_path):
    cfg, work = prepared
    values = cfg.model_dump()
    values["train"].update(epochs=8)
    values["placement"].update(checkpoint_steps=3, checkpoint_uri=str(tmp_path / "checkpoints"))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(values))

    uninterrupted = start_finetune(config_file, work, "uninterrupted")
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stdout.read()
    assert not list((tmp_path / "checkpoints").rglob(MARKER)), (
        "checkpoints are removed once the model is written"
    )

    killed = start_finetune(config_file, work, "killed")
    deadline = time.monotonic() + 300
    while not list((tmp_path / "checkpoints").rglob(MARKER)):
        assert killed.poll() is None, "finished before its first checkpoint: give it more steps"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (work / "killed" / "evaluation" / "summary.json").exists()

    resumed = start_finetune(config_file, work, "killed")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "resuming from step" in output

    first = json.loads((work / "uninterrupted" / "evaluation" / "summary.json").read_text())
    second = json.loads((work / "killed" / "evaluation" / "summary.json").read_text())
    assert second["resumed_from_step"] and second["resumed_from_step"] < second["steps"]
    assert first["resumed_from_step"] is None
    assert second["test_metrics"] == first["test_metrics"]
    assert second["learning_curve"] == first["learning_curve"]
    assert second["model_sha256"] == first["model_sha256"]


def test_training_resumes_from_checkpoints_on_s3(prepared, s3_prefix, tmp_path, monkeypatch):
    """A restart finds an S3 checkpoint of the same run (here: left by a run stopped after 4 steps)."""
    cfg, work = prepared
    cfg = with_train(cfg, checkpoint_uri=s3_prefix, checkpoint_steps=4, epochs=1)
    assert_resume_matches_an_unbroken_run(cfg, work, tmp_path, monkeypatch, step=4)
