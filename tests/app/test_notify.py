"""Notifications: the run's exit handler posts exactly one message per run to a real HTTP receiver on
loopback, whether the run passed, did not pass, was skipped or failed, and the secret URL is in no log
or output. kfp.local (2.17) runs exit handlers (dsl.ExitHandler with PipelineTaskFinalStatus), so the
same task does it locally and on a cluster."""

from __future__ import annotations

import pytest
from support.cli import run_warmstart, tiny_run_config
from support.webhook import Receiver


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.shutdown()


def run(tmp_path, config, *settings):
    args = ["run", "--config", str(config), "--workdir", str(tmp_path / "work")]
    for setting in settings:
        args += [setting] if setting.startswith("--") else ["--set", setting]
    return run_warmstart(*args, timeout=400)


def assert_secret_nowhere(result, receiver, tmp_path):
    assert receiver.token not in result.stdout + result.stderr
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file():
            assert receiver.token.encode() not in path.read_bytes(), path


def test_one_message_for_each_way_a_run_ends(tmp_path, tiny_pretrained_model, receiver):
    config = tiny_run_config(tmp_path, tiny_pretrained_model)
    hook = f"notify.webhook_url={receiver.url}"

    passed = run(tmp_path, config, hook)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert len(receiver.messages) == 1
    message = receiver.messages[-1]
    facts = message["warmstart"]
    assert facts["status"] == "passed" and facts["verdict"] == "positive"
    assert facts["registered"]["version"] == 1 and facts["registered"]["champion"] is True
    assert facts["gain"]["ci_low"] <= facts["gain"]["estimate"] <= facts["gain"]["ci_high"]
    assert message["text"].startswith("warmstart tiny-reviews: passed: positive transfer, accuracy +")
    assert "registered version 1 (now champion)" in message["text"]
    assert message["blocks"][1]["fields"][0]["text"] == "*Status*\npassed"
    assert_secret_nowhere(passed, receiver, tmp_path)

    skipped = run(tmp_path, config, hook)
    assert skipped.returncode == 0 and len(receiver.messages) == 2
    facts = receiver.messages[-1]["warmstart"]
    assert facts["status"] == "skipped" and facts["champion"] == 1
    assert receiver.messages[-1]["text"].startswith("warmstart tiny-reviews: skipped: ")

    # Forced to train again, against a bar no model clears: judged, not registered.
    not_passed = run(tmp_path, config, hook, "gate.min_gain=0.9", "--force")
    assert not_passed.returncode == 0, not_passed.stdout + not_passed.stderr
    assert len(receiver.messages) == 3
    facts = receiver.messages[-1]["warmstart"]
    assert facts["status"] == "not passed" and "registered" not in facts
    assert "nothing registered" in receiver.messages[-1]["text"]

    failed = run(tmp_path, config, hook, f"data.source={tmp_path / 'missing.csv'}")
    assert failed.returncode == 1 and len(receiver.messages) == 4
    facts = receiver.messages[-1]["warmstart"]
    assert facts["status"] == "failed" and facts["failed"]["stage"] == "ingest"
    assert "missing.csv" in facts["failed"]["message"] and facts["failed"]["kind"] == "user"
    assert receiver.messages[-1]["text"].startswith("warmstart tiny-reviews: failed in ingest: ")
    for result in (skipped, not_passed, failed):
        assert_secret_nowhere(result, receiver, tmp_path)
    # The records the messages were made from are gone with them.
    assert not [
        p for p in (tmp_path / "work" / "registry" / ".checkpoints" / "runs").rglob("*") if p.is_file()
    ]
