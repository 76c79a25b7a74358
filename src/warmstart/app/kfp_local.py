"""What `warmstart run` changes in how kfp.local runs the pipeline's tasks on this machine.

- ProgressLog: every line of every task to the run's log file, the progress lines to the console.
- one_logger_for_all_tasks: kfp.local swaps the root logger's handlers per task, which two tasks at
  once undo for each other.
- TaskProcesses: the task processes are started here (kfp.local's contract: stream the output, return
  the exit code), so that each tells the run how it failed, and so that Ctrl-C or SIGTERM stops them
  all at once, starts nothing more and waits for no retry.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from warmstart.stage import ERROR_FILE_ENV, read_failure

# Lines of kfp.local's log worth showing a person: task starts and ends, why the run trains, training
# progress. A stage's own error line, and a skip, are left out: the CLI's last line says them.
PROGRESS_MARKERS = ("Executing task", "finished with status", "finetune[", "screen: ")
# ingest's line saying why the run trains; matched at the start, as kfp.local also echoes it inside
# its printout of ingest's outputs.
PROGRESS_STARTS = ("training: ", "training (forced): ")
# A stage's own error line: the CLI's last line says it (once, for the first failing stage).
QUIET_STARTS = ("error: ",)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ProgressLog(io.TextIOBase):
    """Stands in for stdout during a run: every line goes to the log file, progress lines to the console.

    Thread-safe by whole lines: kfp.local streams each task's output from a thread of its own, and two
    finetune tasks run side by side, so each thread's text is held until its line ends."""

    def __init__(self, log_file: Path, console: TextIO, verbose: bool) -> None:
        self._log = open(log_file, "w", encoding="utf-8")  # closed in close()
        self._console, self._verbose, self._muted = console, verbose, False
        self._lock, self._pending = threading.Lock(), threading.local()

    def write(self, text: str) -> int:
        pending = getattr(self._pending, "text", "") + text
        *lines, self._pending.text = pending.split("\n")
        if lines:
            with self._lock:
                for line in lines:
                    self._line(line)
                self._log.flush()
                self._console.flush()
        return len(text)

    def mute(self) -> None:
        """From now on, lines go to the log file only."""
        self._muted = True

    def _line(self, line: str) -> None:
        self._log.write(ANSI.sub("", line) + "\n")
        if self._muted:
            return
        if self._verbose:
            self._console.write(line + "\n")
            return
        plain = ANSI.sub("", line).strip()
        if plain.startswith(QUIET_STARTS):
            return
        if any(marker in plain for marker in PROGRESS_MARKERS) or plain.startswith(PROGRESS_STARTS):
            self._console.write(plain.split(" - INFO - ")[-1] + "\n")

    def flush(self) -> None:
        with self._lock:
            if not self._log.closed:
                self._log.flush()
            self._console.flush()

    def close(self) -> None:
        if getattr(self._pending, "text", ""):
            self.write("\n")
        self._log.close()
        super().close()


@contextlib.contextmanager
def one_logger_for_all_tasks() -> Iterator[None]:
    """kfp.local (2.17) gives each task the root logger's handlers afresh and puts the old ones back when
    the task ends. Two tasks at once (a ParallelFor's iterations) then undo each other: the one that ends
    first restores handlers the other still logs through, and its 'finished' line and outputs can be
    lost. For the block, the swap happens once, for the first task in, and is undone by the last out."""
    from kfp.local import logging_utils

    original, lock = getattr(logging_utils, "local_logger_context", None), threading.Lock()
    if original is None:  # a kfp.local that no longer swaps handlers per task: nothing to guard
        yield
        return
    state: dict[str, Any] = {"depth": 0, "context": None}

    @contextlib.contextmanager
    def shared() -> Iterator[None]:
        with lock:
            state["depth"] += 1
            if state["depth"] == 1:
                state["context"] = original()
                state["context"].__enter__()
        try:
            yield
        finally:
            with lock:
                state["depth"] -= 1
                if state["depth"] == 0:
                    state["context"].__exit__(None, None, None)

    logging_utils.local_logger_context = shared
    try:
        yield
    finally:
        logging_utils.local_logger_context = original


@dataclass
class Failure:
    """A task process that ended non-zero: its component, exit code, and the record it left (if any)."""

    stage: str
    code: int
    record: dict[str, str] | None
    ended: float


