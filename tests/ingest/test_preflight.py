"""ingest's preflight: each location and setting the run depends on is checked before anything is read
or trained, and a problem is one line that starts with the setting to change."""

import socket
import subprocess
import sys

import pytest
from support.cli import unprivileged
from support.s3 import S3_BUCKET

from warmstart.config import Config
from warmstart.errors import WarmstartError
from warmstart.ingest.preflight import preflight
from warmstart.storage import check_writable


def config(tmp_path, source, **sections) -> Config:
    values = {"model": {"source": str(source)}, "registry": {"uri": str(tmp_path / "registry")}}
    for section, settings in sections.items():
        values[section] = {**values.get(section, {}), **settings}
    return Config.from_dict(values)


def refused(cfg: Config) -> str:
    with pytest.raises(WarmstartError) as err:
        preflight(cfg)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_run_whose_locations_are_fine_passes_and_leaves_nothing_behind(tmp_path, tiny_random_model):
    cfg = config(tmp_path, tiny_random_model, registry={"uri": str(tmp_path / "new" / "deeper" / "registry")})
    preflight(cfg)
    assert not (tmp_path / "new").exists(), "the folders made for the probe are removed with it"
    (tmp_path / "registry").mkdir()
    preflight(config(tmp_path, tiny_random_model))
    assert list((tmp_path / "registry").iterdir()) == []


def test_a_registry_or_checkpoint_root_that_is_a_file_is_named(tmp_path, tiny_random_model):
    (tmp_path / "file").write_text("not a folder")
    message = refused(config(tmp_path, tiny_random_model, registry={"uri": str(tmp_path / "file")}))
    assert message.startswith("registry.uri '") and "is a file, not a directory" in message
    message = refused(
        config(tmp_path, tiny_random_model, placement={"checkpoint_uri": str(tmp_path / "file" / "ckpt")})
    )
    assert message.startswith("placement.checkpoint_uri '")
    assert f"lies under {tmp_path / 'file'}, which is a file" in message
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / ".checkpoints").write_text("in the way")
    message = refused(config(tmp_path, tiny_random_model))
    assert message.startswith("registry.uri (its .checkpoints folder") and "is a file" in message


def test_a_directory_the_run_cannot_write_is_named_with_what_to_do(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code = (
        "import sys\nfrom warmstart.storage import check_writable\n"
        "try:\n    check_writable(sys.argv[1], 'registry.uri')\n"
        "except Exception as err:\n    print(err)\n"
    )
    command = unprivileged([sys.executable, "-c", code, str(locked / "registry")])
    if command is None:
        pytest.skip("running as root without user namespaces: no directory is unwritable")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"registry.uri '{locked / 'registry'}': cannot write in {locked}")
    assert "permission denied" in result.stdout and "make it writable" in result.stdout
    assert list(locked.iterdir()) == []


def test_s3_a_missing_bucket_wrong_credentials_and_a_dead_endpoint_are_named(s3_prefix, monkeypatch):
    check_writable(s3_prefix, "registry.uri")  # a real write and delete of a probe object
    from warmstart.storage import list_s3, s3_client

    assert list_s3(s3_prefix) == []

    with pytest.raises(
        WarmstartError,
        match=r"^registry.uri 's3://no-such-bucket-x/r': the bucket 'no-such-bucket-x' does not exist",
    ):
        check_writable("s3://no-such-bucket-x/r", "registry.uri")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-never-shown")
    s3_client.cache_clear()
    with pytest.raises(WarmstartError) as err:
        check_writable(s3_prefix, "placement.checkpoint_uri")
    assert str(err.value).startswith("placement.checkpoint_uri: cannot write to")
    assert "access denied" in str(err.value) and "wrong-secret" not in str(err.value)

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    s3_client.cache_clear()
    with pytest.raises(WarmstartError, match="does not answer; check storage.endpoint_url"):
        check_writable(f"s3://{S3_BUCKET}/r", "registry.uri")


def test_a_model_source_that_cannot_be_fetched_is_named(tmp_path, tiny_random_model, s3_prefix, monkeypatch):
    message = refused(config(tmp_path, tmp_path / "no-model"))
    assert message.startswith("model.source '") and "does not exist" in message
    (tmp_path / "empty").mkdir()
    assert "no config.json there" in refused(config(tmp_path, tmp_path / "empty"))
    message = refused(
        config(
            tmp_path, tiny_random_model, model={"candidates": [str(tiny_random_model), "pkg://no_such_pkg/m"]}
        )
    )
    assert message.startswith("model.candidates[1] 'pkg://no_such_pkg/m'") and "not installed" in message
    message = refused(config(tmp_path, f"{s3_prefix}/models/absent"))
    assert message.startswith("model.source: cannot read") and "config.json" in message
    assert "has no champion" in refused(config(tmp_path, "registry://reviews@champion"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    message = refused(config(tmp_path, "hf://someone/absent-model"))
    assert "not in the local Hugging Face cache" in message and "HF_HUB_OFFLINE" in message


def test_a_multi_node_run_needs_shared_checkpoints_before_anything_runs(tmp_path, tiny_random_model):
    message = refused(config(tmp_path, tiny_random_model, train={"num_nodes": 2}))
    assert "train.num_nodes=2 needs storage every node reaches" in message
