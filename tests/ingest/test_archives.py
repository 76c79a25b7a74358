"""Data and models shipped as one .tar.gz or .zip: unpacked when every entry is safe, refused whole
(nothing written outside, nothing registered, one line saying which entry and why) when one is not."""

import io
import tarfile
import zipfile

import pyarrow.parquet as pq
import pytest

from warmstart.artifacts import load_manifest
from warmstart.config import DataConfig
from warmstart.errors import DataError, ModelError
from warmstart.fetch_model.sources import fetch
from warmstart.ingest.dataset import ingest
from warmstart.storage import upload_s3_file


def tar_of(path, files: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None, top: str = ""):
    """A .tar.gz holding `files` (name → bytes) and `links` (name → (target, kind: b'sym' or b'hard'))."""
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(top + name)
            info.type = tarfile.SYMTYPE if kind == b"sym" else tarfile.LNKTYPE
            info.linkname = target
            bundle.addfile(info)
    return path


def zip_of(path, files: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) | 0
            bundle.writestr(info, target)
    return path


def model_files(model_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}


def test_a_zipped_csv_in_a_folder_is_ingested(tmp_path, synthetic_csv):
    archive = zip_of(tmp_path / "reviews.zip", {"export/reviews.csv": synthetic_csv.read_bytes()})
    card = ingest(
        DataConfig(source=str(archive), text_column="text", label_column="sentiment"), tmp_path / "out"
    )
    assert sum(card["rows"].values()) > 300 and card["format"] == "csv"
    assert pq.read_table(tmp_path / "out" / "train.parquet").num_rows == card["rows"]["train"]


def test_an_archive_with_two_data_files_says_so(tmp_path, synthetic_csv):
    archive = tar_of(tmp_path / "d.tar.gz", {"a.csv": b"text,label\n", "b.csv": b"text,label\n"})
    with pytest.raises(
        DataError, match=r"holding 2 data files and 0 folders \(a.csv, b.csv\); it must hold one"
    ):
        ingest(DataConfig(source=str(archive)), tmp_path / "out")


def test_a_model_tar_gz_is_fetched_from_disk_and_from_s3(tmp_path, tiny_random_model, s3_prefix):
    archive = tar_of(tmp_path / "model.tar.gz", model_files(tiny_random_model), top="model/")
    local = fetch(str(archive), tmp_path / "local")
    upload_s3_file(archive, f"{s3_prefix}/model.tar.gz")
    remote = fetch(f"{s3_prefix}/model.tar.gz", tmp_path / "remote")
    assert local["files"] == remote["files"] and "model.safetensors" in local["files"]
    assert load_manifest(tmp_path / "remote")["source"] == f"{s3_prefix}/model.tar.gz"


def test_pickles_in_a_model_archive_are_left_behind(tmp_path, tiny_random_model):
    files = {**model_files(tiny_random_model), "pytorch_model.bin": b"pickle"}
    fetched = fetch(str(tar_of(tmp_path / "m.tgz", files)), tmp_path / "out")
    assert "pytorch_model.bin" not in fetched["files"]
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()


HOSTILE = {
    "parent path": ({"../escaped.csv": b"x"}, {}, "'../escaped.csv'", "absolute path or '..'"),
    "absolute path": ({"/tmp/escaped.csv": b"x"}, {}, "'/tmp/escaped.csv'", "absolute path or '..'"),
    "symlink out": ({"a.csv": b"x"}, {"link": ("/etc/passwd", b"sym")}, "'link'", "links to '/etc/passwd'"),
    "relative symlink out": ({}, {"d/link": ("../../outside", b"sym")}, "'d/link'", "outside the archive"),
    "hard link out": ({}, {"hard": ("../outside", b"hard")}, "'hard'", "outside the archive"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
@pytest.mark.parametrize("kind", ["data", "model"])
def test_a_tar_entry_that_leaves_the_target_refuses_the_archive(tmp_path, case, kind):
    files, links, entry, why = HOSTILE[case]
    archive = tar_of(tmp_path / "bundle.tar.gz", files, links)
    error = DataError if kind == "data" else ModelError
    with pytest.raises(error) as err:
        if kind == "data":
            ingest(DataConfig(source=str(archive)), tmp_path / "out")
        else:
            fetch(str(archive), tmp_path / "out")
    message = str(err.value)
    assert (
        "\n" not in message
        and f"entry {entry}" in message
        and why in message
        and "nothing was unpacked" in message
    )
    assert not (tmp_path / "escaped.csv").exists() and not list((tmp_path / "out").glob("*"))


@pytest.mark.parametrize(
    "files, symlinks, entry",
    [
        ({"../escaped.csv": b"x"}, {}, "'../escaped.csv'"),
        ({"/abs.csv": b"x"}, {}, "'/abs.csv'"),
        ({"a.csv": b"x"}, {"link": "/etc/passwd"}, "'link' is a symbolic link"),
    ],
    ids=["parent path", "absolute path", "symlink"],
)
def test_a_zip_entry_that_leaves_the_target_refuses_the_archive(tmp_path, files, symlinks, entry):
    archive = zip_of(tmp_path / "bundle.zip", files, symlinks)
    with pytest.raises(DataError, match="nothing was unpacked") as err:
        ingest(DataConfig(source=str(archive)), tmp_path / "out")
    assert entry in str(err.value)


def test_a_link_inside_the_archive_is_fine(tmp_path, tiny_random_model):
    files = model_files(tiny_random_model)
    files["base-config.json"] = files.pop("config.json")
    archive = tar_of(tmp_path / "m.tar.gz", files, {"config.json": ("base-config.json", b"sym")}, top="m/")
    fetched = fetch(str(archive), tmp_path / "out")
    assert fetched["files"]["config.json"]["sha256"] == fetched["files"]["base-config.json"]["sha256"]


def test_a_corrupt_archive_is_one_clear_error(tmp_path):
    broken = tmp_path / "data.tar.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match="is not a readable archive"):
        ingest(DataConfig(source=str(broken)), tmp_path / "out")
