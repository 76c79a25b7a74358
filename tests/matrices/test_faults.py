"""Faults while writing: a disk that fills up under a registry or a checkpoint directory. Each gives
one clear StorageError, leaves what was written before intact and leaves nothing half-written that
could later be read as whole.

The small disk is a real tmpfs of a few megabytes (mounting needs root, as CI has; skipped otherwise).
"""

import subprocess

import pytest
from support.registry import make_run_outputs

from warmstart.config import Config
from warmstart.finetune.checkpoints import Checkpoints
from warmstart.register.publish import register
from warmstart.registry import Registry
from warmstart.storage import StorageError, sha256_file


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB filesystem: one tiny model version fits, a second does not."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_under_the_registry_keeps_every_version_whole(small_disk, tmp_path, tiny_random_model):
    cfg = Config.from_dict({"registry": {"uri": str(small_disk / "registry"), "name": "reviews"}})
    first = make_run_outputs(tmp_path / "one", tiny_random_model, salt=1)
    register(cfg, **first)
    with pytest.raises(StorageError) as err:
        register(cfg, **make_run_outputs(tmp_path / "two", tiny_random_model, salt=2))
    message = str(err.value)
    assert "\n" not in message and "No space left on device" in message and str(small_disk) in message
    registry = Registry(cfg.registry.uri)
    assert registry.versions("reviews") == [1]
    assert registry.alias("reviews", "champion") == 1
    kept = registry.download_version("reviews", 1, tmp_path / "v1")
    assert sha256_file(kept / "model.safetensors") == sha256_file(first["model_dir"] / "model.safetensors")
    # No file under the registry was left cut short where a reader would take it as whole.
    assert not [
        p
        for p in (small_disk / "registry").rglob("*")
        if p.is_file() and p.stat().st_size == 0 and not p.name.startswith(".")
    ]


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(small_disk, tmp_path):
    checkpoints = Checkpoints(str(small_disk / "ckpt"), "pretrained-0123", keep=2)
    step_dir = tmp_path / "checkpoint"
    step_dir.mkdir()
    (step_dir / "model.safetensors").write_bytes(b"\x01" * 2_500_000)
    (step_dir / "trainer_state.json").write_text('{"global_step": 10}')
    checkpoints.save(step_dir, 10)
    (step_dir / "model.safetensors").write_bytes(b"\x02" * 4_000_000)  # does not fit beside step 10
    with pytest.raises(StorageError, match="No space left on device"):
        checkpoints.save(step_dir, 20)
    assert checkpoints.complete() == [10]
    assert [p.name for p in (small_disk / "ckpt" / "pretrained-0123").iterdir()] == ["step-000000010"]
    restored = checkpoints.restore(tmp_path / "restore")
    assert (restored / "model.safetensors").read_bytes() == b"\x01" * 2_500_000


def test_an_s3_server_restarting_during_a_registration_is_retried(tmp_path, tiny_random_model, monkeypatch):
    """The server goes down as a version's first file uploads and is back a second later: the
    retries (botocore's standard mode, 8 attempts with backoff) carry the registration through."""
    import threading

    from support.s3 import S3_BUCKET, private_s3

    from warmstart.storage import S3Store

    restart = None
    # AWS_MAX_ATTEMPTS unset: warmstart's own default retry budget is what is tested.
    with private_s3(tmp_path / "s3", monkeypatch, AWS_MAX_ATTEMPTS=None) as server:
        cfg = Config.from_dict({"registry": {"uri": f"s3://{S3_BUCKET}/restart", "name": "reviews"}})
        register(cfg, **make_run_outputs(tmp_path / "a", tiny_random_model, 1))

        upload = S3Store.put_file

        def restart_then_upload(self, key, path):
            nonlocal restart
            if restart is None:
                server.stop()
                restart = threading.Timer(1.0, server.start)
                restart.start()
            return upload(self, key, path)

        monkeypatch.setattr(S3Store, "put_file", restart_then_upload)
        second = make_run_outputs(tmp_path / "b", tiny_random_model, 2)
        try:
            assert register(cfg, **second)["version"] == 2
        finally:
            if restart is not None:
                restart.join()
        assert restart is not None
        registry = Registry(cfg.registry.uri)
        assert registry.versions("reviews") == [1, 2]
        assert registry.alias("reviews", "champion") == 2
        kept = registry.download_version("reviews", 2, tmp_path / "v2")
        assert sha256_file(kept / "model.safetensors") == sha256_file(
            second["model_dir"] / "model.safetensors"
        )


def test_a_filesystem_without_hard_links_still_creates_objects_once(tmp_path, monkeypatch):
    """Some mounts (FUSE, SMB) refuse hard links: create falls back to an exclusive open."""
    import errno
    import os

    from warmstart.storage import LocalStore

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    store = LocalStore(str(tmp_path / "store"))
    monkeypatch.setattr(os, "link", no_links)
    assert store.create("a/claim.json", b"first")
    assert not store.create("a/claim.json", b"second")
    assert store.read("a/claim.json")[0] == b"first"
    assert [p.name for p in (tmp_path / "store" / "a").iterdir()] == ["claim.json"]
