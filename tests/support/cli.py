"""Running the `warmstart` command as a user does, in a new process."""

from __future__ import annotations

import subprocess
import sys


def run_warmstart(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    """The `warmstart` command in a new process, as a user runs it; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "warmstart", *args], capture_output=True, text=True, timeout=timeout
    )
