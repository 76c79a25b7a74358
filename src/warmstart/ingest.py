"""ingest: read a labelled text dataset, clean it, split it, and describe it in a data card.

Reads CSV, TSV, JSON Lines or Parquet; normalises text; drops empty rows, exact duplicates and
test rows whose text also appears in training (leakage); cuts stratified splits with a fixed
seed; writes `train/validation/test.parquet` and `data_card.json` into one directory.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from warmstart.config import DataConfig
from warmstart.errors import DataError, WarmstartError
from warmstart.storage import fetch_file

SPLITS = ("train", "validation", "test")
FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
CARD_FILE = "data_card.json"


def detect_format(path: Path, requested: str, uri: str) -> str:
    if requested != "auto":
        return requested
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zst")]
    fmt = FORMATS_BY_SUFFIX.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(
            f"data '{uri}': cannot tell the format from the extension '{path.suffix}'; "
            f"set data.format to one of csv, tsv, jsonl, parquet"
        )
    return fmt


def read_table(uri: str, cfg: DataConfig, what: str) -> tuple[pd.DataFrame, str]:
    """Read `uri` into a frame with columns text (str) and label (str); the format used comes back too.

    Remote files (s3://, http(s)://) are downloaded to a temporary file first and removed after.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-ingest-") as scratch:
        try:
            path = fetch_file(uri, what, Path(scratch))
        except WarmstartError as err:
            raise DataError(str(err)) from None
        return _read_local_table(path, uri, cfg, what)


def _read_local_table(path: Path, uri: str, cfg: DataConfig, what: str) -> tuple[pd.DataFrame, str]:
    if path.is_dir():
        raise DataError(f"{what} '{uri}' is a directory; point it at one data file")
    fmt = detect_format(path, cfg.format, uri)
    if path.stat().st_size == 0:
        raise DataError(f"{what} '{uri}' is an empty file; it needs a header and labelled rows")
    try:
        if fmt in ("csv", "tsv"):
            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(
                    delimiter="\t" if fmt == "tsv" else ",",
                    quote_char=False if fmt == "tsv" else '"',
                    newlines_in_values=fmt == "csv",
                ),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=False),
            )
        elif fmt == "jsonl":
            table = pajson.read_json(path)
        else:
            table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        reason = str(err).splitlines()[0]
        raise DataError(
            f"{what} '{uri}' could not be read as {fmt}: {reason}; "
            f"check the file, or set data.format if it is not {fmt}"
        ) from None
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in table.column_names]
    if missing:
        header = table.column_names
        for separator, other in (("\t", "tsv"), (",", "csv"), (";", "csv")):
            if fmt != other and len(header) == 1 and separator in header[0]:
                raise DataError(
                    f"{what} '{uri}' was read as {fmt} but its header {header[0]!r} looks "
                    f"{'tab' if other == 'tsv' else repr(separator)}-separated; set data.format={other}"
                    + (
                        " (csv with another delimiter is not supported; convert the file)"
                        if separator == ";"
                        else ""
                    )
                )
        keys = {cfg.text_column: "data.text_column", cfg.label_column: "data.label_column"}
        raise DataError(
            f"{what} '{uri}' has no column {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(repr(c) for c in header) or 'none'}; "
            f"set {', '.join(keys[m] for m in missing)} to one of them"
        )
    if table.num_rows == 0:
        raise DataError(f"{what} '{uri}' has a header but no rows; it needs labelled examples")
    text = _normalize_text(table.column(cfg.text_column))
    label = pc.utf8_trim_whitespace(pc.cast(table.column(cfg.label_column), pa.string()))
    return pd.DataFrame({"text": text.to_pandas(), "label": label.to_pandas()}), fmt


def _normalize_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """NFC, whitespace collapsed to single spaces, trimmed: the form duplicates and leakage are judged on."""
    text = pc.cast(column, pa.string())
    text = pc.utf8_normalize(text, "NFC")
    text = pc.replace_substring_regex(text, r"\s+", " ")
    return pc.utf8_trim_whitespace(text)


