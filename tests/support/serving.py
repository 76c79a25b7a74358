"""`warmstart serve` started for real on loopback, and requests to it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

WARMSTART = str(Path(sys.executable).parent / "warmstart")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body, timeout: float = 60) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def get(url: str, timeout: float = 10) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@contextlib.contextmanager
def serving(*args: str, log: Path, ready_path: str = "/v2/health/ready", timeout: float = 120):
    """Run `warmstart serve ARGS --host 127.0.0.1 --port P` until it is ready; yields its base URL."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [WARMSTART, "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"warmstart serve exited {process.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                if get(url + ready_path, timeout=2) == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"warmstart serve was not ready in {timeout} s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def trained_and_registered(cfg, work: Path, seed: int | None = None, out: Path | None = None):
    """Fine-tune the pretrained arm for real (OUT/model, OUT/evaluation; OUT defaults to WORK, which
    holds the data and base model) and register it as if the gate had passed it; returns OUT and
    register's record."""
    from support.registry import register_trained
    from support.stages import stage_inputs, with_train

    from warmstart.finetune.launch import finetune

    if not (work / "data").exists():
        stage_inputs(cfg, work)
    if seed is not None:
        cfg = with_train(cfg, seed=seed)
    out = out or work
    finetune(cfg, "pretrained", work / "data", work / "base", out / "model", out / "evaluation")
    record = register_trained(cfg, out / "model", work / "data", work / "base", out / "gate")
    return out, record
