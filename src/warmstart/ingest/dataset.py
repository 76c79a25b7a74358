"""ingest: read a labelled text, image or audio dataset, clean it, split it, and describe it in a data card.

Text comes from CSV, TSV, JSON Lines or Parquet. Images and audio come from a folder (one subfolder
per class) or from such a table with an image or audio column (paths or the encoded bytes). Every row
gets a key: the normalised text, the sha256 of the image bytes, or the sha256 of the decoded audio
samples. Empty rows, unreadable files, exact duplicates and held-out rows whose key also appears in
training (leakage) are dropped; stratified splits are cut with a fixed seed;
`train/validation/test.parquet` and `data_card.json` are written into one directory. Images are
stored in the splits as their original encoded bytes, audio as its decoded float32 samples at
`data.sample_rate`, so later stages need nothing but this directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warmstart.artifacts import CARD_FILE
from warmstart.config import DataConfig
from warmstart.errors import DataError
from warmstart.ingest.readers import read_table

SLICE_ROWS = 65_536


# What numpy and pandas (nan, NaN, <NA>), JSON and SQL (null, NULL) and spreadsheets (#N/A, N/A) write
# for a missing value. "None" and "NA" are left out: each is also a plausible class name.
MISSING_MARKERS = pa.array(["nan", "NaN", "NAN", "<NA>", "null", "NULL", "Null", "#N/A", "N/A", "n/a"])
LARGE_EMPTY_AND_LF = (pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string()))


def _clean(table: pa.Table) -> tuple[pa.Table, np.ndarray, dict[str, int]]:
    """`table` without empty rows, unreadable images and exact duplicates (same key and label; the
    first of each is kept, in the original order), and each kept row's key as an integer code
    (equal codes, equal keys)."""
    present = pc.and_(_present(table["key"]), _present(table["label"]))
    keep = pc.and_(present, table["readable"]) if "readable" in table.column_names else present
    empty = table.num_rows - _count(present)
    unreadable = _count(present) - _count(keep)
    if empty or unreadable:
        table = table.filter(keep)
    keys, labels = _codes(table["key"]), _codes(table["label"])
    _, first = np.unique(keys * (int(labels.max(initial=0)) + 1) + labels, return_index=True)
    first.sort()
    removed = {"empty": empty, "unreadable": unreadable, "duplicates": table.num_rows - len(first)}
    return (table if len(first) == table.num_rows else table.take(first)), keys[first], removed


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Each value as an int64 code, equal codes for equal values (Arrow's hash dictionary; a hash
    table over the values themselves, or sorting them, costs far more at a million rows)."""
    chunks = pc.dictionary_encode(column).chunks  # one dictionary across the chunks: codes agree
    return np.concatenate([np.zeros(0, np.int64), *(chunk.indices.to_numpy() for chunk in chunks)]).astype(
        np.int64
    )


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0)


def _present(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a value is there: not null, not empty, and not a marker that software writes for a
    missing value (MISSING_MARKERS)."""
    missing = pc.or_(pc.equal(column, ""), pc.is_in(column, value_set=MISSING_MARKERS))
    return pc.invert(pc.fill_null(missing, True))


def _unseen(keys: np.ndarray, rows: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """`rows` without those whose key (a code in `keys`) is also the key of one of the rows `seen`."""
    known = np.zeros(int(keys.max(initial=-1)) + 1, dtype=bool)
    known[keys[seen]] = True
    return rows[~known[keys[rows]]]


def stratified_split(
    labels: pa.ChunkedArray, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices holding out `fraction` of every class (at least one row each), with a seeded
    permutation: the rest, shuffled, and the held-out rows, in order."""
    rng = np.random.default_rng(seed)
    codes = pc.dictionary_encode(labels.combine_chunks())
    indices = codes.indices.to_numpy(zero_copy_only=False)
    held: list[np.ndarray] = []
    for code, label in sorted(enumerate(codes.dictionary.to_pylist()), key=lambda item: item[1]):
        rows = np.flatnonzero(indices == code)
        if len(rows) < 2:
            raise DataError(
                f"{what}: class '{label}' has only {len(rows)} row; every class needs at least 2 rows "
                f"to be split into train and held-out data"
            )
        count = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        held.append(rng.permutation(rows)[:count])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(held)] = True
    rest = np.flatnonzero(~mask)
    return rest[np.random.RandomState(seed).choice(len(rest), size=len(rest), replace=False)], np.flatnonzero(
        mask
    )


def label_names(labels: pa.ChunkedArray) -> list[str]:
    """Sorted label values, numerically when every label is an integer (so '10' follows '9')."""
    values = sorted(pc.unique(labels).to_pylist())
    try:
        return sorted(values, key=int)
    except ValueError:
        return values


