"""`warmstart run` on this machine: the console and the log of tasks that print at once, the two arms
side by side on a CPU, kfp.local's per-task logger kept for all tasks, the task processes it starts
(failures, retries, a stop) and the last line of a failed run."""

import sys


def test_the_console_shows_why_a_run_trains_once(tmp_path):
    """kfp.local echoes ingest's stdout and then its outputs, which repeat the status: only the
    first, and the task lines, reach the console; the log file keeps everything."""
    import io

    from warmstart.app.kfp_local import ProgressLog

    console = io.StringIO()
    progress = ProgressLog(tmp_path / "run.log", console, verbose=False)
    status = "training (forced): data unchanged since version 1"
    progress.write(
        "13:52:38.1 - INFO - Executing task \x1b[96m'ingest'\x1b[0m\n"
        f"    {status}\n"
        f"    status: {{'train': True, 'status': '{status}', 'champion': 1.0}}\n"
        f"                         metadata={{'train': True, 'status': '{status}'}} )\n"
        "13:52:40.2 - INFO - Task 'ingest' finished with status SUCCESS\n"
    )
    progress.close()
    assert console.getvalue().splitlines() == [
        "Executing task 'ingest'",
        status,
        "Task 'ingest' finished with status SUCCESS",
    ]
    assert (tmp_path / "run.log").read_text().count(status) == 3