class TaskProcesses:
    """The task processes of one run, started in place of kfp.local's run_local_subprocess.

    Each process gets a file of its own to write how it failed (warmstart.stage.ERROR_FILE_ENV). A
    failure is kept by the task's command, so a retry that succeeds undoes it, and `first_failure` is
    the run's first failure that nothing undid. On SIGINT or SIGTERM (inside `installed`) the running
    processes get SIGTERM, and SIGKILL if they are still there after `grace` seconds (or at a second
    signal); no task starts after, and a retry's backoff ends at once.
    """

    def __init__(self, records: Path, grace: float = 10.0) -> None:
        self._records, self._grace = records, grace
        self._lock = threading.RLock()  # RLock: the signal handler may run while the main thread holds it
        self._running: dict[int, tuple[str, subprocess.Popen[str]]] = {}
        self._failures: dict[str, Failure] = {}
        self._numbers = itertools.count(1)
        self._stopping = threading.Event()
        self.started: list[str] = []  # the stages started, in order
        self.interrupted: signal.Signals | None = None
        self.during: list[str] = []  # the stages running when the run was interrupted
        self.on_stop: Any = None  # called at the first signal

    def run(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """Start one task process, stream its output to stdout, and return its exit code."""
        stage = _function_of(full_command)
        record = self._records / f"{next(self._numbers)}.json"
        env = {**os.environ, **(env_vars or {}), ERROR_FILE_ENV: str(record)}
        with self._lock:
            if self._stopping.is_set():
                return INTERRUPTED_CODE
            process = subprocess.Popen(
                full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
            )
            self._running[process.pid] = (stage, process)
            self.started.append(stage)
        with process:
            for line in iter(process.stdout.readline, ""):
                print(line, end="")
            print("\n")  # as kfp.local does: a blank line between one task's output and the next
            code = process.wait()
        with self._lock:
            del self._running[process.pid]
            key = json.dumps(full_command)
            if code == 0:
                self._failures.pop(key, None)
            elif key not in self._failures:
                self._failures[key] = Failure(stage, code, read_failure(record), time.monotonic())
        record.unlink(missing_ok=True)
        return code

    def first_failure(self) -> Failure | None:
        with self._lock:
            return min(self._failures.values(), key=lambda failure: failure.ended, default=None)

    def stop(self, signum: int, frame: Any = None) -> None:
        """The signal handler: stop every task process; at a second signal, kill them."""
        with self._lock:
            running = [process for _, process in self._running.values()]
            if self._stopping.is_set():
                for process in running:
                    process.kill()
                return
            self.interrupted = signal.Signals(signum)
            self.during = sorted({stage for stage, _ in self._running.values()}) or self.started[-1:]
            self._stopping.set()
            for process in running:
                process.terminate()
        if self.on_stop:
            self.on_stop()
        threading.Thread(target=self._kill_after_grace, args=(running,), daemon=True).start()

    def _kill_after_grace(self, processes: list[subprocess.Popen[str]]) -> None:
        deadline = time.monotonic() + self._grace
        for process in processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """kfp.local starts its task processes through `run`, its retries wait no longer than until an
        interrupt, and SIGINT and SIGTERM stop the run, for the block (signals only when called from
        the main thread, the only one that can receive them)."""
        from kfp.local import subprocess_task_handler
        from kfp.local.orchestrator import task_executor

        self._records.mkdir(parents=True, exist_ok=True)
        original_run, original_time = subprocess_task_handler.run_local_subprocess, task_executor.time
        subprocess_task_handler.run_local_subprocess = self.run
        task_executor.time = _Clock(self._stopping)
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {
                signum: signal.signal(signum, self.stop) for signum in (signal.SIGINT, signal.SIGTERM)
            }
        try:
            yield
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            subprocess_task_handler.run_local_subprocess, task_executor.time = original_run, original_time
            for leftover in self._records.glob("*.json"):
                leftover.unlink()
            with contextlib.suppress(OSError):
                self._records.rmdir()


# What a task that was never started because the run is stopping returns (128 + SIGINT, as a shell says).
INTERRUPTED_CODE = 130


class _Clock:
    """The time module, but `sleep` (kfp.local's wait before a retry) ends when the run is stopping."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _function_of(full_command: list[str]) -> str:
    """The component a task runs: kfp's executor takes it as --function_to_execute NAME."""
    for flag, value in itertools.pairwise(full_command):
        if flag == "--function_to_execute":
            return value
    return "a task"
