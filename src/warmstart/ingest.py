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

import hashlib
import io
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
from warmstart.storage import fetch_file, fetch_tree, list_s3, scheme_of

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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


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
    """Read `uri` into a frame with columns key and label (str), plus image, name, width, height and
    image_format for images; the format read comes back too.

    A directory (or an s3:// prefix) is an image folder. Remote files (s3://, http(s)://) are
    downloaded to a temporary directory first and removed after.
    """
    with tempfile.TemporaryDirectory(prefix="warmstart-ingest-") as scratch:
        try:
            if scheme_of(uri) == "s3" and (uri.endswith("/") or list_s3(uri)):
                path = fetch_tree(uri, Path(scratch) / "folder", IMAGE_SUFFIXES)
            else:
                path = fetch_file(uri, what, Path(scratch))
        except WarmstartError as err:
            raise DataError(str(err)) from None
        if path.is_dir():
            return _read_image_folder(path, uri, what), "imagefolder"
        return _read_local_table(path, uri, cfg, what, Path(scratch))


def _read_image_folder(root: Path, uri: str, what: str) -> pd.DataFrame:
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


def _image_frame(names: list[str], images: list[bytes | None], labels: list[Any]) -> pd.DataFrame:
    """Images keyed by the sha256 of their bytes, with size and format read from their headers;
    an image that cannot be decoded keeps no key (it is dropped and counted as unreadable)."""
    info = [_image_info(data) for data in images]
    return pd.DataFrame(
        {
            "key": [hashlib.sha256(data).hexdigest() if data else "" for data in images],
            "label": pd.Series(labels, dtype=object).map(lambda v: "" if v is None else str(v).strip()),
            "image": images,
            "name": names,
            "readable": [i is not None for i in info],
            "width": [i[1] if i else 0 for i in info],
            "height": [i[2] if i else 0 for i in info],
            "image_format": [i[0] if i else "" for i in info],
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
) -> tuple[pd.DataFrame, str]:
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
    content_column = cfg.image_column or cfg.text_column
    missing = [c for c in (content_column, cfg.label_column) if c not in table.column_names]
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
    if table.num_rows == 0:
        raise DataError(f"{what} '{uri}' has a header but no rows; it needs labelled examples")
    label = pc.utf8_trim_whitespace(pc.cast(table.column(cfg.label_column), pa.string()))
    if cfg.image_column:
        remote = scheme_of(uri) in ("s3", "http", "https")
        base = uri.rsplit("/", 1)[0] if remote else str(path.parent)
        names, images = _images_from_column(table.column(cfg.image_column), base, uri, what, scratch)
        return _image_frame(names, images, label.to_pylist()), fmt
    text = _normalize_text(table.column(cfg.text_column))
    return pd.DataFrame({"key": text.to_pandas(), "label": label.to_pandas()}), fmt


def _normalize_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """NFC, whitespace collapsed to single spaces, trimmed: the form duplicates and leakage are judged on."""
    text = pc.cast(column, pa.string())
    text = pc.utf8_normalize(text, "NFC")
    text = pc.replace_substring_regex(text, r"\s+", " ")
    return pc.utf8_trim_whitespace(text)


def _clean(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """`frame` without empty rows, unreadable images and exact duplicates (same key and label)."""
    keep = frame["key"].notna() & (frame["key"] != "") & frame["label"].notna() & (frame["label"] != "")
    empty = int((~keep).sum())
    frame = frame[keep]
    unreadable = 0
    if "readable" in frame:
        unreadable = int((~frame["readable"]).sum())
        frame = frame[frame["readable"]]
    deduped = frame.drop_duplicates(subset=["key", "label"]).reset_index(drop=True)
    return deduped, {"empty": empty, "unreadable": unreadable, "duplicates": len(frame) - len(deduped)}


def _drop_leaked(frame: pd.DataFrame, seen: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`frame` without the rows whose key is also in `seen` (Arrow's hash lookup: pandas' isin on
    Arrow strings goes through Python objects, 10× slower at a million rows)."""
    keys = pa.Array.from_pandas(frame["key"]).cast(pa.string())
    leaked = pc.is_in(keys, value_set=pa.Array.from_pandas(seen["key"]).cast(pa.string()))
    mask = leaked.to_numpy(zero_copy_only=False)
    return frame[~mask].reset_index(drop=True), int(mask.sum())


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
    values = sorted(labels.unique().tolist())
    try:
        return sorted(values, key=int)
    except ValueError:
        return values


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the sorted rows (label and key): the same content gives the same value in any row
    order, and the same images give the same value whether read from a folder or a table."""
    rows = sorted(frame["label"] + "\t" + frame["key"])
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def ingest(cfg: DataConfig, output_dir: str | Path) -> dict[str, Any]:
    """Read, clean and split the data in `cfg`; write the splits and the data card to `output_dir`."""
    output_dir = Path(output_dir)
    source, fmt = read_table(cfg.source, cfg, "data.source")
    modality = "image" if "image" in source else "text"
    source, removed = _clean(source)
    leaked = {"test": 0, "validation": 0}
    if cfg.test_source:
        test, _ = read_table(cfg.test_source, cfg, "data.test_source")
        if ("image" in test) != (modality == "image"):
            raise DataError(
                f"data.source '{cfg.source}' holds {modality}s but data.test_source '{cfg.test_source}' does "
                f"not; point both at the same kind of data"
            )
        test, test_removed = _clean(test)
        removed = {reason: count + test_removed[reason] for reason, count in removed.items()}
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
        where = "class folder" if fmt == "imagefolder" else f"column '{cfg.label_column}'"
        raise DataError(
            f"data.source '{cfg.source}' has a single class ({names[0]!r}) in {where}; "
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
        pq.write_table(_split_table(split, label_ids, modality), output_dir / f"{name}.parquet")

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
        "label_distribution": {
            name: {label: int((split["label"] == label).sum()) for label in names}
            for name, split in splits.items()
        },
        "removed": {**removed, "leakage": leaked},
        "split_seed": cfg.split_seed,
        "fingerprints": split_fingerprints,
        "fingerprint": hashlib.sha256(
            "".join(f"{k}:{v}\n" for k, v in sorted(split_fingerprints.items())).encode()
        ).hexdigest(),
    }
    if modality == "image":
        every = pd.concat(splits.values())
        card["images"] = {
            "formats": {str(k): int(v) for k, v in every["image_format"].value_counts().sort_index().items()},
            "width": [int(every["width"].min()), int(every["width"].max())],
            "height": [int(every["height"].min()), int(every["height"].max())],
        }
    (output_dir / CARD_FILE).write_text(json.dumps(card, indent=2))
    return card


def _split_table(split: pd.DataFrame, label_ids: dict[str, int], modality: str) -> pa.Table:
    """A split as stored: id, the text (or the image's name and encoded bytes), the label's index."""
    content = (
        {"name": pa.array(split["name"], pa.string()), "image": pa.array(split["image"], pa.binary())}
        if modality == "image"
        else {"text": pa.array(split["key"], pa.string())}
    )
    return pa.table(
        {
            "id": pa.array(np.arange(len(split)), pa.int64()),
            **content,
            "label": pa.array(split["label"].map(label_ids), pa.int64()),
        }
    )


def load_card(dataset_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(dataset_dir) / CARD_FILE).read_text())


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
