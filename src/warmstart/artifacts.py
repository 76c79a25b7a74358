"""The artifact contract: every file one stage writes and another stage (or the CLI) reads, and the small
readers and writers of those files. Producer and consumer both import from here, so no stage imports
another stage to learn a file name. A leaf of the stages: it imports only errors and storage.

What lies in each KFP artifact's directory:

- ingest → `dataset`: `train/validation/test.parquet` (columns id, text, or name and image, or name, audio and sample_rate; label) and CARD_FILE.
- fetch_model → `base_model`: the model's safetensors, config and tokenizer or image processor, and
  MANIFEST_FILE (source, revision, sha256 of every file); `screening`: SCREENING_FILE (the LogME
  ranking), PROBE_FILE and PROBE_PREDICTIONS_FILE (the linear probe of the start).
- finetune → `model`: WEIGHTS_FILE with its config; `evaluation`: SUMMARY_FILE (the run: init, seed,
  curve, trials, metrics, the weights' sha256), PREDICTIONS_FILE (per test row) and VALIDATION_FILE
  (per validation row, at each curve point). evaluate_champion writes an `evaluation` of the same shape.
- gate → `result`: RESULT_FILE, REPORT_FILE and HTML_FILE.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from warmstart.errors import ModelError
from warmstart.storage import sha256_file

# ingest
CARD_FILE = "data_card.json"
# fetch_model
MANIFEST_FILE = "manifest.json"
SCREENING_FILE = "screening.json"
PROBE_FILE = "probe.json"
PROBE_PREDICTIONS_FILE = "probe_predictions.parquet"
# finetune (and evaluate_champion's evaluation)
WEIGHTS_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions.parquet"
# Per validation row, the class it was predicted at every learning-curve point (the curve's intervals).
VALIDATION_FILE = "validation_predictions.parquet"
# gate
RESULT_FILE = "gate_result.json"
REPORT_FILE = "report.md"
HTML_FILE = "report.html"


def load_card(dataset_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(dataset_dir) / CARD_FILE).read_text())


def load_manifest(model_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / MANIFEST_FILE).read_text())


def verify_manifest(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of `model_dir`, after checking every file it lists against its sha256: a file
    changed, cut short or removed after fetch (a corrupted artifact store, a hand edit) is refused
    before anything trains on it."""
    model_dir = Path(model_dir)
    manifest = load_manifest(model_dir)
    for name, entry in sorted(manifest["files"].items()):
        path = model_dir / name
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            problem = "is missing" if not path.is_file() else "does not match the sha256 in its manifest"
            raise ModelError(
                f"base model '{manifest['source']}': {name} in {model_dir} {problem}; the files changed "
                f"after fetch_model wrote them; fetch the model again (rerun the pipeline)"
            )
    return manifest


def model_fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 over the files' names and digests: the same weights, config and tokenizer give the same value."""
    listing = "".join(f"{name}:{entry['sha256']}\n" for name, entry in sorted(manifest["files"].items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def load_screening(screening_dir: str | Path | None) -> dict[str, Any] | None:
    """The screening fetch_model wrote, or None when there is none (an older run, or not given)."""
    if screening_dir is None:
        return None
    path = Path(screening_dir) / SCREENING_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_probe(directory: str | Path | None) -> tuple[dict[str, Any], pa.Table] | None:
    """The probe fetch_model wrote, with its test predictions; None when there is none."""
    if directory is None or not (Path(directory) / PROBE_FILE).is_file():
        return None
    directory = Path(directory)
    return json.loads((directory / PROBE_FILE).read_text()), pq.read_table(directory / PROBE_PREDICTIONS_FILE)


def load_evaluation(evaluation_dir: str | Path) -> tuple[dict[str, Any], pa.Table]:
    """A finetune (or champion) evaluation: its summary and its test predictions."""
    return load_summary(evaluation_dir), pq.read_table(Path(evaluation_dir) / PREDICTIONS_FILE)


def load_summary(evaluation_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(evaluation_dir) / SUMMARY_FILE).read_text())


def write_predictions(evaluation_dir: Path, test_rows: pa.Table, probabilities: np.ndarray) -> None:
    """PREDICTIONS_FILE: per test row its id, text (or image name), label, predicted label and class
    probabilities."""
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    shown = "text" if "text" in test_rows.column_names else "name"
    pq.write_table(
        pa.table(
            {
                "id": test_rows.column("id"),
                shown: test_rows.column(shown),
                "label": test_rows.column("label"),
                "predicted": pa.array(probabilities.argmax(axis=1), pa.int64()),
                "probabilities": pa.array(probabilities.astype(np.float32).tolist(), pa.list_(pa.float32())),
            }
        ),
        evaluation_dir / PREDICTIONS_FILE,
    )


def write_validation_predictions(
    evaluation_dir: Path, validation, curve: list[dict[str, Any]], predicted: dict[int, list[int]]
) -> None:
    """VALIDATION_FILE: per validation row its id, label, and the class predicted at each point of
    `curve`, in the curve's order (a point with no predictions kept: the previous one's)."""
    rows = validation.with_format(None).select_columns(["id", "label"])
    columns, previous = [], None
    for point in curve:
        previous = predicted.get(point["step"], previous)
        columns.append(previous if previous is not None else [-1] * len(rows))
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "id": pa.array(rows["id"]),
                "label": pa.array(rows["label"], pa.int64()),
                "predicted": pa.array(np.asarray(columns, dtype=np.int64).T.tolist(), pa.list_(pa.int64())),
            }
        ),
        evaluation_dir / VALIDATION_FILE,
    )


def load_validation_predictions(evaluation_dir: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, predicted: rows × curve points) from a finetune evaluation; None for an older one."""
    path = Path(evaluation_dir) / VALIDATION_FILE
    if not path.is_file():
        return None
    table = pq.read_table(path)
    return table.column("label").to_numpy(), np.asarray(table.column("predicted").to_pylist(), dtype=np.int64)


def load_result(path: str | Path) -> dict[str, Any]:
    """The gate's result, from its directory or the file itself."""
    path = Path(path)
    return json.loads((path / RESULT_FILE if path.is_dir() else path).read_text())
