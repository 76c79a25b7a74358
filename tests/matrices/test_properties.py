"""Property-based tests: the config parser never fails but with a ConfigError, and keeps what it is
given; the table readers give back every row of any text, in every format, normalised one way."""

import csv
import json
import re
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warmstart.config import Config, load_config
from warmstart.errors import ConfigError
from warmstart.ingest.readers import read_table

KEYS = [
    f"{section}.{name}"
    for section, field in Config.model_fields.items()
    for name in field.annotation.model_fields
]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(key=st.sampled_from(KEYS) | st.text(max_size=20), value=st.text(max_size=30))
def test_any_override_is_a_config_or_a_config_error(key, value):
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as err:
        assert "\n" not in str(err).strip()


@SETTINGS
@given(
    values=st.dictionaries(
        st.sampled_from(["data", "model", "train", "gate", "registry", "other"]),
        st.dictionaries(
            st.sampled_from(["epochs", "seed", "confidence", "source", "batch_size", "name", "x"]),
            st.none()
            | st.booleans()
            | st.integers(-5, 10**6)
            | st.floats(allow_nan=True)
            | st.text(max_size=10),
            max_size=4,
        )
        | st.integers()
        | st.text(max_size=5),
        max_size=4,
    )
)
def test_any_yaml_shaped_config_is_a_config_or_a_config_error(values):
    try:
        Config.from_dict(values)
    except ConfigError:
        pass


@SETTINGS
@given(epochs=st.integers(1, 1000), fraction=st.floats(0.001, 0.499), seed=st.integers(0, 2**31))
def test_valid_values_are_kept_exactly(epochs, fraction, seed):
    cfg = load_config(
        None, [f"train.epochs={epochs}", f"data.test_fraction={fraction!r}", f"train.seed={seed}"]
    )
    assert (cfg.train.epochs, cfg.data.test_fraction, cfg.train.seed) == (epochs, fraction, seed)
    assert Config.from_dict(cfg.model_dump()) == cfg


# Letters (with combining marks, so NFC has work), digits, punctuation, symbols, and the separators
# a CSV must quote: comma, double quote, newline, tab.
TEXT = st.text(
    st.characters(categories=["L", "M", "N", "P", "S"]) | st.sampled_from([" ", ",", '"', "\n", "\t"]),
    max_size=40,
)
LABELS = st.sampled_from(["pos", "neg", " padded ", "1", "ünï"])


def normalised(text: str) -> str:
    """What ingest judges text on: NFC, runs of ASCII whitespace as one space, trimmed."""
    return re.sub(r"[ \t\n\r\f]+", " ", unicodedata.normalize("NFC", text)).strip()


def write(path, fmt, rows):
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8"
        )
    else:
        pq.write_table(pa.table({"text": [t for t, _ in rows], "label": [y for _, y in rows]}), path)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@SETTINGS
@given(rows=st.lists(st.tuples(TEXT, LABELS), min_size=1, max_size=30))
def test_every_row_comes_back_normalised(tmp_path, fmt, rows):
    path = tmp_path / f"data.{fmt}"
    write(path, fmt, rows)
    table, read_as = read_table(
        str(path), Config().data.model_copy(update={"text_column": "text"}), "data.source"
    )
    assert read_as == fmt
    assert table["key"].to_pylist() == [normalised(t) for t, _ in rows]
    assert table["label"].to_pylist() == [y.strip() for _, y in rows]


ROW_TEXT = TEXT | st.sampled_from(["", " ", "nan", "same text"])
ROW_LABEL = st.sampled_from(["a"] * 6 + ["b"] * 6 + ["c", "", "nan"])


@SETTINGS
@given(
    rows=st.one_of(
        st.lists(st.tuples(ROW_TEXT, ROW_LABEL), max_size=8),  # tiny: mostly errors
        st.lists(st.tuples(ROW_TEXT, ROW_LABEL), min_size=40, max_size=80),  # mostly splits
    )
)
def test_ingest_of_any_small_table_is_splits_or_one_data_error(tmp_path_factory, rows):
    """Tiny, empty, one-class, all-missing, all-duplicate tables: never a crash, never a card
    beside an error; and when it succeeds every kept row is in exactly one split."""
    from warmstart.config import DataConfig
    from warmstart.errors import DataError
    from warmstart.ingest.dataset import ingest

    work = tmp_path_factory.mktemp("ingest")
    write(work / "d.csv", "csv", rows)
    try:
        card = ingest(
            DataConfig(source=str(work / "d.csv"), text_column="text", label_column="label"), work / "out"
        )
    except DataError as err:
        assert "\n" not in str(err)
        assert not (work / "out" / "data_card.json").exists()
        return
    splits = [pq.read_table(work / "out" / f"{name}.parquet") for name in ("train", "validation", "test")]
    assert [s.num_rows for s in splits] == [card["rows"][n] for n in ("train", "validation", "test")]
    removed = card["removed"]
    dropped = removed["empty"] + removed["duplicates"] + sum(removed["leakage"].values())
    assert sum(card["rows"].values()) + dropped == len(rows)
