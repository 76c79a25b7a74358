import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.data import synthetic_rows, write_csv

from warmstart.config import DataConfig
from warmstart.errors import DataError
from warmstart.ingest.dataset import fingerprint, ingest
from warmstart.ingest.readers import read_table


def config(source, **extra) -> DataConfig:
    values = {"test_source": "", "text_column": "text", "label_column": "sentiment", **extra}
    return DataConfig(source=str(source), **values)


def read_split(directory, name):
    return pq.read_table(directory / f"{name}.parquet").to_pandas()


def test_csv_is_split_stratified_and_described(tmp_path, synthetic_csv):
    card = ingest(config(synthetic_csv, test_fraction=0.2, validation_fraction=0.1), tmp_path / "out")
    assert card["label_names"] == ["neg", "pos"]
    assert sum(card["rows"].values()) == 400
    assert card["rows"]["test"] == 80
    for split in ("train", "validation", "test"):
        dist = card["label_distribution"][split]
        assert abs(dist["neg"] - dist["pos"]) <= 1, f"{split} is not stratified: {dist}"
        frame = read_split(tmp_path / "out", split)
        assert list(frame.columns) == ["id", "text", "label"]
        assert set(frame["label"]) == {0, 1}
    assert json.loads((tmp_path / "out" / "data_card.json").read_text()) == card


def test_duplicates_and_leakage_are_removed_and_reported(tmp_path):
    rows = synthetic_rows(100, seed=3)
    train = write_csv(
        tmp_path / "train.csv", rows + rows[:5] + [("  " + rows[0][0].upper() + " ", rows[0][1])]
    )
    test = write_csv(tmp_path / "test.csv", synthetic_rows(30, seed=4) + rows[10:13] + [("", "pos")])
    card = ingest(config(train, test_source=str(test)), tmp_path / "out")
    assert card["removed"]["duplicates"] == 5
    assert card["removed"]["leakage"]["test"] == 3
    assert card["removed"]["empty"] == 1
    test_texts = set(read_split(tmp_path / "out", "test")["text"])
    train_texts = set(read_split(tmp_path / "out", "train")["text"])
    assert not test_texts & train_texts


def test_whitespace_is_normalised_before_judging_duplicates(tmp_path):
    rows = [
        ("a  great   film", "pos"),
        ("a great film", "pos"),
        ("dull", "neg"),
        ("tedious", "neg"),
        ("fine", "pos"),
    ] * 1
    frame, _ = read_table(str(write_csv(tmp_path / "d.csv", rows)), config("x"), "data.source")
    assert frame["key"].to_pylist()[:2] == ["a great film", "a great film"]


@pytest.mark.parametrize("suffix, writer", [(".tsv", "tsv"), (".jsonl", "jsonl"), (".parquet", "parquet")])
def test_other_formats_from_the_extension(tmp_path, suffix, writer):
    rows = synthetic_rows(60, seed=5)
    path = tmp_path / f"data{suffix}"
    if writer == "tsv":
        path.write_text("text\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in rows))
    elif writer == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "sentiment": y}) + "\n" for t, y in rows))
    else:
        pq.write_table(pa.table({"text": [t for t, _ in rows], "sentiment": [y for _, y in rows]}), path)
    card = ingest(config(path), tmp_path / "out")
    assert card["format"] == writer
    assert sum(card["rows"].values()) == 60


def test_format_override_reads_an_unusual_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("text\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in synthetic_rows(40, seed=6)))
    with pytest.raises(DataError, match="set data.format"):
        ingest(config(path), tmp_path / "out")
    assert ingest(config(path, format="tsv"), tmp_path / "out")["format"] == "tsv"


def test_a_tab_separated_file_named_csv_gets_told_to_set_the_format(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text\tsentiment\n" + "".join(f"{t}\t{y}\n" for t, y in synthetic_rows(40, seed=6)))
    with pytest.raises(DataError, match="looks tab-separated; set data.format=tsv"):
        ingest(config(path), tmp_path / "out")


def test_integer_labels_sort_numerically(tmp_path):
    rows = [(f"text number {i}", str(i % 11)) for i in range(110)]
    card = ingest(config(write_csv(tmp_path / "d.csv", rows)), tmp_path / "out")
    assert card["label_names"] == [str(i) for i in range(11)]


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write_csv(tmp_path / "d.csv", synthetic_rows(20, seed=1), header=("review", "stars"))
    with pytest.raises(DataError) as err:
        ingest(config(path), tmp_path / "out")
    assert "no column 'text', 'sentiment'" in str(err.value)
    assert "columns found: 'review', 'stars'" in str(err.value)
    assert "data.text_column" in str(err.value)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("", "empty file"),
        ("text,sentiment\n", "no rows"),
        ("text,sentiment\n" + "x,pos\ny,pos\nz,pos\n", "single class"),
    ],
)
def test_unusable_files(tmp_path, content, fragment):
    path = tmp_path / "d.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=fragment):
        ingest(config(path), tmp_path / "out")
    assert not (tmp_path / "out" / "data_card.json").exists()


def test_test_labels_unseen_in_training_are_refused(tmp_path):
    train = write_csv(tmp_path / "train.csv", synthetic_rows(40, seed=1))
    test = write_csv(tmp_path / "test.csv", [("an unseen kind", "neutral"), ("good fun", "pos")])
    with pytest.raises(DataError, match="labels never seen in training: 'neutral'"):
        ingest(config(train, test_source=str(test)), tmp_path / "out")


def test_missing_file_and_unknown_scheme(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest(config(tmp_path / "nope.csv"), tmp_path / "out")
    with pytest.raises(DataError, match="unsupported scheme 'ftp://'"):
        ingest(config("ftp://host/data.csv"), tmp_path / "out")


@pytest.mark.parametrize("slice_rows", [2, 65_536])
def test_fingerprint_ignores_row_order_but_not_content(monkeypatch, slice_rows):
    import hashlib

    import pyarrow as pa

    import warmstart.ingest.dataset

    monkeypatch.setattr(warmstart.ingest.dataset, "SLICE_ROWS", slice_rows)  # hashed a slice at a time
    rows = [("a", "x"), ("b", "y"), ("c", "x"), ("é", "x"), ("z", "x")]
    table = pa.table({"key": [k for k, _ in rows], "label": [y for _, y in rows]})
    assert fingerprint(table) == fingerprint(table.take([4, 3, 2, 1, 0]))
    # The definition: sha256 over the "label<TAB>key<LF>" lines in code point order.
    expected = hashlib.sha256("".join(sorted(f"{y}\t{k}\n" for k, y in rows)).encode()).hexdigest()
    assert fingerprint(table) == expected
    changed = table.set_column(1, "label", pa.array(["y", "y", "x", "x", "x"]))
    assert fingerprint(table) != fingerprint(changed)


def test_split_is_reproducible(tmp_path, synthetic_csv):
    first = ingest(config(synthetic_csv), tmp_path / "a")
    second = ingest(config(synthetic_csv), tmp_path / "b")
    assert first["fingerprints"] == second["fingerprints"]
    third = ingest(config(synthetic_csv, split_seed=7), tmp_path / "c")
    assert third["fingerprints"]["test"] != first["fingerprints"]["test"]
    assert third["fingerprint"] != first["fingerprint"]
