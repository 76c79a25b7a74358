"""The bad-input matrix for data files, read by ingest: each mistake is one DataError line naming
what, where and what to do, with no data card written; what is only untidy (duplicates, leakage,
missing values, quoting, long lines, another encoding) is read, cleaned and counted.

Through the `warmstart` command, a DataError becomes that one line on stderr and exit code 2, with
nothing registered: tests/app/test_cli.py holds that for a few of these rows.
"""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warmstart.config import DataConfig
from warmstart.errors import DataError
from warmstart.ingest.dataset import ingest

ROWS = "text,label\n" + "".join(f"review number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": [f"r {i}" for i in range(40)], "label": ["a", "b"] * 20}), buffer)
    return buffer.getvalue()


def ingest_file(tmp_path, name, content, **data):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    cfg = DataConfig(source=str(path), text_column="text", label_column="label", **data)
    return ingest(cfg, tmp_path / "out")


BAD = [
    ("empty", "e.csv", "", {}, ["is an empty file"]),
    ("header only", "h.csv", "text,label\n", {}, ["has a header but no rows"]),
    ("no text column", "c.csv", ROWS.replace("text,", "review,"), {}, ["no column 'text'", "'review'"]),
    (
        "no label column",
        "c.csv",
        ROWS.replace(",label", ",stars"),
        {},
        ["no column 'label'", "data.label_column"],
    ),
    (
        "a single class",
        "s.csv",
        "text,label\n" + "".join(f"r {i},pos\n" for i in range(20)),
        {},
        ["single class ('pos')", "at least two labels"],
    ),
    (
        "not UTF-8",
        "u.csv",
        ROWS.encode() + b"caf\xe9,pos\n",
        {},
        ["is not UTF-8: line 42, byte 4 is 0xe9", "data.encoding"],
    ),
    (
        "UTF-16 read as UTF-8",
        "u16.csv",
        ROWS.encode("utf-16"),
        {},
        ["is not UTF-8: line 1, byte 1 is 0xff", "data.encoding"],
    ),
    (
        "a quote never closed",
        "q.csv",
        ROWS.replace("review number 20,neg\n", '"review number 20,neg\n'),
        {},
        ["line 22: 1 fields where the header has 2", "never closed"],
    ),
    (
        "a field with an unquoted comma",
        "f.csv",
        ROWS + "good, really,pos\n",
        {},
        ["line 42: 3 fields where the header has 2", "double quotes"],
    ),
    ("Parquet named .csv", "p.csv", parquet_bytes(), {}, ["is a Parquet file", "data.format=parquet"]),
    ("CSV named .parquet", "c.parquet", ROWS, {}, ["is not a Parquet file", "looks like csv"]),
    ("TSV named .csv", "t.csv", ROWS.replace(",", "\t"), {}, ["looks tab-separated", "data.format=tsv"]),
    # Every line number is the line as an editor numbers it: from 1, the header counted.
    (
        "broken JSON Lines",
        "j.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label"\n',
        {},
        ["line 3: not valid JSON", "fix or remove the line"],
    ),
    (
        "a JSON Lines line that is not an object",
        "a.jsonl",
        '{"text": "a", "label": "x"}\n\n[1, 2]\n',
        {},
        ["line 3: a JSON list, where each line must be one object"],
    ),
    (
        "a JSON Lines field whose kind changes",
        "k.jsonl",
        "".join(f'{{"text": "r {i}", "label": "x"}}\n' for i in range(5)) + '{"text": "r", "label": 3}\n',
        {},
        ["line 6: 'label' is a number where line 1 has a string", "quote numbers"],
    ),
    (
        "a TSV row with an extra field",
        "x.tsv",
        ROWS.replace(",", "\t") + "good\treally\tpos\n",
        {},
        ["line 42: 3 fields where the header has 2"],
    ),
    (
        "a bad CSV row after a field over two lines",
        "m.csv",
        'text,label\n"two\nlines",pos\nfine,neg\ngood, really,pos\n',
        {},
        ["line 5: 3 fields where the header has 2"],
    ),
    ("no usable row", "n.csv", "text,label\na,\n,b\nc,nan\n", {}, ["has no usable rows", "(3)"]),
    ("unknown extension", "d.xlsx", ROWS, {}, ["cannot tell the format", "data.format"]),
    ("missing file", None, None, {}, ["does not exist", "check the path"]),
]


