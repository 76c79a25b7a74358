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


def test_the_run_record_is_kept_only_for_notify_and_a_retry_that_succeeds_clears_its_failure(tmp_path):
    from warmstart.config import Config
    from warmstart.run_record import run_record

    registry = {"uri": str(tmp_path / "registry")}
    assert run_record(Config.from_dict({"registry": registry}), "job-1") is None, "no notify: nothing kept"
    cfg = Config.from_dict({"registry": registry, "notify": {"webhook_url": "env:HOOK"}})
    assert run_record(cfg, "") is None
    record = run_record(cfg, "job-1", task="finetune-seed0")
    record.write("ingest", {"train": True})
    record.failed("finetune[pretrained]", "out of memory", "user")
    run_record(cfg, "job-1", task="finetune-seed1").failed("finetune[pretrained]", "later", "user")
    assert record.first_failure()["message"] == "out of memory"
    record.succeeded("finetune[pretrained]")  # seed 0's retry succeeded; seed 1's failure stays
    assert record.first_failure()["message"] == "later"
    assert set(record.read()) == {"ingest", "failed-finetune-seed1"}
    record.clear()
    assert record.read() == {}


def test_an_interrupt_with_only_the_run_record_on_disk_says_start_again(tmp_path):
    """The run's record lives beside the checkpoints; it is not a checkpoint to resume from."""
    from types import SimpleNamespace

    from warmstart.app.local_run import interrupted_line
    from warmstart.config import Config
    from warmstart.run_record import run_record

    cfg = Config.from_dict(
        {"registry": {"uri": str(tmp_path / "registry")}, "notify": {"webhook_url": "env:HOOK"}}
    )
    run_record(cfg, "job-1").write("ingest", {"train": True})
    tasks = SimpleNamespace(during=["finetune"], started={"ingest", "finetune"})
    assert interrupted_line(cfg, tasks, "run-1").endswith(
        "rerun to start again (training had written no checkpoint yet)"
    )