def test_the_log_keeps_whole_lines_when_two_tasks_print_at_once(tmp_path):
    """Two finetune tasks train side by side under `warmstart run`, and kfp.local streams each from a
    thread of its own, a line often in two writes (print's text, then its end). Here both threads have
    written their text before either writes its end, every time: no line may be torn."""
    import io
    import threading

    from warmstart.app.kfp_local import ProgressLog

    console = io.StringIO()
    progress = ProgressLog(tmp_path / "run.log", console, verbose=False)
    step_together = threading.Barrier(2)

    def task(arm: str) -> None:
        for step in range(50):
            progress.write(f"finetune[{arm} seed 0 lr 5e-05] step {step}/50")
            step_together.wait()  # both texts pending, neither line ended
            progress.write("\n")
            step_together.wait()

    threads = [threading.Thread(target=task, args=(arm,)) for arm in ("pretrained", "scratch")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress.close()
    for text in (console.getvalue(), (tmp_path / "run.log").read_text()):
        lines = text.splitlines()
        assert len(lines) == 100
        for arm in ("pretrained", "scratch"):
            mine = [line for line in lines if line.startswith(f"finetune[{arm} ")]
            assert mine == [f"finetune[{arm} seed 0 lr 5e-05] step {step}/50" for step in range(50)]


def test_warmstart_run_trains_the_two_arms_side_by_side_on_a_cpu(monkeypatch):
    """On a CPU the two arms of a run train at once, each on half the cores; with a GPU, one at a time."""
    import torch

    from warmstart.app import local_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(local_run.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert local_run.side_by_side() == (2, 4)
    monkeypatch.setattr(local_run.os, "sched_getaffinity", lambda pid: {0})
    assert local_run.side_by_side() == (1, 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(local_run.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert local_run.side_by_side() == (1, 0)


def test_two_tasks_at_once_keep_one_logger_until_the_last_ends():
    """kfp.local gives each task the root logger's handlers afresh and restores the old ones when it
    ends; under warmstart run the first task to end must not take the handler the other logs through."""
    import logging

    from kfp.local import logging_utils

    from warmstart.app.kfp_local import one_logger_for_all_tasks

    root = logging.getLogger()
    before = root.handlers[:]
    with one_logger_for_all_tasks():
        first, second = logging_utils.local_logger_context(), logging_utils.local_logger_context()
        first.__enter__()
        during = root.handlers[:]
        second.__enter__()
        first.__exit__(None, None, None)
        assert root.handlers == during and root.level == logging.INFO, "the second task still logs"
        second.__exit__(None, None, None)
        assert root.handlers == before
    assert logging_utils.local_logger_context.__name__ == "local_logger_context"


def task_command(tmp_path, body: str, stage: str = "finetune") -> list[str]:
    """A task process as kfp.local starts one: a command that names its component."""
    script = tmp_path / f"{stage}-{abs(hash(body))}.py"
    script.write_text(body)
    return [sys.executable, str(script), "--function_to_execute", stage]


def test_a_failure_is_kept_until_a_retry_of_the_same_task_succeeds(tmp_path, capsys):
    from warmstart.app.kfp_local import TaskProcesses

    tasks = TaskProcesses(tmp_path / "records")
    with tasks.installed():
        # Fails the first time (leaving its record, as warmstart.stage does), succeeds the second.
        flaky = task_command(
            tmp_path,
            "import json, os, pathlib, sys\n"
            f"marker = pathlib.Path({str(tmp_path / 'ran')!r})\n"
            "if not marker.exists():\n"
            "    marker.touch()\n"
            "    pathlib.Path(os.environ['WARMSTART_ERROR_FILE']).write_text(json.dumps("
            "{'stage': 'finetune[scratch]', 'message': 'S3 hiccup', 'kind': 'user'}))\n"
            "    sys.exit(1)\n"
            "print('trained')\n",
        )
        assert tasks.run(flaky) == 1
        assert tasks.first_failure().record["message"] == "S3 hiccup"
        assert tasks.run(flaky) == 0
        assert tasks.first_failure() is None
        broken = task_command(tmp_path, "import sys; sys.exit(3)", stage="gate")
        assert tasks.run(broken) == 3
    failure = tasks.first_failure()
    assert (failure.stage, failure.code, failure.record) == ("gate", 3, None)
    assert "trained" in capsys.readouterr().out
    assert not (tmp_path / "records").exists()


def test_a_stop_ends_running_tasks_starts_no_more_and_cuts_a_retry_wait_short(tmp_path):
    import signal
    import threading
    import time

    from kfp.local.orchestrator import task_executor

    from warmstart.app.kfp_local import INTERRUPTED_CODE, TaskProcesses

    tasks = TaskProcesses(tmp_path / "records", grace=5)
    codes = []
    with tasks.installed():
        worker = threading.Thread(
            target=lambda: codes.append(tasks.run(task_command(tmp_path, "import time; time.sleep(120)")))
        )
        worker.start()
        while not tasks.started:
            time.sleep(0.01)
        time.sleep(0.3)
        started = time.monotonic()
        tasks.stop(signal.SIGTERM)
        worker.join(30)
        task_executor.time.sleep(60)  # kfp.local's wait before a retry: over at once
        assert time.monotonic() - started < 10
        assert codes == [-signal.SIGTERM]
        assert tasks.interrupted == signal.SIGTERM and tasks.during == ["finetune"]
        assert tasks.run(task_command(tmp_path, "raise SystemExit(0)", stage="gate")) == INTERRUPTED_CODE
        assert tasks.started == ["finetune"]
    assert task_executor.time is time


def test_the_last_line_of_a_failed_run_is_the_first_failing_stage_s_own(tmp_path):
    from warmstart.app.kfp_local import Failure
    from warmstart.app.local_run import failure_line

    log, err = (
        tmp_path / "run.log",
        RuntimeError("\x1b[91mPipeline failed. Inner task failed: 'finetune'\x1b[0m"),
    )
    user = {"stage": "ingest", "message": "registry.uri '/x' is a file", "kind": "user"}
    assert failure_line(Failure("ingest", 1, user, 0.0), err, log) == "ingest: registry.uri '/x' is a file"
    bug = {"stage": "gate", "message": "KeyError: 'gain'", "kind": "bug"}
    assert failure_line(Failure("gate", 1, bug, 0.0), err, log) == (
        f"gate: a bug in warmstart: KeyError: 'gain'; the traceback is in the full log, {log}; please report it"
    )
    assert failure_line(Failure("finetune", -9, None, 0.0), err, log).startswith(
        "finetune was killed by SIGKILL"
    )
    assert failure_line(Failure("register", 2, None, 0.0), err, log).startswith(
        "register ended with exit code 2 without saying why, which is a bug in warmstart"
    )
    outside = failure_line(None, err, log)
    assert "\x1b" not in outside and outside.startswith(
        "the pipeline failed outside its tasks (Pipeline failed."
    )


def test_a_stage_that_runs_out_of_memory_says_what_to_change_not_that_it_is_a_bug(tmp_path, monkeypatch):
    import json

    import pytest

    from warmstart.stage import ERROR_FILE_ENV, user_errors

    monkeypatch.setenv(ERROR_FILE_ENV, str(tmp_path / "record.json"))
    with pytest.raises(SystemExit) as ended, user_errors("finetune[scratch]"):
        raise MemoryError()
    assert ended.value.code == 1
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["kind"] == "user" and record["stage"] == "finetune[scratch]"
    assert record["message"].startswith("out of memory; lower train.batch_size")
