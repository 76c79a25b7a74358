"""Storage against a real S3 server (SeaweedFS on loopback) and a real HTTP server."""

import http.server
import shutil
import threading

import pytest
from support.cli import run_warmstart
from support.data import synthetic_rows, write_csv
from support.s3 import S3_SECRET_KEY

from warmstart.config import DataConfig, ModelConfig
from warmstart.errors import DataError, ModelError
from warmstart.fetch_model.sources import fetch_model
from warmstart.ingest.dataset import ingest
from warmstart.storage import StorageError, fetch_file, s3_client, split_s3, upload_s3_file


def data_config(source: str) -> DataConfig:
    return DataConfig(source=source, test_source="", text_column="text", label_column="sentiment")


def test_ingest_reads_csv_from_s3(tmp_path, s3_prefix, synthetic_csv):
    upload_s3_file(synthetic_csv, f"{s3_prefix}/data/reviews.csv")
    card = ingest(data_config(f"{s3_prefix}/data/reviews.csv"), tmp_path / "out")
    assert sum(card["rows"].values()) == 400
    local = ingest(data_config(str(synthetic_csv)), tmp_path / "local")
    assert card["fingerprint"] == local["fingerprint"]


def test_a_file_changed_behind_its_checksum_is_refused(tmp_path, s3_prefix, synthetic_csv):
    bucket, key = split_s3(f"{s3_prefix}/data/reviews.csv")
    s3_client().put_object(
        Bucket=bucket, Key=key, Body=synthetic_csv.read_bytes(), Metadata={"sha256": "0" * 64}
    )
    with pytest.raises(StorageError, match="sha256 mismatch"):
        fetch_file(f"{s3_prefix}/data/reviews.csv", "data.source", tmp_path)


def test_missing_key_and_missing_bucket(tmp_path, s3_prefix):
    with pytest.raises(DataError, match="no such object; check the key"):
        ingest(data_config(f"{s3_prefix}/nothing.csv"), tmp_path / "out")
    with pytest.raises(DataError, match="bucket does not exist|no such object"):
        ingest(data_config("s3://no-such-bucket-here/x.csv"), tmp_path / "out")


def test_fetch_model_from_s3_skips_pickles(tmp_path, s3_prefix, tiny_random_model):
    for path in tiny_random_model.iterdir():
        upload_s3_file(path, f"{s3_prefix}/models/tiny/{path.name}")
    pickle = tmp_path / "pytorch_model.bin"
    pickle.write_bytes(b"never downloaded")
    upload_s3_file(pickle, f"{s3_prefix}/models/tiny/pytorch_model.bin")
    manifest = fetch_model(ModelConfig(source=f"{s3_prefix}/models/tiny"), tmp_path / "out")
    assert "model.safetensors" in manifest["files"] and "pytorch_model.bin" not in manifest["files"]
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()
    with pytest.raises(ModelError, match="holds no objects"):
        fetch_model(ModelConfig(source=f"{s3_prefix}/models/absent"), tmp_path / "out2")


def test_wrong_credentials_are_one_clear_line_without_the_secret(
    tmp_path, s3_prefix, synthetic_csv, monkeypatch
):
    upload_s3_file(synthetic_csv, f"{s3_prefix}/data/reviews.csv")
    wrong_secret = "wrong-secret-value-must-not-leak"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong_secret)
    result = run_warmstart(
        "run",
        "--workdir",
        str(tmp_path / "work"),
        "--set",
        f"data.source={s3_prefix}/data/reviews.csv",
        "--set",
        "data.text_column=text",
        "--set",
        "data.label_column=sentiment",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "access denied" in result.stderr and "AWS_SECRET_ACCESS_KEY" in result.stderr
    logs = "".join(p.read_text() for p in (tmp_path / "work" / "runs").glob("*.log"))
    for text in (result.stdout, result.stderr, logs):
        assert wrong_secret not in text
        assert S3_SECRET_KEY not in text
    assert "Traceback" not in result.stdout + result.stderr


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _Files(*a, directory=str(root), **k)
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_ingest_over_http_and_its_failures(tmp_path, http_root, synthetic_csv):
    root, base = http_root
    shutil.copyfile(synthetic_csv, root / "reviews.csv")
    (root / "page.csv").write_text("<html><body>please log in</body></html>")
    card = ingest(data_config(f"{base}/reviews.csv"), tmp_path / "out")
    assert sum(card["rows"].values()) == 400
    with pytest.raises(DataError, match="answered 404"):
        ingest(data_config(f"{base}/missing.csv"), tmp_path / "out")
    write_csv(root / "ok.csv", synthetic_rows(10, seed=1))
    (root / "index.html").write_text("<html></html>")
    with pytest.raises(DataError, match="HTML page"):
        ingest(data_config(f"{base}/"), tmp_path / "out")


def test_a_large_file_goes_up_and_down_in_parts_with_its_checksum(tmp_path, s3_prefix):
    """20 MB crosses boto3's 8 MB multipart threshold both ways; the sha256 travels as metadata."""
    import os

    from warmstart.storage import SHA256_METADATA, sha256_file

    big = tmp_path / "weights.safetensors"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    upload_s3_file(big, f"{s3_prefix}/big/weights.safetensors")
    bucket, key = split_s3(f"{s3_prefix}/big/weights.safetensors")
    head = s3_client().head_object(Bucket=bucket, Key=key)
    assert "-" in head["ETag"]  # a multipart upload's ETag is "<md5 of part md5s>-<parts>"
    assert head["Metadata"][SHA256_METADATA] == sha256_file(big)
    copy = fetch_file(f"{s3_prefix}/big/weights.safetensors", "model", tmp_path)
    assert sha256_file(copy) == sha256_file(big)
