"""ingest: read a labelled text or image dataset, clean it, split it, and describe it in a data card.

Text comes from CSV, TSV, JSON Lines or Parquet. Images come from an image folder (one subfolder
per class) or from such a table with an image column (paths or the encoded bytes). Every row gets
a key: the normalised text, or the sha256 of the image bytes. Empty rows, unreadable images, exact
duplicates and held-out rows whose key also appears in training (leakage) are dropped; stratified
splits are cut with a fixed seed; `train/validation/test.parquet` and `data_card.json` are written
into one directory. Images are stored in the splits as their original encoded bytes, so later stages
need nothing but this directory.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from warmstart.artifacts import CARD_FILE
from warmstart.config import DataConfig
from warmstart.errors import DataError, WarmstartError, naming
from warmstart.storage import fetch_file, fetch_tree, is_archive, list_s3, scheme_of, unpack_archive

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
SLICE_ROWS = 65_536
# What numpy and pandas (nan, NaN, <NA>), JSON and SQL (null, NULL) and spreadsheets (#N/A, N/A) write
# for a missing value. "None" and "NA" are left out: each is also a plausible class name.
MISSING_MARKERS = pa.array(["nan", "NaN", "NAN", "<NA>", "null", "NULL", "Null", "#N/A", "N/A", "n/a"])
LARGE_EMPTY_AND_LF = (pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string()))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def detect_format(path: Path, requested: str, uri: str, what: str) -> str:
    if requested != "auto":
        return requested
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zst")]
    fmt = FORMATS_BY_SUFFIX.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(
            f"{what} '{uri}': cannot tell the format from the extension '{path.suffix}'; "
            f"set data.format to one of csv, tsv, jsonl, parquet"
        )
    return fmt


def read_table(uri: str, cfg: DataConfig, what: str) -> tuple[pa.Table, str]:
    """Read `uri` into an Arrow table with columns key and label (str), plus image, name, readable,
    width, height and image_format for images; the format read comes back too.

    A directory (or an s3:// prefix) is an image folder. Remote files (s3://, http(s)://) are
    downloaded to a temporary directory first and removed after.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-ingest-") as scratch:
        try:
            if scheme_of(uri) == "s3" and (uri.endswith("/") or list_s3(uri)):
                path = fetch_tree(uri, Path(scratch) / "folder", IMAGE_SUFFIXES)
            else:
                path = fetch_file(uri, what, Path(scratch))
            if path.is_file() and is_archive(path.name):
                path = _archive_content(unpack_archive(path, Path(scratch) / "unpacked", uri), uri, what)
        except DataError:
            raise
        except WarmstartError as err:
            raise naming(DataError, what, err) from None
        if path.is_dir():
            return _read_image_folder(path, uri, what), "imagefolder"
        return _read_local_table(path, uri, cfg, what, Path(scratch))


def _archive_content(root: Path, uri: str, what: str) -> Path:
    """What an unpacked archive holds: its one data file, or else the image folder it is."""
    files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
    data = [p for p in files if p.suffix.lower() in FORMATS_BY_SUFFIX or _compressed(p)]
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(data) == 1 and not folders:
        return data[0]
    if folders and not data:
        return root
    found = ", ".join(sorted(p.name for p in data + folders)[:5])
    raise DataError(
        f"{what} '{uri}' is an archive holding {len(data)} data files and {len(folders)} folders ({found}); "
        f"it must hold one data file, or one folder per class of images"
    )


def _read_image_folder(root: Path, uri: str, what: str) -> pa.Table:
    """One class per subfolder, images anywhere below it; other files are ignored."""
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray or not classes:
        raise DataError(
            f"{what} '{uri}' is a folder, read as an image folder, but "
            + (
                f"it has images outside any class folder ({', '.join(stray[:3])})"
                if stray
                else "it has no subfolders"
            )
            + "; put each class's images in a subfolder named after the class, or point it at a data file"
        )
    names, images, labels = [], [], []
    for folder in classes:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                names.append(path.relative_to(root).as_posix())
                images.append(path.read_bytes())
                labels.append(folder.name)
    if not images:
        raise DataError(
            f"{what} '{uri}': the class folders ({', '.join(d.name for d in classes[:5])}) hold no images; "
            f"supported files end in {', '.join(IMAGE_SUFFIXES)}"
        )
    return _image_frame(names, images, labels)


def _image_frame(names: list[str], images: list[bytes | None], labels: list[Any]) -> pa.Table:
    """Images keyed by the sha256 of their bytes, with size and format read from their headers;
    an image that cannot be decoded keeps no key (it is dropped and counted as unreadable)."""
    info = [_image_info(data) for data in images]
    return pa.table(
        {
            "key": pa.array(
                [hashlib.sha256(data).hexdigest() if data else "" for data in images], pa.string()
            ),
            "label": pa.array(["" if v is None else str(v).strip() for v in labels], pa.string()),
            "image": pa.array(images, pa.binary()),
            "name": pa.array(names, pa.string()),
            "readable": pa.array([i is not None for i in info], pa.bool_()),
            "width": pa.array([i[1] if i else 0 for i in info], pa.int64()),
            "height": pa.array([i[2] if i else 0 for i in info], pa.int64()),
            "image_format": pa.array([i[0] if i else "" for i in info], pa.string()),
        }
    )


def _image_info(data: bytes | None) -> tuple[str, int, int] | None:
    """(format, width, height) of an encoded image, or None when it cannot be decoded."""
    if not data:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes the pixels: a truncated file fails here, not in training
            return image.format or "", image.width, image.height
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def _images_from_column(
    column: pa.ChunkedArray, base: str, uri: str, what: str, scratch: Path
) -> tuple[list[str], list[bytes | None]]:
    """Each row's name and encoded image: bytes as they are; paths read relative to `base` (the data
    file's folder), absolute, or as s3:// and http(s):// URIs; {bytes, path} structs either way."""
    column = column.combine_chunks()
    kind = column.type
    if pa.types.is_struct(kind) and {"bytes", "path"} <= {field.name for field in kind}:
        items = [item or {} for item in column.to_pylist()]
        values = [item.get("bytes") or item.get("path") for item in items]
        names = [item.get("path") or f"row {row}" for row, item in enumerate(items, start=1)]
    elif any(test(kind) for test in (pa.types.is_binary, pa.types.is_large_binary)):
        values = column.to_pylist()
        names = [f"row {row}" for row in range(1, len(values) + 1)]
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = column.to_pylist()
        names = [value or f"row {row}" for row, value in enumerate(values, start=1)]
    else:
        raise DataError(
            f"{what} '{uri}': the image column holds {column.type}; it needs image file paths (text) or the "
            f"encoded image bytes"
        )
    images: list[bytes | None] = []
    for row, value in enumerate(values, start=1):
        if not isinstance(value, str) or not value.strip():
            images.append(value or None)
            continue
        images.append(_read_image_file(value.strip(), base, uri, what, row, scratch))
    return names, images


def _read_image_file(value: str, base: str, uri: str, what: str, row: int, scratch: Path) -> bytes:
    if scheme_of(value) in ("s3", "http", "https", "file"):
        location = value
    elif Path(value).is_absolute():
        location = value
    elif scheme_of(base) in ("s3", "http", "https"):
        location = f"{base.rstrip('/')}/{value}"
    else:
        location = str(Path(base) / value)
    try:
        return fetch_file(location, "image", scratch).read_bytes()
    except WarmstartError as err:
        relative = location != value
        raise DataError(
            f"{what} '{uri}', row {row}: {err}"
            + (
                f" (the row says '{value}'; relative paths are read from the data file's folder)"
                if relative
                else ""
            )
        ) from None


def _read_local_table(
    path: Path, uri: str, cfg: DataConfig, what: str, scratch: Path
) -> tuple[pa.Table, str]:
    fmt = detect_format(path, cfg.format, uri, what)
    if path.stat().st_size == 0:
        raise DataError(f"{what} '{uri}' is an empty file; it needs a header and labelled rows")
    content_column = cfg.image_column or cfg.text_column
    _check_kind(path, fmt, uri, what)
    folder = path.parent  # relative image paths are read from here, not from a re-encoded copy's
    path = _as_utf8(path, fmt, cfg.encoding, uri, what, scratch)
    bad_rows: list[Any] = []
    with _unreadable_as_data_error(what, uri, fmt, path, bad_rows):
        schema, batches = _open_batches(path, fmt, (content_column, cfg.label_column), bad_rows)
    header = schema.names
    missing = [c for c in (content_column, cfg.label_column) if c not in header]
    if missing:
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
        keys = {
            content_column: "data.image_column" if cfg.image_column else "data.text_column",
            cfg.label_column: "data.label_column",
        }
        raise DataError(
            f"{what} '{uri}' has no column {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(repr(c) for c in header) or 'none'}; "
            f"set {', '.join(keys[m] for m in missing)} to one of them"
            + ("" if cfg.image_column else " (for images, set data.image_column instead)")
        )
    # Batch by batch, so the raw text and its normalised form are never both held whole.
    contents, labels = [], []
    with _unreadable_as_data_error(what, uri, fmt, path, bad_rows):
        for batch in batches:
            content = batch.column(content_column)
            contents.append(content if cfg.image_column else _normalize_text(content))
            labels.append(pc.utf8_trim_whitespace(pc.cast(batch.column(cfg.label_column), pa.string())))
    if not contents or sum(len(c) for c in contents) == 0:
        raise DataError(f"{what} '{uri}' has a header but no rows; it needs labelled examples")
    label = pa.chunked_array(labels, pa.string())
    if cfg.image_column:
        remote = scheme_of(uri) in ("s3", "http", "https")
        base = uri.rsplit("/", 1)[0] if remote else str(folder)
        column = pa.chunked_array(contents, schema.field(content_column).type)
        names, images = _images_from_column(column, base, uri, what, scratch)
        return _image_frame(names, images, label.to_pylist()), fmt
    return pa.table({"key": pa.chunked_array(contents, pa.string()), "label": label}), fmt


BATCH_ROWS = 65_536


def _open_batches(
    path: Path, fmt: str, columns: tuple[str, str], bad_rows: list[Any]
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The file's columns, and its rows as record batches read as they are consumed (CSV, TSV and
    Parquet stream; JSON Lines is read whole). CSV's text and label columns are read as strings, so
    a label column of digits keeps the labels as written."""
    if fmt in ("csv", "tsv"):
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=8 << 20),
            parse_options=pacsv.ParseOptions(
                delimiter="\t" if fmt == "tsv" else ",",
                quote_char=False if fmt == "tsv" else '"',
                newlines_in_values=fmt == "csv",
                # Kept to say where the row is; reading still stops at it.
                invalid_row_handler=lambda row: bad_rows.append(row) or "error",
            ),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=False, column_types={name: pa.string() for name in columns}
            ),
        )
        return reader.schema, iter(reader)
    if fmt == "jsonl":
        table = pajson.read_json(path)
        return table.schema, iter(table.to_batches(BATCH_ROWS))
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    present = [name for name in columns if name in schema.names]
    return schema, parquet.iter_batches(BATCH_ROWS, columns=present)


@contextmanager
def _unreadable_as_data_error(
    what: str, uri: str, fmt: str, path: Path, bad_rows: list[Any]
) -> Iterator[None]:
    try:
        yield
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        if fmt != "parquet" and not _compressed(path):
            _check_utf8(path, uri, what)  # a parser's complaint about bytes is better said as where they are
            if bad_rows:
                raise DataError(_bad_row(bad_rows[0], path, uri, what, fmt)) from None
        reason = str(err).splitlines()[0]
        if len(reason) > 200:
            reason = reason[:200] + "…"
        raise DataError(
            f"{what} '{uri}' could not be read as {fmt}: {reason}; "
            f"check the file, or set data.format if it is not {fmt}"
        ) from None


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")
PARQUET_MAGIC = b"PAR1"


def _compressed(path: Path) -> bool:
    return path.suffix.lower() in COMPRESSED_SUFFIXES


def _check_kind(path: Path, fmt: str, uri: str, what: str) -> None:
    """Refuse a Parquet file named as text, and a text file named as Parquet, before a parser
    reports either as garbled rows."""
    if _compressed(path):
        return
    with open(path, "rb") as handle:
        head = handle.read(4)
    if fmt != "parquet" and head == PARQUET_MAGIC:
        raise DataError(
            f"{what} '{uri}' is a Parquet file (it starts with PAR1), not {fmt}; "
            f"set data.format=parquet or give it a .parquet name"
        )
    if fmt == "parquet" and head != PARQUET_MAGIC:
        guess = {"{": "jsonl", "[": "jsonl"}.get(head[:1].decode("latin-1"), "csv")
        raise DataError(
            f"{what} '{uri}' is not a Parquet file (it does not start with PAR1); if it is text, "
            f"set data.format (csv, tsv or jsonl; it looks like {guess}) or rename it"
        )


def _as_utf8(path: Path, fmt: str, encoding: str, uri: str, what: str, scratch: Path) -> Path:
    """The file itself when it is UTF-8 (or Parquet); otherwise a UTF-8 copy in `scratch`, decoded
    from `encoding` as it streams."""
    if fmt == "parquet" or codecs.lookup(encoding).name == "utf-8":
        return path
    if _compressed(path):
        raise DataError(
            f"{what} '{uri}': data.encoding={encoding} applies to uncompressed files; decompress it, or save "
            f"it as UTF-8"
        )
    copy = scratch / f"utf8-{path.name}"
    try:
        with (
            open(path, encoding=encoding, newline="") as source,
            open(copy, "w", encoding="utf-8", newline="") as target,
        ):
            shutil.copyfileobj(source, target, 1 << 20)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{what} '{uri}' could not be decoded as data.encoding={encoding} ({err.reason}); "
            f"set data.encoding to the file's encoding"
        ) from None
    return copy


def _bad_row(row: Any, path: Path, uri: str, what: str, fmt: str) -> str:
    """A CSV/TSV row with the wrong number of fields, said with its line number (found by looking
    for the row's first line in the file) and the likely cause."""
    first_line = row.text.split("\n", 1)[0].encode("utf-8")
    data = path.read_bytes()
    found = -1 if data.startswith(first_line) else data.find(b"\n" + first_line)
    newlines = data.count(b"\n", 0, found + 1)
    line = "a row" if found == -1 and not data.startswith(first_line) else f"line {newlines + 1}"
    shown = row.text.split("\n", 1)[0][:80]
    delimiter = "tab" if fmt == "tsv" else "comma"
    if row.actual_columns < row.expected_columns and "\n" in row.text and row.text.lstrip().startswith('"'):
        cause = "it opens a quote that is never closed, so the rest of the file is read as one field; close the quote"
    elif row.actual_columns > row.expected_columns:
        cause = f"a field holds a {delimiter}; put that field in double quotes"
    else:
        cause = "fill in the missing fields or remove the row"
    return (
        f"{what} '{uri}', {line}: {row.actual_columns} fields where the header has {row.expected_columns} "
        f"({shown!r}); {cause}"
    )


def _check_utf8(path: Path, uri: str, what: str) -> None:
    """Raise a DataError naming the line and byte of the first byte that is not UTF-8, if any."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, column = 1, 0  # column: the bytes of the current line before this chunk
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # err.object is the chunk after the previous chunk's unfinished character, if any.
                at = err.start - (len(err.object) - len(chunk))
                before = chunk[: max(at, 0)]
                newlines = before.count(b"\n")
                where = len(before) - before.rfind(b"\n") - 1 if newlines else column + at
                raise DataError(
                    f"{what} '{uri}' is not UTF-8: line {line + newlines}, byte {where + 1} is "
                    f"0x{err.object[err.start]:02x}; set data.encoding to the file's encoding (for example "
                    f"latin-1 or cp1252), or save it as UTF-8"
                ) from None
            newlines = chunk.count(b"\n")
            line += newlines
            column = len(chunk) - chunk.rfind(b"\n") - 1 if newlines else column + len(chunk)


def _normalize_text(column: pa.Array) -> pa.Array:
    """NFC, whitespace collapsed to single spaces, trimmed: the form duplicates and leakage are judged on."""
    text = pc.cast(column, pa.string())
    text = pc.utf8_normalize(text, "NFC")
    text = pc.replace_substring_regex(text, r"\s+", " ")
    return pc.utf8_trim_whitespace(text)


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


def ingest(cfg: DataConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, clean and split the data in `cfg`; write the splits and the data card to `output_dir`."""
    output_dir = Path(output_dir)
    source, fmt = read_table(cfg.source, cfg, "data.source")
    modality = "image" if "image" in source.column_names else "text"
    source, keys, removed = _clean(source)
    if source.num_rows == 0:
        unreadable = f" or an unreadable image ({removed['unreadable']})" if removed["unreadable"] else ""
        raise DataError(
            f"data.source '{cfg.source}' has no usable rows: every row has an empty or missing "
            f"{'image' if modality == 'image' else 'text'} or label ({removed['empty']}){unreadable}; "
            f"check data.text_column and data.label_column"
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
        if ("image" in test.column_names) != (modality == "image"):
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
    splits = {"train": source.take(train_rows), "validation": source.take(kept), "test": test}
    return splits, leaked, removed


def _check_labels(cfg: DataConfig, fmt: str, names: list[str], splits: dict[str, pa.Table]) -> None:
    """At least two classes, none in validation or test that training lacks, and no empty split."""
    if len(names) < 2:
        where = "class folder" if fmt == "imagefolder" else f"column '{cfg.label_column}'"
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
        "label_column": cfg.label_column if fmt != "imagefolder" else None,
        "label_names": names,
        "rows": {name: len(split) for name, split in splits.items()},
        "label_distribution": {name: _label_counts(split, names) for name, split in splits.items()},
        "removed": removed,
        "split_seed": cfg.split_seed,
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
    return card


def _label_counts(split: pa.Table, names: list[str]) -> dict[str, int]:
    counts = {item["values"]: item["counts"] for item in pc.value_counts(split["label"]).to_pylist()}
    return {label: int(counts.get(label, 0)) for label in names}


def _split_table(split: pa.Table, names: list[str], modality: str) -> pa.Table:
    """A split as stored: id, the text (or the image's name and encoded bytes), the label's index."""
    content = (
        {"name": split["name"], "image": split["image"]} if modality == "image" else {"text": split["key"]}
    )
    return pa.table(
        {
            "id": pa.array(np.arange(split.num_rows), pa.int64()),
            **content,
            "label": pc.cast(pc.index_in(split["label"], value_set=pa.array(names, pa.string())), pa.int64()),
        }
    )


def data_card_markdown(card: dict[str, Any]) -> str:
    """The data card as a Markdown section, for the gate report and the model card."""
    names = card["label_names"]
    lines = [
        f"- source: `{card['source']}`"
        + (f", test: `{card['test_source']}`" if card.get("test_source") else ""),
        _columns_markdown(card),
        f"- fingerprint: `{card['fingerprint']}`",
        f"- removed: {card['removed']['empty']} empty, "
        + (f"{card['removed']['unreadable']} unreadable, " if card.get("modality") == "image" else "")
        + f"{card['removed']['duplicates']} duplicate rows; {card['removed']['leakage']['test']} test and "
        f"{card['removed']['leakage']['validation']} validation rows whose "
        f"{'image' if card.get('modality') == 'image' else 'text'} is in training (leakage)",
        "",
        "| split | rows | " + " | ".join(f"label `{n}`" for n in names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for split in SPLITS:
        dist = card["label_distribution"][split]
        lines.append(f"| {split} | {card['rows'][split]} | " + " | ".join(str(dist[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _columns_markdown(card: dict[str, Any]) -> str:
    if card.get("modality") != "image":
        return f"- text column `{card['text_column']}`, label column `{card['label_column']}`, format {card['format']}"
    images = card["images"]
    sizes = (
        f"{images['width'][0]}–{images['width'][1]} × {images['height'][0]}–{images['height'][1]} pixels, "
        + ", ".join(f"{count} {kind}" for kind, count in images["formats"].items())
    )
    if card["format"] == "imagefolder":
        return f"- images in class folders; {sizes}"
    return f"- image column `{card['image_column']}`, label column `{card['label_column']}`, format {card['format']}; {sizes}"
