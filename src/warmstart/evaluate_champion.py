"""evaluate_champion: predict this run's test split with the model that is champion in the registry now.

The gate then compares the challenger (this run's pretrained-init model) with the champion on the very
same test rows. Without a registry, without a champion, or when the champion predicts another label
set, the evaluation says so and the gate skips the champion check.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from warmstart.artifacts import SUMMARY_FILE, load_card, write_predictions
from warmstart.config import Config
from warmstart.finetune.train import build_model_from_dir, predict_test_split
from warmstart.metrics import all_metrics
from warmstart.registry import Registry


def evaluate_champion(cfg: Config, dataset_dir: str | Path, output_dir: str | Path) -> dict[str, Any]:
    """Write the champion's test predictions and a summary to `output_dir` (or why there are none)."""
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    card = load_card(dataset_dir)
    registry = Registry(cfg.registry.uri) if cfg.registry.uri else None
    version = registry.alias(cfg.registry.name, "champion") if registry else None
    summary: dict[str, Any] = {"init": "champion", "version": version, "comparable": False}
    if version is None:
        summary["reason"] = f"{cfg.registry.name} has no champion yet"
    else:
        metadata = registry.metadata(cfg.registry.name, version)
        with tempfile.TemporaryDirectory(prefix="warmstart-champion-") as scratch:
            model_dir = registry.download_version(cfg.registry.name, version, Path(scratch))
            labels = json.loads((model_dir / "config.json").read_text()).get("id2label", {})
            champion_labels = [labels[k] for k in sorted(labels, key=int)]
            if champion_labels != card["label_names"]:
                summary["reason"] = (
                    f"champion version {version} predicts labels {champion_labels}, this data has "
                    f"{card['label_names']}; the two cannot be compared"
                )
            else:
                model, inputs = build_model_from_dir(
                    model_dir, card.get("modality", "text"), cfg.model.max_length
                )
                test_rows, probabilities = predict_test_split(
                    model, inputs, dataset_dir, max(64, cfg.train.batch_size)
                )
                write_predictions(output_dir, test_rows, probabilities)
                summary.update(
                    comparable=True,
                    reason=f"champion version {version} evaluated on this run's test split",
                    model_sha256=metadata["model_sha256"],
                    label_names=card["label_names"],
                    test_fingerprint=card["fingerprints"]["test"],
                    test_metrics=all_metrics(
                        test_rows.column("label").to_numpy(),
                        probabilities.argmax(axis=1),
                        len(champion_labels),
                    ),
                )
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary
