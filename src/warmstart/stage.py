"""Running a stage inside a KFP task: a user mistake ends the task with one line, not a traceback; a
bug ends it with one line too, the traceback kept in the task's log; an interrupt (Ctrl-C, or the
SIGTERM of a pod eviction) ends it at once. Under `warmstart run`, each ending is also written where
the CLI reads it, so that its last line is the first failing stage's own sentence."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from warmstart.errors import WarmstartError

# Set by `warmstart run` for each task process (and by a finetune for its torchrun workers): where the
# task writes how it failed, as JSON {stage, message, kind}; kind is user, bug or interrupted.
ERROR_FILE_ENV = "WARMSTART_ERROR_FILE"
# Set by `warmstart run`: ingest, then gate or skipped, add how the run went to this JSON file.
OUTCOME_FILE_ENV = "WARMSTART_OUTCOME_FILE"
# Set by `warmstart run` when it trains two finetune tasks at once on a CPU: each task's share of the
# cores (torch's intra-op threads), so that the two do not fight over them.
CPU_THREADS_ENV = "WARMSTART_CPU_THREADS"

# Exit codes of an interrupted task and of `warmstart run`: 128 + the signal, as a shell reports it.
INTERRUPT_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(BaseException):
    """SIGTERM (a pod eviction, `warmstart run` stopping its tasks) as an exception, so that what a
    stage holds open is cleaned up on the way out. A BaseException, like KeyboardInterrupt: no
    `except Exception` in a library catches it."""


def raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def user_errors(stage: str, record: Any = None) -> Iterator[None]:
    """Run a stage's work: a WarmstartError is its one-line message, anything else a bug said in one
    line (with the traceback above it, in the task's log), an interrupt a quick exit; each leaves a
    record for `warmstart run` (see ERROR_FILE_ENV) and in `record` (a warmstart.run_record.RunRecord,
    for the run's exit handler), where success clears an earlier attempt's failure."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_interrupted) if in_main else None
    try:
        yield
    except WarmstartError as err:
        _end(stage, str(err), "user", record)
    except (KeyboardInterrupt, Interrupted) as err:
        signum = signal.SIGTERM if isinstance(err, Interrupted) else signal.SIGINT
        print(f"{stage}: interrupted ({signal.Signals(signum).name})", file=sys.stderr, flush=True)
        _record(stage, "interrupted", "interrupted", record)
        raise SystemExit(INTERRUPT_EXIT[signum]) from None
    except Exception as err:
        memory = _out_of_memory(err)
        if not memory:
            traceback.print_exc()
        _end(
            stage,
            memory or f"{type(err).__name__}: {err}".splitlines()[0][:500],
            "user" if memory else "bug",
            record,
        )
    else:
        if record is not None:
            _keep_going(lambda: record.succeeded(stage))
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _keep_going(write: Any) -> None:
    """A record that cannot be written is a warning: the stage's own ending matters more."""
    try:
        write()
    except Exception as err:
        print(f"warning: the run's record could not be written: {err}", file=sys.stderr, flush=True)


def _out_of_memory(err: Exception) -> str | None:
    """What to do about running out of memory, which is the size of the run, not a bug."""
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch
        where = "GPU memory"
    elif isinstance(err, MemoryError):
        where = "memory"
    else:
        return None
    return (
        f"out of {where}; lower train.batch_size (and raise train.gradient_accumulation_steps to keep the "
        f"effective batch) or model.max_length"
    )


def _end(stage: str, message: str, kind: str, record: Any = None) -> NoReturn:
    if kind == "bug":
        print(f"error: {stage}: a bug in warmstart: {message}", file=sys.stderr, flush=True)
    else:
        print(f"error: {stage}: {message}", file=sys.stderr, flush=True)
    _record(stage, message, kind, record)
    raise SystemExit(1)


def _record(stage: str, message: str, kind: str, record: Any = None) -> None:
    if os.environ.get(ERROR_FILE_ENV):
        found = {"stage": stage, "message": message, "kind": kind}
        Path(os.environ[ERROR_FILE_ENV]).write_text(json.dumps(found), encoding="utf-8")
    if record is not None:
        _keep_going(lambda: record.failed(stage, message, kind))


def read_failure(path: Path) -> dict[str, str] | None:
    """The record a failed stage left at `path` (see user_errors), or None when it left none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"stage", "message", "kind"} <= set(record) else None


def report_outcome(stage: str, details: dict, record: Any = None, summary: dict | None = None) -> None:
    """Add `stage`'s part of how the run went for `warmstart run` (the file is a no-op on a cluster,
    where nobody set it; the stages that write it run one after another), and `summary` (default:
    `details`) to the run's `record` for its exit handler."""
    if record is not None:
        _keep_going(lambda: record.write(stage, details if summary is None else summary))
    if not os.environ.get(OUTCOME_FILE_ENV):
        return
    path = Path(os.environ[OUTCOME_FILE_ENV])
    outcome = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps({**outcome, stage: details}), encoding="utf-8")
