"""Running a stage inside a KFP task: a user mistake ends the task with one line, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warmstart.errors import WarmstartError

# Set by `warmstart run` so the CLI can repeat a failed stage's message as its own last line.
ERROR_FILE_ENV = "WARMSTART_ERROR_FILE"


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