def _drop_empty(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    keep = frame["text"].notna() & (frame["text"] != "") & frame["label"].notna() & (frame["label"] != "")
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def _drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    deduped = frame.drop_duplicates(subset=["text", "label"]).reset_index(drop=True)
    return deduped, len(frame) - len(deduped)


def _drop_leaked(frame: pd.DataFrame, seen: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    leaked = frame["text"].isin(set(seen["text"]))
    return frame[~leaked].reset_index(drop=True), int(leaked.sum())


def stratified_split(
    frame: pd.DataFrame, fraction: float, seed: int, what: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out `fraction` of every class (at least one row each), with a seeded permutation."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label, rows in frame.groupby("label", sort=True).indices.items():
        if len(rows) < 2:
            raise DataError(
                f"{what}: class '{label}' has only {len(rows)} row; every class needs at least 2 rows "
                f"to be split into train and held-out data"
            )
        count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        held.append(rng.permutation(rows)[:count])
    held_idx = np.sort(np.concatenate(held))
    mask = np.zeros(len(frame), dtype=bool)
    mask[held_idx] = True
    rest = frame[~mask].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return rest, frame[mask].reset_index(drop=True)


def label_names(labels: pd.Series) -> list[str]:
    """Sorted label values, numerically when every label is an integer (so '10' follows '9')."""
    values = sorted(set(labels))
    try:
        return sorted(values, key=int)
    except ValueError:
        return values


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the sorted normalised rows: the same content gives the same value in any row order."""
    rows = sorted(frame["label"] + "\t" + frame["text"])
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def ingest(cfg: DataConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, clean and split the data in `cfg`; write the splits and the data card to `output_dir`."""
    output_dir = Path(output_dir)
    source, fmt = read_table(cfg.source, cfg, "data.source")
    source, empty = _drop_empty(source)
    source, duplicates = _drop_duplicates(source)
    leaked = {"test": 0, "validation": 0}
    if cfg.test_source:
        test, _ = read_table(cfg.test_source, cfg, "data.test_source")
        test, test_empty = _drop_empty(test)
        test, test_duplicates = _drop_duplicates(test)
        empty += test_empty
        duplicates += test_duplicates
        rest = source
    else:
        rest, test = stratified_split(
            source, cfg.test_fraction, cfg.split_seed, f"data.source '{cfg.source}'"
        )
    train, validation = stratified_split(
        rest, cfg.validation_fraction, cfg.split_seed + 1, f"data.source '{cfg.source}'"
    )
    test, leaked["test"] = _drop_leaked(test, rest)
    validation, leaked["validation"] = _drop_leaked(validation, train)

    names = label_names(train["label"])
    if len(names) < 2:
        raise DataError(
            f"data.source '{cfg.source}' has a single class ({names[0]!r}) in column '{cfg.label_column}'; "
            f"a classifier needs at least two labels"
        )
    for split_name, split in (("test", test), ("validation", validation)):
        unseen = sorted(set(split["label"]) - set(names))
        if unseen:
            raise DataError(
                f"the {split_name} split has labels never seen in training: {', '.join(map(repr, unseen))}; "
                f"training labels are {', '.join(map(repr, names))}"
            )
        if split.empty:
            raise DataError(f"the {split_name} split is empty after removing duplicates and leakage")

    label_ids = {name: i for i, name in enumerate(names)}
    splits = {"train": train, "validation": validation, "test": test}
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        table = pa.table(
            {
                "id": pa.array(np.arange(len(split)), pa.int64()),
                "text": pa.array(split["text"], pa.string()),
                "label": pa.array(split["label"].map(label_ids), pa.int64()),
            }
        )
        pq.write_table(table, output_dir / f"{name}.parquet")

    split_fingerprints = {name: fingerprint(split) for name, split in splits.items()}
    card = {
        "source": cfg.source,
        "test_source": cfg.test_source or None,
        "format": fmt,
        "text_column": cfg.text_column,
        "label_column": cfg.label_column,
        "label_names": names,
        "rows": {name: len(split) for name, split in splits.items()},
        "label_distribution": {
            name: {label: int((split["label"] == label).sum()) for label in names}
            for name, split in splits.items()
        },
        "removed": {"empty": empty, "duplicates": duplicates, "leakage": leaked},
        "split_seed": cfg.split_seed,
        "fingerprints": split_fingerprints,
        "fingerprint": hashlib.sha256(
            "".join(f"{k}:{v}\n" for k, v in sorted(split_fingerprints.items())).encode()
        ).hexdigest(),
    }
    (output_dir / CARD_FILE).write_text(json.dumps(card, indent=2))
    return card


def load_card(dataset_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(dataset_dir) / CARD_FILE).read_text())


def data_card_markdown(card: dict[str, Any]) -> str:
    """The data card as a Markdown section, for the gate report and the model card."""
    names = card["label_names"]
    lines = [
        f"- source: `{card['source']}`"
        + (f", test: `{card['test_source']}`" if card.get("test_source") else ""),
        f"- text column `{card['text_column']}`, label column `{card['label_column']}`, format {card['format']}",
        f"- fingerprint: `{card['fingerprint']}`",
        f"- removed: {card['removed']['empty']} empty, {card['removed']['duplicates']} duplicate rows; "
        f"{card['removed']['leakage']['test']} test and {card['removed']['leakage']['validation']} validation "
        f"rows whose text is in training (leakage)",
        "",
        "| split | rows | " + " | ".join(f"label `{n}`" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for split in SPLITS:
        dist = card["label_distribution"][split]
        lines.append(f"| {split} | {card['rows'][split]} | " + " | ".join(str(dist[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"
