"""How a `warmstart run` ends when something is wrong: a mistake in a location or a setting is found
before any training (by ingest's preflight, or by fetch_model for what only the model shows) and never
in a task that is retried; the last line is always warmstart's own sentence; a bug says it is one and
leaves its traceback in the log; Ctrl-C and SIGTERM stop every task, and the rerun resumes."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli import run_warmstart, tiny_run_config, unprivileged

from warmstart.registry import Registry

ANSI = re.compile(r"\x1b\[")


def run_tiny(tmp_path, model, *settings, command=None):
    args = ["run", "--config", str(tiny_run_config(tmp_path, model)), "--workdir", str(tmp_path / "work")]
    for setting in settings:
        args += ["--set", setting]
    if command:
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300)
    return run_warmstart(*args, timeout=300)


def assert_one_line_before_training(result, tmp_path, *fragments):
    """One line on stderr, warmstart's own; no traceback or colour codes; no finetune task ever
    started (so none was retried); nothing registered."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in output and not ANSI.search(output)
    assert "Executing task 'finetune'" not in result.stdout
    log = "".join(path.read_text() for path in (tmp_path / "work" / "runs").glob("*.log"))
    assert "Retrying" not in log and "Executing task 'finetune'" not in log
    assert not list((tmp_path / "work").rglob("metadata.json"))
    assert not list((tmp_path / "work").glob(".errors-*")) and not list(
        (tmp_path / "work").glob(".outcome-*")
    )
    return lines[0]


@pytest.mark.parametrize("setting", ["registry.uri", "placement.checkpoint_uri"])
def test_a_location_that_is_a_file_fails_in_ingest_with_the_setting_named(
    tmp_path, tiny_pretrained_model, setting
):
    (tmp_path / "a-file").write_text("not a folder")
    result = run_tiny(tmp_path, tiny_pretrained_model, f"{setting}={tmp_path / 'a-file'}")
    line = assert_one_line_before_training(
        result, tmp_path, f"ingest: {setting} '", "is a file, not a directory"
    )
    assert "set it to a directory" in line


def test_an_unwritable_registry_fails_in_ingest(tmp_path, tiny_pretrained_model):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    command = unprivileged([sys.executable, "-m", "warmstart"])
    if command is None:
        pytest.skip("running as root without user namespaces: no directory is unwritable")
    result = run_tiny(tmp_path, tiny_pretrained_model, f"registry.uri={locked / 'registry'}", command=command)
    assert_one_line_before_training(
        result, tmp_path, "ingest: registry.uri '", f"cannot write in {locked}", "permission denied"
    )


def test_an_s3_bucket_that_does_not_exist_fails_in_ingest(tmp_path, tiny_pretrained_model, s3_env):
    result = run_tiny(tmp_path, tiny_pretrained_model, "placement.checkpoint_uri=s3://no-such-bucket-w/ckpt")
    assert_one_line_before_training(
        result, tmp_path, "ingest: placement.checkpoint_uri 's3://no-such-bucket-w/ckpt'", "does not exist"
    )


@pytest.mark.parametrize(
    "settings, fragments",
    [
        (["model.max_length=512"], ["model.max_length=512 is more than", "(128 tokens)", "at most 128"]),
        (
            ["train.strategy=lora", "train.lora_target_modules=[nothing_by_this_name]"],
            ["train.strategy lora on BertForSequenceClassification", "train.lora_target_modules"],
        ),
    ],
    ids=["max_length over the model's positions", "lora modules the model lacks"],
)
def test_what_finetune_would_refuse_in_the_model_is_refused_by_fetch_model(
    tmp_path, tiny_pretrained_model, settings, fragments
):
    """finetune is the task that retries; a bad input it would meet is met in fetch_model instead."""
    result = run_tiny(tmp_path, tiny_pretrained_model, *settings)
    assert_one_line_before_training(result, tmp_path, "fetch_model: ", *fragments)


def test_what_this_machine_lacks_is_refused_before_any_task(tmp_path, tiny_pretrained_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_tiny(tmp_path, tiny_pretrained_model, "train.precision=fp16")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: train.precision fp16 needs a CUDA GPU and this machine has none; use auto or bf16"
    )
    assert "Executing task" not in result.stdout