@pytest.mark.parametrize("case, name, content, data, fragments", BAD, ids=[row[0] for row in BAD])
def test_bad_data_is_one_clear_error_and_writes_no_card(tmp_path, case, name, content, data, fragments):
    with pytest.raises(DataError) as err:
        if name is None:
            ingest(DataConfig(source=str(tmp_path / "nowhere.csv")), tmp_path / "out")
        else:
            ingest_file(tmp_path, name, content, **data)
    message = str(err.value)
    assert "\n" not in message and message.startswith("data.source '")
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out" / "data_card.json").exists()


def test_labels_in_test_never_seen_in_training(tmp_path):
    test = tmp_path / "test.csv"
    test.write_text("text,label\nsomething new,maybe\nanother,pos\n")
    with pytest.raises(
        DataError, match="labels never seen in training: 'maybe'; training labels are 'neg', 'pos'"
    ):
        ingest_file(tmp_path, "train.csv", ROWS, test_source=str(test))
    assert not (tmp_path / "out" / "data_card.json").exists()


def test_missing_values_are_dropped_and_counted(tmp_path):
    untidy = ROWS + ",pos\nno label,\nNaN,neg\nnull label,null\n  ,neg\n"
    untidy += "".join(f"kept {i},None\nkept too {i},NA\n" for i in range(3))
    card = ingest_file(tmp_path, "n.csv", untidy)
    assert card["removed"]["empty"] == 5
    assert sum(card["rows"].values()) == 46
    assert card["label_names"] == ["NA", "None", "neg", "pos"]  # "None" and "NA" can be class names


def test_quoted_newlines_quotes_and_a_long_line_are_read(tmp_path):
    long_text = "word " * 600_000  # 3 MB in one field
    content = ROWS + '"a review\nover two lines",pos\n"she said ""fine""",neg\na 5" screen,pos\n'
    content += f'"{long_text}",pos\n'
    card = ingest_file(tmp_path, "q.csv", content)
    texts = set()
    for split in ("train", "validation", "test"):
        texts |= set(pq.read_table(tmp_path / "out" / f"{split}.parquet")["text"].to_pylist())
    assert "a review over two lines" in texts and 'she said "fine"' in texts
    assert 'a 5" screen' in texts  # a stray quote inside a field is a character
    assert long_text.strip() in texts
    assert sum(card["rows"].values()) == 44


def test_another_encoding_is_read_when_named(tmp_path):
    content = (ROWS + "café crème,pos\n").encode("latin-1")
    card = ingest_file(tmp_path, "l.csv", content, encoding="latin-1")
    texts = pq.read_table(tmp_path / "out" / "train.parquet")["text"].to_pylist()
    texts += pq.read_table(tmp_path / "out" / "test.parquet")["text"].to_pylist()
    texts += pq.read_table(tmp_path / "out" / "validation.parquet")["text"].to_pylist()
    assert "café crème" in texts and sum(card["rows"].values()) == 41


def test_an_unknown_encoding_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not a known text encoding"):
        DataConfig(encoding="klingon-8")


def test_duplicates_and_leakage_are_removed_and_reported(tmp_path):
    rows = ROWS + "review number 3,pos\nreview number 3,pos\nreview number 4,pos\n"
    test = tmp_path / "test.csv"
    test.write_text("text,label\nreview number 5,pos\nunseen review,neg\nunseen one,pos\n")
    card = ingest_file(tmp_path, "d.csv", rows, test_source=str(test))
    assert card["removed"]["duplicates"] == 2  # "review number 3,pos" twice more
    assert card["removed"]["leakage"]["test"] == 1  # "review number 5" is also in training
    assert card["rows"]["test"] == 2
    # "review number 4" with another label is no duplicate: both stay (and if split apart, one is leakage).
    assert sum(card["rows"].values()) + card["removed"]["leakage"]["validation"] == 41 + 2


def test_json_lines_nulls_are_missing_values(tmp_path):
    lines = [json.dumps({"text": f"r {i}", "label": ["a", "b"][i % 2]}) for i in range(30)]
    lines += [json.dumps({"text": None, "label": "a"}), json.dumps({"text": "x", "label": None})]
    card = ingest_file(tmp_path, "j.jsonl", "\n".join(lines) + "\n")
    assert card["removed"]["empty"] == 2
