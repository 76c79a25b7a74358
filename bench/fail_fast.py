"""How fast a mistaken `warmstart run` fails, and how fast Ctrl-C stops one, on the demo as a user runs it.

Each case is the README's demo command (`warmstart run`, the real all-MiniLM-L6-v2, the SST-2 sample)
with one location set wrong: the registry or the checkpoint root a file, a registry directory this
user cannot write (run in a user namespace when this is root, where root's override of permissions
does not reach root's own files), an S3 bucket that does not exist (on a SeaweedFS server started for
it). Each records the wall time of the whole command (Python start and pipeline compile included),
the exit code, the last line, and whether any finetune task started.

Then Ctrl-C: the demo is started in a session of its own, SIGINT goes to its process group two
seconds after the first training line, and the time to exit is recorded; then the rerun, which
resumes from the checkpoints (placement.checkpoint_steps=10 so there is one), runs to its verdict.

Usage: python bench/fail_fast.py   (writes bench/results/fail_fast.json)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "fail_fast.json"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def warmstart(*args: str, prefix: tuple[str, ...] = (), env: dict | None = None) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "warmstart", "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "exit_code": result.returncode,
        "last_line": lines[-1] if lines else "",
        "stderr_lines": len(lines),
        "finetune_started": "Executing task 'finetune'" in result.stdout,
    }


def mistakes(work: Path) -> dict[str, dict]:
    from support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server

    (work / "a-file").write_text("not a folder")
    locked = work / "locked"
    locked.mkdir(mode=0o555)
    cases = {
        "registry.uri is a file": warmstart(
            "--workdir", str(work / "w1"), "--set", f"registry.uri={work / 'a-file'}"
        ),
        "placement.checkpoint_uri under a file": warmstart(
            "--workdir", str(work / "w2"), "--set", f"placement.checkpoint_uri={work / 'a-file' / 'ckpt'}"
        ),
    }
    prefix = ("unshare", "--user") if os.getuid() == 0 and shutil.which("unshare") else ()
    cases["registry.uri not writable"] = warmstart(
        "--workdir", str(work / "w3"), "--set", f"registry.uri={locked / 'registry'}", prefix=prefix
    )
    server = S3Server(work / "s3")
    try:
        env = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        cases["registry.uri in an S3 bucket that does not exist"] = warmstart(
            "--workdir", str(work / "w4"), "--set", "registry.uri=s3://no-such-bucket/registry", env=env
        )
    finally:
        server.stop()
    return cases


def interrupt(work: Path) -> dict:
    args = ["--workdir", str(work / "w5"), "--set", "placement.checkpoint_steps=10"]
    process = subprocess.Popen(
        [sys.executable, "-m", "warmstart", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    logs = work / "w5" / "runs"
    while not any("finetune[" in log.read_text() for log in logs.glob("*.log")) if logs.is_dir() else True:
        time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(process.communicate())
    time.sleep(2)
    # Until a first checkpoint, so the rerun has one to resume from (step 10 of 87 per arm).
    while not list((work / "w5" / "registry" / ".checkpoints").rglob("complete.json")):
        time.sleep(0.2)
    signalled = time.perf_counter()
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    stopped = round(time.perf_counter() - signalled, 1)
    leftover = subprocess.run(["pgrep", "-f", str(logs)], capture_output=True, text=True).stdout.split()
    registered = bool(list((work / "w5" / "registry").rglob("metadata.json")))
    started = time.perf_counter()
    rerun = subprocess.run(
        [sys.executable, "-m", "warmstart", "run", *args], capture_output=True, text=True, timeout=900
    )
    return {
        "seconds_from_sigint_to_exit": stopped,
        "exit_code": process.returncode,
        "last_line": stderr.strip().splitlines()[-1],
        "task_processes_left": len(leftover),
        "registered_before_rerun": registered,
        "rerun": {
            "seconds": round(time.perf_counter() - started, 1),
            "exit_code": rerun.returncode,
            "resumed": [line.strip() for line in rerun.stdout.splitlines() if "resuming from step" in line],
            "verdict": next(
                (line for line in rerun.stdout.splitlines() if line.startswith("warmstart: ")), ""
            ),
            "registered": next((line for line in rerun.stdout.splitlines() if "registered" in line), ""),
        },
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="warmstart-fail-fast-") as scratch:
        work = Path(scratch)
        result = {"machine": describe(), "mistakes": mistakes(work), "ctrl_c": interrupt(work)}
    write_result(RESULTS, result)
    for name, case in result["mistakes"].items():
        print(f"{name}: {case['seconds']} s, exit {case['exit_code']}: {case['last_line']}")
    print(f"ctrl-c: {result['ctrl_c']}")


if __name__ == "__main__":
    main()
