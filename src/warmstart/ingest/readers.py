"""Reading a data source into one Arrow table: format detection, CSV/TSV/JSON Lines/Parquet in batches
(compressed or not, any text encoding), image and audio folders, image and audio columns (paths, URIs or
bytes), archives; every unreadable input is one DataError naming the line as an editor shows it.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from warmstart.audio import AUDIO_SUFFIXES, decode
from warmstart.config import DataConfig
from warmstart.errors import DataError, WarmstartError, naming
from warmstart.storage import fetch_file, fetch_tree, is_archive, list_s3, scheme_of, unpack_archive

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


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SUFFIXES = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES}


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
    width, height and image_format for images, or audio, sample_rate, name, readable, seconds,
    source_rate, audio_format and cut for audio; the format read comes back too.

    A directory (or an s3:// prefix) is an image or audio folder. Remote files (s3://, http(s)://)
    are downloaded to a temporary directory first and removed after.
    """
    if cfg.image_column and cfg.audio_column:
        raise DataError(
            f"{what} '{uri}': data.image_column and data.audio_column are both set; a table holds images "
            f"or audio, so set one of them"
        )
    with tempfile.TemporaryDirectory(prefix="warmstart-ingest-") as scratch:
        try:
            if scheme_of(uri) == "s3" and (uri.endswith("/") or list_s3(uri)):
                path = fetch_tree(uri, Path(scratch) / "folder", IMAGE_SUFFIXES + AUDIO_SUFFIXES)
            else:
                path = fetch_file(uri, what, Path(scratch))
            if path.is_file() and is_archive(path.name):
                path = _archive_content(unpack_archive(path, Path(scratch) / "unpacked", uri), uri, what)
        except DataError:
            raise
        except WarmstartError as err:
            raise naming(DataError, what, err) from None
        if path.is_dir():
            return _read_folder(path, uri, what, cfg)
        return _read_local_table(path, uri, cfg, what, Path(scratch))


def _archive_content(root: Path, uri: str, what: str) -> Path:
    """What an unpacked archive holds: its one data file, or else the image or audio folder it is."""
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
        f"it must hold one data file, or one folder per class of images or audio clips"
    )


def _read_folder(root: Path, uri: str, what: str, cfg: DataConfig) -> tuple[pa.Table, str]:
    """One class per subfolder, images (or audio clips) anywhere below it; other files are ignored.
    The format read is 'imagefolder' or 'audiofolder'."""
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    media = IMAGE_SUFFIXES + AUDIO_SUFFIXES
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in media)
    if stray or not classes:
        raise DataError(
            f"{what} '{uri}' is a folder, read as an image or audio folder, but "
            + (
                f"it has {'images' if any(n.lower().endswith(IMAGE_SUFFIXES) for n in stray) else 'audio files'} "
                f"outside any class folder ({', '.join(stray[:3])})"
                if stray
                else "it has no subfolders"
            )
            + "; put each class's files in a subfolder named after the class, or point it at a data file"
        )
    found: dict[str, list[tuple[Path, str]]] = {"image": [], "audio": []}
    for folder in classes:
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            for kind, suffixes in SUFFIXES.items():
                if path.suffix.lower() in suffixes:
                    found[kind].append((path, folder.name))
    if found["image"] and found["audio"]:
        raise DataError(
            f"{what} '{uri}' holds both images ({found['image'][0][0].relative_to(root).as_posix()}) and audio "
            f"({found['audio'][0][0].relative_to(root).as_posix()}); a folder is one kind of data, so keep one kind"
        )
    kind = "audio" if found["audio"] else "image"
    if not found[kind]:
        raise DataError(
            f"{what} '{uri}': the class folders ({', '.join(d.name for d in classes[:5])}) hold no images or "
            f"audio; supported files end in {', '.join(media)}"
        )
    names = [path.relative_to(root).as_posix() for path, _ in found[kind]]
    contents: list[bytes | None] = [path.read_bytes() for path, _ in found[kind]]
    labels = [label for _, label in found[kind]]
    if kind == "audio":
        return _audio_frame(names, contents, labels, cfg), "audiofolder"
    return _image_frame(names, contents, labels), "imagefolder"


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


def _audio_frame(names: list[str], clips: list[bytes | None], labels: list[Any], cfg: DataConfig) -> pa.Table:
    """Audio decoded once, mono, at data.sample_rate and cut to data.max_seconds, stored as float32
    samples and keyed by the sha256 of those samples (so the same sound in two containers, or at a
    lossless re-encoding, is one clip); a clip that cannot be decoded is dropped and counted as
    unreadable. Each clip's original rate, length and format are kept for the data card."""
    decoded, keys = [], []
    for index, data in enumerate(clips):
        clip = decode(data, cfg.sample_rate, cfg.max_seconds) if data else None
        decoded.append(clip)
        keys.append(hashlib.sha256(clip.signal.tobytes() if clip else data).hexdigest() if data else "")
        clips[index] = None  # the encoded file is not needed once decoded
    samples = [clip.signal.tobytes() if clip else None for clip in decoded]
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "label": pa.array(["" if v is None else str(v).strip() for v in labels], pa.string()),
            "audio": pa.array(samples, pa.large_binary()),
            "sample_rate": pa.array([cfg.sample_rate] * len(samples), pa.int32()),
            "name": pa.array(names, pa.string()),
            "readable": pa.array([clip is not None for clip in decoded], pa.bool_()),
            "seconds": pa.array([clip.seconds if clip else 0.0 for clip in decoded], pa.float64()),
            "source_rate": pa.array([clip.source_rate if clip else 0 for clip in decoded], pa.int64()),
            "audio_format": pa.array([clip.format if clip else "" for clip in decoded], pa.string()),
            "cut": pa.array([bool(clip and clip.cut) for clip in decoded], pa.bool_()),
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