def fingerprint(table: pa.Table) -> str:
    """sha256 over the sorted rows ("label<TAB>key<LF>" each): the same content gives the same value
    in any row order, and the same images give the same value whether read from a folder or a table.
    Rows are sorted by their UTF-8 bytes, which is code point order, and hashed a slice at a time."""
    rows = pc.binary_join_element_wise(table["label"], table["key"], "\t").cast(pa.large_string())
    rows = rows.combine_chunks()  # large_string: past 2 GB of text too
    order = pc.sort_indices(rows)
    digest = hashlib.sha256()
    for start in range(0, len(rows), SLICE_ROWS):
        lines = pc.binary_join_element_wise(rows.take(order.slice(start, SLICE_ROWS)), *LARGE_EMPTY_AND_LF)
        offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset : lines.offset + len(lines) + 1]
        digest.update(memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]])
    return digest.hexdigest()


def modality_of(table: pa.Table) -> str:
    """'image', 'audio' or 'text': what a table from `read_table` holds."""
    return next((kind for kind in ("image", "audio") if kind in table.column_names), "text")


def ingest(cfg: DataConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, clean and split the data in `cfg`; write the splits and the data card to `output_dir`."""
    output_dir = Path(output_dir)
    source, fmt = read_table(cfg.source, cfg, "data.source")
    modality = modality_of(source)
    source, keys, removed = _clean(source)
    if source.num_rows == 0:
        unreadable = (
            f" or an unreadable {modality} ({removed['unreadable']})" if removed["unreadable"] else ""
        )
        raise DataError(
            f"data.source '{cfg.source}' has no usable rows: every row has an empty or missing "
            f"{modality} or label ({removed['empty']}){unreadable}; "
            f"check data.{modality}_column and data.label_column"
        )
    splits, leaked, removed = _split(cfg, source, keys, modality, removed)
    del source
    names = label_names(splits["train"]["label"])
    _check_labels(cfg, fmt, names, splits)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, split in splits.items():
        pq.write_table(_split_table(split, names, modality), output_dir / f"{name}.parquet")
    card = _card(cfg, fmt, modality, names, splits, {**removed, "leakage": leaked})
    (output_dir / CARD_FILE).write_text(json.dumps(card, indent=2))
    return card


def _split(
    cfg: DataConfig, source: pa.Table, keys: Any, modality: str, removed: dict[str, int]
) -> tuple[dict[str, pa.Table], dict[str, int], dict[str, int]]:
    """The train, validation and test splits (stratified, seeded; the test split is data.test_source
    when given), with the rows left out of validation and test because training holds them (leakage)
    counted, and the removed counts updated for the test file's own rows."""
    what = f"data.source '{cfg.source}'"
    leaked = {"test": 0, "validation": 0}
    if cfg.test_source:
        test, _ = read_table(cfg.test_source, cfg, "data.test_source")
        if modality_of(test) != modality:
            raise DataError(
                f"data.source '{cfg.source}' holds {modality}s but data.test_source '{cfg.test_source}' does "
                f"not; point both at the same kind of data"
            )
        test, _, test_removed = _clean(test)
        removed = {reason: count + test_removed[reason] for reason, count in removed.items()}
        rest = np.arange(source.num_rows)
        unseen = pc.invert(pc.is_in(test["key"], value_set=source["key"]))
        leaked["test"] = test.num_rows
        test = test.filter(unseen)
        leaked["test"] -= test.num_rows
    else:
        rest, held = stratified_split(source["label"], cfg.test_fraction, cfg.split_seed, what)
        kept = _unseen(keys, held, rest)
        leaked["test"] = len(held) - len(kept)
        test = source.take(kept)
    train_rows, validation_rows = stratified_split(
        source["label"].take(rest), cfg.validation_fraction, cfg.split_seed + 1, what
    )
    train_rows, validation_rows = rest[train_rows], rest[validation_rows]
    kept = _unseen(keys, validation_rows, train_rows)
    leaked["validation"] = len(validation_rows) - len(kept)
    if cfg.shots_per_class:  # after the held-out splits, so they are the same for every K
        train_rows = few_shot(
            source["label"].take(train_rows), cfg.shots_per_class, cfg.split_seed + 2, train_rows
        )
    splits = {"train": source.take(train_rows), "validation": source.take(kept), "test": test}
    return splits, leaked, removed


def few_shot(labels: pa.ChunkedArray, shots: int, seed: int, rows: np.ndarray) -> np.ndarray:
    """`rows` cut to `shots` of each class, in their order. Each class's rows are ranked once by a
    permutation seeded by `seed` and the class's name alone, so a smaller K keeps a subset of a larger
    K's rows."""
    codes = pc.dictionary_encode(labels.combine_chunks())
    indices = codes.indices.to_numpy(zero_copy_only=False)
    keep = np.zeros(len(rows), dtype=bool)
    for code, label in enumerate(codes.dictionary.to_pylist()):
        members = np.flatnonzero(indices == code)
        class_seed = int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:8], "little")
        ranked = members[np.random.default_rng(class_seed).permutation(len(members))]
        keep[ranked[:shots]] = True
    return rows[keep]


