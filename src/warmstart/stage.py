"""Running a stage inside a KFP task: a user mistake ends the task with one line, not a traceback;
and, under `warmstart run`, telling the CLI how the run ended."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warmstart.errors import WarmstartError

# Set by `warmstart run` so the CLI can repeat a failed stage's message as its own last line.
ERROR_FILE_ENV = "WARMSTART_ERROR_FILE"
# Set by `warmstart run`: ingest, then gate or skipped, add how the run went to this JSON file.
OUTCOME_FILE_ENV = "WARMSTART_OUTCOME_FILE"
# Set by `warmstart run` when it trains two finetune tasks at once on a CPU: each task's share of the
# cores (torch's intra-op threads), so that the two do not fight over them.
CPU_THREADS_ENV = "WARMSTART_CPU_THREADS"


@contextmanager
def user_errors(stage: str) -> Iterator[None]:
    try:
        yield
    except WarmstartError as err:
        message = f"{stage}: {err}"
        print(f"error: {message}", file=sys.stderr, flush=True)
        if os.environ.get(ERROR_FILE_ENV):
            Path(os.environ[ERROR_FILE_ENV]).write_text(message, encoding="utf-8")
        raise SystemExit(1) from None


def report_outcome(stage: str, details: dict) -> None:
    """Add `stage`'s part of how the run went for `warmstart run` (a no-op on a cluster, where
    nobody set the file). The stages that write it run one after another."""
    if not os.environ.get(OUTCOME_FILE_ENV):
        return
    path = Path(os.environ[OUTCOME_FILE_ENV])
    outcome = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    path.write_text(json.dumps({**outcome, stage: details}), encoding="utf-8")
