"""`warmstart run` on this machine: the console and the log of tasks that print at once, the two arms
side by side on a CPU, and kfp.local's per-task logger kept for all tasks."""


def test_the_console_shows_why_a_run_trains_once(tmp_path):
    """kfp.local echoes ingest's stdout and then its outputs, which repeat the status: only the
    first, and the task lines, reach the console; the log file keeps everything."""
    import io

    from warmstart.app.local_run import ProgressLog

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

    from warmstart.app.local_run import ProgressLog

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

    from warmstart.app.local_run import one_logger_for_all_tasks

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
