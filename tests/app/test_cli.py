"""Bad input through the `warmstart` command: one clear line, a non-zero exit, nothing registered."""

import shutil

import pytest
from support.cli import run_warmstart
from support.data import write_csv


def run_with(tmp_path, *settings):
    args = ["run", "--workdir", str(tmp_path / "work")]
    for setting in settings:
        args += ["--set", setting]
    return run_warmstart(*args, timeout=300)


def assert_one_clear_error(result, tmp_path, *fragments):
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    error_lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1, result.stderr
    assert error_lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in error_lines[0]
    versions = tmp_path / "work" / "registry"
    assert not versions.exists() or not any(versions.rglob("metadata.json"))


@pytest.fixture
def data_file(tmp_path):
    return write_csv(tmp_path / "reviews.csv", [("great fun", "pos"), ("dull", "neg")] * 10 + [("ok", "pos")])


def test_unknown_config_key(tmp_path):
    result = run_with(tmp_path, "train.epoch=2")
    assert_one_clear_error(result, tmp_path, "unknown key 'train.epoch'", "epochs")
    assert result.returncode == 2


def test_missing_column(tmp_path, data_file):
    result = run_with(
        tmp_path, f"data.source={data_file}", "data.test_source=", "data.label_column=sentiment"
    )
    assert_one_clear_error(
        result, tmp_path, "ingest:", "no column 'sentence'", "columns found: 'text', 'sentiment'"
    )


def test_unknown_format(tmp_path, data_file):
    odd = shutil.copyfile(data_file, tmp_path / "reviews.xlsx")
    result = run_with(tmp_path, f"data.source={odd}", "data.test_source=")
    assert_one_clear_error(result, tmp_path, "cannot tell the format", "data.format")


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = run_with(tmp_path, f"data.source={empty}", "data.test_source=")
    assert_one_clear_error(result, tmp_path, "empty file")


def test_one_class_data(tmp_path):
    one = write_csv(
        tmp_path / "one.csv", [(f"fine film {i}", "pos") for i in range(20)], header=("sentence", "label")
    )
    result = run_with(tmp_path, f"data.source={one}", "data.test_source=")
    assert_one_clear_error(result, tmp_path, "single class", "at least two labels")


def test_model_without_safetensors(tmp_path, tiny_random_model):
    model = shutil.copytree(tiny_random_model, tmp_path / "pickled-model")
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    result = run_with(tmp_path, f"model.source={model}")
    assert_one_clear_error(result, tmp_path, "fetch_model:", "no *.safetensors weights", "refused")


def test_data_that_is_not_utf8(tmp_path, data_file):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(data_file.read_bytes() + "crème brûlée,pos\n".encode("latin-1"))
    result = run_with(
        tmp_path,
        f"data.source={latin}",
        "data.test_source=",
        "data.text_column=text",
        "data.label_column=sentiment",
    )
    assert_one_clear_error(
        result, tmp_path, "ingest:", "is not UTF-8: line 23, byte 3 is 0xe8", "data.encoding"
    )


def test_a_model_archive_with_an_entry_outside(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        info = tarfile.TarInfo("../../home/user/.bashrc")
        info.size = 4
        bundle.addfile(info, io.BytesIO(b"evil"))
    result = run_with(tmp_path, f"model.source={archive}")
    assert_one_clear_error(
        result, tmp_path, "fetch_model:", "entry '../../home/user/.bashrc'", "nothing was unpacked"
    )
