"""register: publish a model that passed the gate as a new version in a registry directory.

Layout under `registry.uri`:

    <root>/<name>/versions/<n>/   model files, model_card.md, metadata.json (written last)
    <root>/<name>/aliases/champion.json

A version number is claimed by creating its directory (atomic: two writers never get the same
number). A version is complete once `metadata.json` exists; readers ignore directories without it,
so a crash mid-copy never shows a half version. Aliases are replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warmstart.config import Config
from warmstart.errors import RegistrationRefused, WarmstartError
from warmstart.fetch import load_manifest
from warmstart.finetune import WEIGHTS_FILE
from warmstart.gate import load_result, results_table
from warmstart.ingest import data_card_markdown, load_card
from warmstart.storage import scheme_of, sha256_file

METADATA_FILE = "metadata.json"
CARD_FILE = "model_card.md"
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model")


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


class LocalRegistry:
    """A registry on a local (or mounted) filesystem."""

    def __init__(self, uri: str) -> None:
        if not uri:
            raise WarmstartError("registry.uri is empty; set it to a directory")
        if scheme_of(uri) not in ("", "file"):
            raise WarmstartError(f"registry.uri '{uri}': only local directories are supported for now")
        self.root = Path(uri.removeprefix("file://")).expanduser().resolve()

    def versions(self, name: str) -> list[int]:
        """Complete versions of `name`, oldest first."""
        folder = self.root / name / "versions"
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / METADATA_FILE).is_file()
        )

    def metadata(self, name: str, version: int) -> dict[str, Any]:
        return json.loads((self.root / name / "versions" / str(version) / METADATA_FILE).read_text())

    def alias(self, name: str, alias: str) -> int | None:
        path = self.root / name / "aliases" / f"{alias}.json"
        return json.loads(path.read_text())["version"] if path.is_file() else None

    def set_alias(self, name: str, alias: str, version: int) -> None:
        record = {"version": version, "updated": datetime.now(timezone.utc).isoformat()}
        _write_atomically(self.root / name / "aliases" / f"{alias}.json", json.dumps(record, indent=2))

    def find(self, name: str, **lineage: Any) -> int | None:
        """The newest version whose lineage has all of the given values (e.g. run_id=...)."""
        for version in reversed(self.versions(name)):
            found = self.metadata(name, version)["lineage"]
            if all(found.get(key) == value for key, value in lineage.items()):
                return version
        return None

    def _claim_version(self, name: str) -> tuple[int, Path]:
        folder = self.root / name / "versions"
        folder.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        number = max(taken, default=0) + 1
        while True:
            try:
                (folder / str(number)).mkdir()
                return number, folder / str(number)
            except FileExistsError:
                number += 1

    def publish(self, name: str, model_dir: Path, model_card: str, metadata: dict[str, Any]) -> int:
        """Copy the model into a new version and make it visible; returns the version number."""
        number, target = self._claim_version(name)
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES:
                shutil.copyfile(path, target / path.name)
        _write_atomically(target / CARD_FILE, model_card)
        metadata = {**metadata, "version": number}
        _write_atomically(target / METADATA_FILE, json.dumps(metadata, indent=2))
        return number

    def version_uri(self, name: str, version: int) -> str:
        return str(self.root / name / "versions" / str(version))


def check_blessing(gate_result: dict[str, Any], model_dir: Path) -> str:
    """Refuse unless the gate passed for this very model; returns the model's sha256."""
    if not gate_result.get("passed") or gate_result.get("verdict") != "positive":
        raise RegistrationRefused(
            f"the gate did not pass (verdict {gate_result.get('verdict')!r}: {gate_result.get('reason', 'no reason')}); "
            f"nothing was registered"
        )
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise RegistrationRefused(f"{model_dir} holds no {WEIGHTS_FILE}; nothing was registered")
    digest = sha256_file(weights)
    if digest != gate_result["pretrained"]["model_sha256"]:
        raise RegistrationRefused(
            "the model given to register is not the one the gate judged (sha256 mismatch); "
            "pass the pretrained finetune output of the same run"
        )
    return digest


def model_card(
    name: str,
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
) -> str:
    base_files = "\n".join(
        f"  - `{f}` sha256 `{info['sha256']}`" for f, info in base_manifest["files"].items()
    )
    return "\n".join(
        [
            f"# {name}",
            "",
            f"A {base_manifest['architecture']} sequence classifier ({base_manifest['parameters']:,} parameters in the "
            f"base model) fine-tuned from `{base_manifest['source']}` with the `{cfg.train.strategy}` strategy, "
            f"labels {', '.join(f'`{n}`' for n in gate_result['label_names'])}.",
            "",
            "## Why it was registered",
            "",
            f"Gate verdict **{gate_result['verdict']}**: {gate_result['reason']}.",
            "",
            results_table(gate_result),
            "## Data",
            "",
            data_card_markdown(data_card),
            "## Lineage",
            "",
            f"- data fingerprint `{data_card['fingerprint']}`, test split `{data_card['fingerprints']['test']}`",
            f"- base model `{base_manifest['source']}` revision `{base_manifest['revision']}`, "
            f"license {base_manifest['license'] or 'not stated'}",
            base_files,
            "",
            "## Config",
            "",
            "```json",
            json.dumps(cfg.model_dump(), indent=2),
            "```",
            "",
        ]
    )


def register(
    cfg: Config,
    model_dir: str | Path,
    gate_dir: str | Path,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    run_id: str = "",
    pipeline_job: str = "",
) -> dict[str, Any]:
    """Publish `model_dir` as the next version of `cfg.registry.name`, only with a passing gate result.

    The other directories are the outputs of gate, ingest and fetch_model of the same run: they give
    the blessing, the data card and the base model's manifest for the model card and lineage.
    `run_id` is the caller's id for the run (`warmstart run` sets one); `pipeline_job` is the KFP
    pipeline job that registered the model.
    """
    model_dir = Path(model_dir)
    gate_result = load_result(gate_dir)
    data_card, base_manifest = load_card(dataset_dir), load_manifest(base_model_dir)
    digest = check_blessing(gate_result, model_dir)
    if gate_result["data_fingerprint"] != data_card["fingerprint"]:
        raise RegistrationRefused(
            "the gate result was computed on other data than this data card describes (fingerprint mismatch); "
            "nothing was registered"
        )
    registry = LocalRegistry(cfg.registry.uri)
    name = cfg.registry.name
    metadata = {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(),
        "model_sha256": digest,
        "metrics": {
            arm: {m: gate_result[arm][m] for m in ("accuracy", "macro_f1")}
            for arm in ("pretrained", "scratch")
        },
        "gate": {k: gate_result[k] for k in ("verdict", "reason", "metric", "gain", "decision_rule")},
        "lineage": {
            "run_id": run_id,
            "pipeline_job": pipeline_job,
            "data_source": data_card["source"],
            "data_fingerprint": data_card["fingerprint"],
            "test_fingerprint": data_card["fingerprints"]["test"],
            "base_model": base_manifest["source"],
            "base_model_revision": base_manifest["revision"],
            "base_model_files": {f: info["sha256"] for f, info in base_manifest["files"].items()},
        },
        "config": cfg.model_dump(),
    }
    version = registry.publish(
        name, model_dir, model_card(name, cfg, gate_result, data_card, base_manifest), metadata
    )
    registry.set_alias(name, "champion", version)
    return {"name": name, "version": version, "uri": registry.version_uri(name, version), "champion": True}