def _check_labels(cfg: DataConfig, fmt: str, names: list[str], splits: dict[str, pa.Table]) -> None:
    """At least two classes, none in validation or test that training lacks, and no empty split."""
    if len(names) < 2:
        where = "class folder" if fmt.endswith("folder") else f"column '{cfg.label_column}'"
        raise DataError(
            f"data.source '{cfg.source}' has a single class ({names[0]!r}) in {where}; "
            f"a classifier needs at least two labels"
        )
    for split_name in ("test", "validation"):
        split = splits[split_name]
        unseen = sorted(set(pc.unique(split["label"]).to_pylist()) - set(names))
        if unseen:
            raise DataError(
                f"the {split_name} split has labels never seen in training: {', '.join(map(repr, unseen))}; "
                f"training labels are {', '.join(map(repr, names))}"
            )
        if split.num_rows == 0:
            raise DataError(f"the {split_name} split is empty after removing duplicates and leakage")


def _card(
    cfg: DataConfig,
    fmt: str,
    modality: str,
    names: list[str],
    splits: dict[str, pa.Table],
    removed: dict[str, Any],
) -> dict[str, Any]:
    """The data card: where the data came from, its classes, rows and label counts per split, what was
    removed, and the fingerprints that tell whether it changed."""
    split_fingerprints = {name: fingerprint(split) for name, split in splits.items()}
    card = {
        "modality": modality,
        "source": cfg.source,
        "test_source": cfg.test_source or None,
        "format": fmt,
        "text_column": cfg.text_column if modality == "text" else None,
        "image_column": (cfg.image_column or None) if modality == "image" else None,
        "audio_column": (cfg.audio_column or None) if modality == "audio" else None,
        "label_column": cfg.label_column if not fmt.endswith("folder") else None,
        "label_names": names,
        "rows": {name: len(split) for name, split in splits.items()},
        "label_distribution": {name: _label_counts(split, names) for name, split in splits.items()},
        "removed": removed,
        "split_seed": cfg.split_seed,
        **(
            {
                "shots_per_class": {
                    "shots": cfg.shots_per_class,
                    "short": {
                        label: count
                        for label, count in _label_counts(splits["train"], names).items()
                        if count < cfg.shots_per_class
                    },
                }
            }
            if cfg.shots_per_class
            else {}
        ),
        "fingerprints": split_fingerprints,
        "fingerprint": hashlib.sha256(
            "".join(f"{k}:{v}\n" for k, v in sorted(split_fingerprints.items())).encode()
        ).hexdigest(),
    }
    if modality == "image":
        every = pa.concat_tables(splits.values())
        formats = pc.value_counts(every["image_format"]).to_pylist()
        card["images"] = {
            "formats": {
                str(item["values"]): int(item["counts"])
                for item in sorted(formats, key=lambda i: i["values"])
            },
            "width": [int(pc.min(every["width"]).as_py()), int(pc.max(every["width"]).as_py())],
            "height": [int(pc.min(every["height"]).as_py()), int(pc.max(every["height"]).as_py())],
        }
    if modality == "audio":
        card["audio"] = _audio_card(cfg, pa.concat_tables(splits.values()))
    return card


def _audio_card(cfg: DataConfig, every: pa.Table) -> dict[str, Any]:
    """What the clips were before ingest decoded them: formats, sample rates, lengths, how many were cut."""
    seconds = every["seconds"].to_numpy()

    def counts(column: str) -> dict[str, int]:
        found = pc.value_counts(every[column]).to_pylist()
        return {str(item["values"]): int(item["counts"]) for item in sorted(found, key=lambda i: i["values"])}

    return {
        "formats": counts("audio_format"),
        "source_sample_rates": counts("source_rate"),
        "sample_rate": cfg.sample_rate,
        "seconds": {
            "min": round(float(seconds.min()), 3),
            "median": round(float(np.median(seconds)), 3),
            "max": round(float(seconds.max()), 3),
            "total": round(float(seconds.sum()), 1),
        },
        "max_seconds": cfg.max_seconds,
        "cut": int(pc.sum(every["cut"]).as_py() or 0),
    }


def _label_counts(split: pa.Table, names: list[str]) -> dict[str, int]:
    counts = {item["values"]: item["counts"] for item in pc.value_counts(split["label"]).to_pylist()}
    return {label: int(counts.get(label, 0)) for label in names}


def _split_table(split: pa.Table, names: list[str], modality: str) -> pa.Table:
    """A split as stored: id, the text (or the image's name and encoded bytes, or the clip's name,
    float32 samples and their rate), the label's index."""
    content = {
        "text": lambda: {"text": split["key"]},
        "image": lambda: {"name": split["name"], "image": split["image"]},
        "audio": lambda: {
            "name": split["name"],
            "audio": split["audio"],
            "sample_rate": split["sample_rate"],
        },
    }[modality]()
    return pa.table(
        {
            "id": pa.array(np.arange(split.num_rows), pa.int64()),
            **content,
            "label": pc.cast(pc.index_in(split["label"], value_set=pa.array(names, pa.string())), pa.int64()),
        }
    )