BREAK = """
import os, signal
import warmstart.ingest.freshness as freshness

def _broken(*args, **kwargs):
    if os.environ["WARMSTART_TEST_BREAK"] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ZeroDivisionError("a deliberate bug")

if os.environ.get("WARMSTART_TEST_BREAK"):
    freshness.check = _broken
"""


@pytest.mark.parametrize("how", ["bug", "kill"])
def test_a_bug_or_a_killed_task_ends_with_one_line_pointing_to_the_log(
    tmp_path, tiny_pretrained_model, monkeypatch, how
):
    """A deliberate bug in ingest (through a sitecustomize the task processes load): the last line
    says it is a bug, names the stage and the log, which holds the traceback; a task killed from
    outside (SIGKILL, as the kernel's OOM killer does) is said as such."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(BREAK)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("WARMSTART_TEST_BREAK", how)
    result = run_tiny(tmp_path, tiny_pretrained_model)
    line = assert_one_line_before_training(result, tmp_path)
    log = next((tmp_path / "work" / "runs").glob("*.log"))
    if how == "bug":
        assert line.startswith("error: ingest: a bug in warmstart: ZeroDivisionError: a deliberate bug; ")
        assert f"the traceback is in the full log, {log}; please report it" in line
        assert "Traceback (most recent call last)" in log.read_text()
    else:
        assert (
            line
            == f"error: ingest was killed by SIGKILL (the kernel kills a process this way when memory runs out); rerun to resume; the full log is {log}"
        )


def start_run(tmp_path, model, *settings):
    args = ["run", "--config", str(tiny_run_config(tmp_path, model)), "--workdir", str(tmp_path / "work")]
    for setting in settings:
        args += ["--set", setting]
    command = [sys.executable, "-m", "warmstart", *args]
    # A session of its own, as a terminal gives a command: Ctrl-C is SIGINT to its whole process group.
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_a_checkpoint(work: Path, process: subprocess.Popen, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not list((work / "registry" / ".checkpoints").rglob("complete.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)


def task_processes(work: Path) -> list[str]:
    """Task processes still running for this work directory (their command lines name it)."""
    found = subprocess.run(["pgrep", "-f", f"{work}/runs"], capture_output=True, text=True)
    return found.stdout.split()


LONG = ("train.epochs=30", "placement.checkpoint_steps=5", "train.seeds=[0]")


def interrupt_during_finetune(tmp_path, model, send) -> tuple[int, list[str]]:
    """Start the run, wait for its first checkpoint, `send` the signal; then no task process is left
    and nothing is registered. Returns the exit code and the lines on stderr."""
    work = tmp_path / "work"
    process = start_run(tmp_path, model, *LONG)
    wait_for_a_checkpoint(work, process)
    send(process.pid)
    stdout, stderr = process.communicate(timeout=60)
    time.sleep(0.5)
    assert task_processes(work) == []
    assert not list(work.rglob("metadata.json"))
    assert not list(work.glob(".errors-*")) and not list(work.glob(".outcome-*"))
    assert "Traceback" not in stdout + stderr
    return process.returncode, [line for line in stderr.splitlines() if line.strip()]


def test_ctrl_c_during_finetune_stops_the_run_and_the_rerun_resumes(tmp_path, tiny_pretrained_model):
    """Ctrl-C in a terminal is SIGINT to the command's whole process group."""
    code, lines = interrupt_during_finetune(
        tmp_path, tiny_pretrained_model, lambda pid: os.killpg(pid, signal.SIGINT)
    )
    assert code == 130
    assert lines == [
        "error: interrupted during finetune; nothing was registered; rerun to resume from the last checkpoint"
    ]
    again = run_tiny(tmp_path, tiny_pretrained_model, *LONG)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from step" in again.stdout
    summary = json.loads((tmp_path / "work" / "summary.json").read_text())
    assert summary["verdict"] in ("positive", "neutral", "negative")  # judged, whatever 30 epochs made of it
    registered = Registry(str(tmp_path / "work" / "registry")).versions("tiny-reviews")
    assert registered == ([1] if summary["passed"] else [])


def test_sigterm_to_warmstart_alone_stops_its_tasks_too(tmp_path, tiny_pretrained_model):
    """A pod eviction signals the container's main process only: warmstart stops the tasks itself."""
    code, lines = interrupt_during_finetune(
        tmp_path, tiny_pretrained_model, lambda pid: os.kill(pid, signal.SIGTERM)
    )
    assert code == 143
    assert lines[-1].startswith("error: interrupted during finetune; nothing was registered")