def _files_from_column(
    column: pa.ChunkedArray,
    base: str,
    uri: str,
    what: str,
    scratch: Path,
    place: Any = None,
    media: str = "image",
) -> tuple[list[str], list[bytes | None]]:
    """Each row's name and encoded file (an image, or an audio clip): bytes as they are; paths read
    relative to `base` (the data file's folder), absolute, or as s3:// and http(s):// URIs; {bytes,
    path} structs either way."""
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
            f"{what} '{uri}': the {media} column holds {column.type}; it needs {media} file paths (text) or the "
            f"encoded {media} bytes"
        )
    files: list[bytes | None] = []
    for row, value in enumerate(values, start=1):
        if not isinstance(value, str) or not value.strip():
            files.append(value or None)
            continue
        where = place(row) if place else f"row {row}"
        files.append(_read_file(value.strip(), base, uri, what, where, scratch, media))
    return names, files


def _read_file(value: str, base: str, uri: str, what: str, where: str, scratch: Path, media: str) -> bytes:
    if scheme_of(value) in ("s3", "http", "https", "file"):
        location = value
    elif Path(value).is_absolute():
        location = value
    elif scheme_of(base) in ("s3", "http", "https"):
        location = f"{base.rstrip('/')}/{value}"
    else:
        location = str(Path(base) / value)
    try:
        return fetch_file(location, media, scratch).read_bytes()
    except WarmstartError as err:
        relative = location != value
        raise DataError(
            f"{what} '{uri}', {where}: {err}"
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
    media = "image" if cfg.image_column else "audio" if cfg.audio_column else ""
    content_column = cfg.image_column or cfg.audio_column or cfg.text_column
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
            content_column: f"data.{media}_column" if media else "data.text_column",
            cfg.label_column: "data.label_column",
        }
        raise DataError(
            f"{what} '{uri}' has no column {', '.join(repr(m) for m in missing)}; "
            f"columns found: {', '.join(repr(c) for c in header) or 'none'}; "
            f"set {', '.join(keys[m] for m in missing)} to one of them"
            + ("" if media else " (for images or audio, set data.image_column or data.audio_column instead)")
        )
    # Batch by batch, so the raw text and its normalised form are never both held whole.
    contents, labels = [], []
    with _unreadable_as_data_error(what, uri, fmt, path, bad_rows):
        for batch in batches:
            content = batch.column(content_column)
            contents.append(content if media else _normalize_text(content))
            labels.append(pc.utf8_trim_whitespace(pc.cast(batch.column(cfg.label_column), pa.string())))
    if not contents or sum(len(c) for c in contents) == 0:
        raise DataError(f"{what} '{uri}' has a header but no rows; it needs labelled examples")
    label = pa.chunked_array(labels, pa.string())
    if media:
        remote = scheme_of(uri) in ("s3", "http", "https")
        base = uri.rsplit("/", 1)[0] if remote else str(folder)
        column = pa.chunked_array(contents, schema.field(content_column).type)
        place = None if fmt == "parquet" else (lambda row: _line_of_row(path, fmt, row))
        names, files = _files_from_column(column, base, uri, what, scratch, place, media)
        if media == "audio":
            return _audio_frame(names, files, label.to_pylist(), cfg), fmt
        return _image_frame(names, files, label.to_pylist()), fmt
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
            if fmt == "jsonl" and (bad := _bad_json_line(path, uri, what)):
                raise DataError(bad) from None
        # pyarrow counts JSON rows from 0 within a block, which is no line a person can find.
        reason = re.sub(r" in row \d+$", "", str(err).splitlines()[0])
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


def _bad_json_line(path: Path, uri: str, what: str) -> str | None:
    """What is wrong with the first line of a JSON Lines file that pyarrow cannot read, said with the
    line's number as an editor shows it: not JSON, not an object, or a field whose kind of value
    changes from the lines above (text, then a number). None when no line is at fault."""
    kinds: dict[str, tuple[str, int]] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            shown = line.strip()[:80]
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                return (
                    f"{what} '{uri}', line {number}: not valid JSON ({err.msg}, column {err.colno}): "
                    f"{shown!r}; fix or remove the line"
                )
            if not isinstance(value, dict):
                return (
                    f"{what} '{uri}', line {number}: a JSON {_json_kind(value)}, where each line must be one "
                    f'object such as {{"text": "...", "label": "..."}}: {shown!r}'
                )
            for key, field in value.items():
                if field is None:
                    continue
                first = kinds.setdefault(key, (_json_kind(field), number))
                if first[0] != _json_kind(field):
                    return (
                        f"{what} '{uri}', line {number}: '{key}' is a {_json_kind(field)} where line {first[1]} "
                        f"has a {first[0]}; give every line's '{key}' the same kind of value (quote numbers "
                        f"meant as labels)"
                    )
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _line_of_row(path: Path, fmt: str, row: int) -> str:
    """'line N': where data row `row` (1-based, after the header) starts in a CSV, TSV or JSON Lines
    file, as an editor numbers lines. Empty lines are skipped, as the readers skip them; a CSV field
    may span lines."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        if fmt == "csv":
            reader, seen, start = csv.reader(handle), -1, 1
            for fields in reader:
                if fields:
                    seen += 1  # the header is row 0
                    if seen == row:
                        return f"line {start}"
                start = reader.line_num + 1
            return f"row {row}"
        seen = -1 if fmt == "tsv" else 0
        for number, line in enumerate(handle, start=1):
            if line.strip("\r\n"):
                seen += 1
                if seen == row:
                    return f"line {number}"
    return f"row {row}"


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
