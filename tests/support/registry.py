"""Registry inputs made without training: the outputs of a run as the register stage reads them."""

import json
from pathlib import Path

from warmstart.storage import sha256_file


def make_run_outputs(root: Path, tiny_random_model: Path, salt: int = 0, data_fingerprint: str = "f" * 64):
    """The artifacts register reads: a model, a gate result, a data card and a base manifest.

    `salt` makes the weights (and so the model) distinct.
    """
    model = root / "model"
    model.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (model / name).write_bytes((tiny_random_model / name).read_bytes())
    (model / "model.safetensors").write_bytes(
        (tiny_random_model / "model.safetensors").read_bytes() + bytes(salt)
    )
    (model / "training_args.bin").write_bytes(b"pickle that must not be published")
    gate_dir, data_dir, base_dir = root / "gate", root / "data", root / "base"
    for d in (gate_dir, data_dir, base_dir):
        d.mkdir()
    gate_result = passing_gate_result(
        sha256_file(model / "model.safetensors"), ["neg", "pos"], data_fingerprint
    )
    (gate_dir / "gate_result.json").write_text(json.dumps(gate_result))
    card = {
        "source": "/data/x.csv",
        "test_source": None,
        "format": "csv",
        "text_column": "text",
        "label_column": "y",
        "label_names": ["neg", "pos"],
        "rows": {"train": 8, "validation": 1, "test": 1},
        "label_distribution": {s: {"neg": 1, "pos": 1} for s in ("train", "validation", "test")},
        "removed": {"empty": 0, "duplicates": 2, "leakage": {"test": 1, "validation": 0}},
        "fingerprints": {"train": "a", "validation": "b", "test": "c" * 64},
        "fingerprint": data_fingerprint,
    }
    (data_dir / "data_card.json").write_text(json.dumps(card))
    manifest = {
        "source": "pkg://p/m",
        "revision": "p==1",
        "architecture": "BertModel",
        "parameters": 1000,
        "license": "apache-2.0",
        "files": {"model.safetensors": {"sha256": "e" * 64, "bytes": 1}},
    }
    (base_dir / "manifest.json").write_text(json.dumps(manifest))
    return {"model_dir": model, "gate_dir": gate_dir, "dataset_dir": data_dir, "base_model_dir": base_dir}


def passing_gate_result(model_sha256: str, label_names: list[str], data_fingerprint: str) -> dict:
    """A gate result that passed the model with these weights (for registering without a gate run)."""
    arm = {"accuracy": 0.9, "macro_f1": 0.9, "learning_rate": 5e-5, "steps": 10, "train_rows": 8}
    return {
        "passed": True,
        "verdict": "positive",
        "reason": "positive transfer: ...",
        "metric": "accuracy",
        "decision_rule": "rule",
        "gain": {"estimate": 0.1, "ci_low": 0.05, "ci_high": 0.15, "confidence": 0.95},
        "mcnemar": {"only_pretrained_right": 12, "only_scratch_right": 2, "p_value": 0.013, "seed": 0},
        "seeds": {"count": 1, "values": [0], "chosen": 0, "chosen_by": "the best final validation accuracy"},
        "pretrained": {**arm, "model_sha256": model_sha256},
        "scratch": {**arm, "accuracy": 0.8, "macro_f1": 0.8, "learning_rate": 5e-4},
        "label_names": label_names,
        "test_rows": 100,
        "data_fingerprint": data_fingerprint,
    }


def register_trained(cfg, model_dir: Path, dataset_dir: Path, base_dir: Path, gate_dir: Path) -> dict:
    """Register a model that finetune trained, as if the gate had passed it (no scratch arm needed)."""
    from warmstart.register.publish import register

    card = json.loads((dataset_dir / "data_card.json").read_text())
    gate_dir.mkdir(parents=True, exist_ok=True)
    result = passing_gate_result(
        sha256_file(model_dir / "model.safetensors"), card["label_names"], card["fingerprint"]
    )
    (gate_dir / "gate_result.json").write_text(json.dumps(result))
    return register(cfg, model_dir, gate_dir, dataset_dir, base_dir)
