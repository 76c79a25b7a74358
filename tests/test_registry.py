import json
import threading
from pathlib import Path

import pytest

from warmstart.config import Config
from warmstart.errors import RegistrationRefused
from warmstart.registry import LocalRegistry, register
from warmstart.storage import sha256_file


@pytest.fixture
def run_outputs(tmp_path, tiny_random_model):
    """The artifacts register reads: a model, a gate result, a data card and a base manifest."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        (model / name).write_bytes((tiny_random_model / name).read_bytes())
    (model / "training_args.bin").write_bytes(b"pickle that must not be published")
    gate_dir, data_dir, base_dir = tmp_path / "gate", tmp_path / "data", tmp_path / "base"
    for d in (gate_dir, data_dir, base_dir):
        d.mkdir()
    gate_result = {
        "passed": True,
        "verdict": "positive",
        "reason": "positive transfer: ...",
        "metric": "accuracy",
        "decision_rule": "rule",
        "gain": {"estimate": 0.1, "ci_low": 0.05, "ci_high": 0.15, "confidence": 0.95},
        "pretrained": {
            "accuracy": 0.9,
            "macro_f1": 0.9,
            "learning_rate": 5e-5,
            "train_rows": 8,
            "steps": 10,
            "model_sha256": sha256_file(model / "model.safetensors"),
        },
        "scratch": {"accuracy": 0.8, "macro_f1": 0.8, "learning_rate": 5e-4, "steps": 10, "train_rows": 8},
        "label_names": ["neg", "pos"],
        "test_rows": 100,
        "data_fingerprint": "f" * 64,
    }
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
        "fingerprint": "f" * 64,
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


def config(root: Path) -> Config:
    return Config.from_dict({"registry": {"uri": str(root), "name": "reviews"}})


def test_versions_count_up_and_champion_follows(tmp_path, run_outputs):
    cfg = config(tmp_path / "reg")
    first = register(cfg, run_id="run-1", **run_outputs)
    second = register(cfg, run_id="run-2", **run_outputs)
    assert (first["version"], second["version"]) == (1, 2)
    registry = LocalRegistry(str(tmp_path / "reg"))
    assert registry.versions("reviews") == [1, 2]
    assert registry.alias("reviews", "champion") == 2
    assert registry.find("reviews", run_id="run-1") == 1
    version_dir = Path(second["uri"])
    assert {p.name for p in version_dir.iterdir()} == {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model_card.md",
        "metadata.json",
    }
    metadata = json.loads((version_dir / "metadata.json").read_text())
    assert metadata["lineage"]["data_fingerprint"] == "f" * 64
    assert metadata["lineage"]["test_fingerprint"] == "c" * 64
    assert metadata["lineage"]["base_model_files"] == {"model.safetensors": "e" * 64}
    card = (version_dir / "model_card.md").read_text()
    for fragment in ("positive transfer", "| pretrained | 0.9000", "fingerprint", "pkg://p/m", '"registry"'):
        assert fragment in card


def test_a_failed_gate_registers_nothing(tmp_path, run_outputs):
    result = json.loads((run_outputs["gate_dir"] / "gate_result.json").read_text())
    for verdict in ("neutral", "negative"):
        result.update(passed=False, verdict=verdict, reason=f"{verdict}: no")
        (run_outputs["gate_dir"] / "gate_result.json").write_text(json.dumps(result))
        with pytest.raises(RegistrationRefused, match=f"verdict '{verdict}'"):
            register(config(tmp_path / "reg"), **run_outputs)
    assert LocalRegistry(str(tmp_path / "reg")).versions("reviews") == []


def test_another_model_than_the_judged_one_is_refused(tmp_path, run_outputs):
    weights = run_outputs["model_dir"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    with pytest.raises(RegistrationRefused, match="not the one the gate judged"):
        register(config(tmp_path / "reg"), **run_outputs)
    assert not (tmp_path / "reg" / "reviews" / "aliases").exists()


def test_a_half_written_version_is_invisible(tmp_path, run_outputs):
    cfg = config(tmp_path / "reg")
    register(cfg, **run_outputs)
    (tmp_path / "reg" / "reviews" / "versions" / "2").mkdir()  # a crash after claiming the number
    registry = LocalRegistry(str(tmp_path / "reg"))
    assert registry.versions("reviews") == [1]
    assert register(cfg, **run_outputs)["version"] == 3


def test_concurrent_registrations_get_distinct_versions(tmp_path, run_outputs):
    cfg = config(tmp_path / "reg")
    versions: list[int] = []
    threads = [
        threading.Thread(target=lambda: versions.append(register(cfg, **run_outputs)["version"]))
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]
    assert LocalRegistry(str(tmp_path / "reg")).versions("reviews") == [1, 2, 3, 4, 5, 6]
