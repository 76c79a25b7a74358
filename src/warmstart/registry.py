"""register: publish a model that passed the gate as a new version in a registry.

The registry lives on any storage root (`registry.uri`: a local directory or s3://BUCKET/PREFIX):

    <root>/<name>/versions/<n>/   model files, model_card.md, metadata.json (written last)
    <root>/<name>/aliases/champion.json

A version number is claimed by a conditional create of `versions/<n>/claim.json` (S3 `If-None-Match: *`,
`O_EXCL` locally), so concurrent writers never share a number. A version is visible only once its
`metadata.json` exists, and that is written after every other file: a crash mid-upload leaves no half
version that readers see. Aliases move by compare-and-swap (`If-Match` on the ETag). Registering the
same model content with the same lineage again returns the existing version.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warmstart.artifacts import WEIGHTS_FILE, load_card, load_manifest, load_result
from warmstart.config import Config
from warmstart.errors import RegistrationRefused, WarmstartError
from warmstart.ingest import data_card_markdown
from warmstart.report_text import floor_lines, results_table, tuning_lines
from warmstart.storage import Store, open_store, sha256_file

METADATA_FILE = "metadata.json"
CARD_FILE = "model_card.md"
CLAIM_FILE = "claim.json"
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".model")
# Lineage that makes two registrations "the same model"; run ids and times do not.
IDENTITY = ("data_fingerprint", "test_fingerprint", "base_model", "base_model_files")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Registry:
    """Versions and aliases of named models on one storage root."""

    def __init__(self, uri: str) -> None:
        if not uri:
            raise WarmstartError("registry.uri is empty; set it to a directory or s3://BUCKET/PREFIX")
        self.store: Store = open_store(uri)

    def _version_key(self, name: str, version: int, file: str = "") -> str:
        return f"{name}/versions/{version}" + (f"/{file}" if file else "")

    def versions(self, name: str) -> list[int]:
        """Complete versions of `name`, oldest first."""
        numbers = sorted(int(n) for n in self.store.children(f"{name}/versions") if n.isdigit())
        return [n for n in numbers if self.store.exists(self._version_key(name, n, METADATA_FILE))]

    def metadata(self, name: str, version: int) -> dict[str, Any]:
        found = self.store.read(self._version_key(name, version, METADATA_FILE))
        if found is None:
            raise WarmstartError(f"{name} version {version} does not exist in {self.store.root}")
        return json.loads(found[0])

    def alias(self, name: str, alias: str) -> int | None:
        found = self.store.read(f"{name}/aliases/{alias}.json")
        return json.loads(found[0])["version"] if found else None

    def move_alias(self, name: str, alias: str, version: int, only_forward: bool = True) -> bool:
        """Point `alias` at `version` by compare-and-swap; with `only_forward`, never at an older one.

        Returns whether the alias now names `version`. Lost races are retried on the new state.
        """
        key = f"{name}/aliases/{alias}.json"
        record = json.dumps({"version": version, "updated": _now()}, indent=2).encode()
        while True:
            current = self.store.read(key)
            if current is not None:
                current_version = json.loads(current[0])["version"]
                if current_version == version:
                    return True
                if only_forward and current_version > version:
                    return False
            if self.store.replace(key, record, current[1] if current else None):
                return True

    def find(self, name: str, model_sha256: str | None = None, **lineage: Any) -> int | None:
        """The newest version with these weights (if given) and all of the given lineage values."""
        for version in reversed(self.versions(name)):
            found = self.metadata(name, version)
            if model_sha256 and found["model_sha256"] != model_sha256:
                continue
            if all(found["lineage"].get(key) == value for key, value in lineage.items()):
                return version
        return None

    def _claim_version(self, name: str, claim: dict[str, Any]) -> int:
        taken = [int(n) for n in self.store.children(f"{name}/versions") if n.isdigit()]
        number = max(taken, default=0) + 1
        data = json.dumps(claim).encode()
        while not self.store.create(self._version_key(name, number, CLAIM_FILE), data):
            number += 1
        return number

    def publish(self, name: str, model_dir: Path, model_card: str, metadata: dict[str, Any]) -> int:
        """Upload the model as a new version and make it visible; returns the version number."""
        number = self._claim_version(name, {"claimed": _now(), "run_id": metadata["lineage"].get("run_id")})
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES:
                self.store.put_file(self._version_key(name, number, path.name), path)
        with tempfile.TemporaryDirectory() as scratch:
            card = Path(scratch) / CARD_FILE
            card.write_text(model_card, encoding="utf-8")
            self.store.put_file(self._version_key(name, number, CARD_FILE), card)
        metadata = {**metadata, "version": number}
        if not self.store.create(
            self._version_key(name, number, METADATA_FILE), json.dumps(metadata, indent=2).encode()
        ):
            raise WarmstartError(f"{name} version {number} was completed by another writer; register again")
        return number

    def same_model(self, name: str, model_sha256: str, lineage: dict[str, Any]) -> int | None:
        """An existing version with these exact weights and the same data and base model, if any."""
        for version in self.versions(name):
            found = self.metadata(name, version)
            if found["model_sha256"] == model_sha256 and all(
                found["lineage"].get(key) == lineage.get(key) for key in IDENTITY
            ):
                return version
        return None

    def download_version(self, name: str, version: int, target: Path) -> Path:
        """The model files of a version (no card, metadata or claim) in `target`."""
        for file in self.store.children(self._version_key(name, version)):
            if file.endswith(MODEL_FILE_SUFFIXES) and file not in (METADATA_FILE, CLAIM_FILE):
                self.store.get_file(self._version_key(name, version, file), target / file)
        return target

    def names(self) -> list[str]:
        """Model names with at least one complete version."""
        return [name for name in self.store.children("") if self.versions(name)]

    def promote(self, name: str, version: int) -> None:
        """Make `version` the champion, forward or back (an operator's decision, so no policy check)."""
        if version not in self.versions(name):
            raise WarmstartError(
                f"{name} has no complete version {version} in {self.store.root}; "
                f"versions: {', '.join(map(str, self.versions(name))) or 'none'}"
            )
        self.move_alias(name, "champion", version, only_forward=False)

    def rollback(self, name: str) -> int:
        """Move the champion to the newest complete version below the current one; returns it."""
        current = self.alias(name, "champion")
        if current is None:
            raise WarmstartError(f"{name} has no champion in {self.store.root}; nothing to roll back")
        older = [v for v in self.versions(name) if v < current]
        if not older:
            raise WarmstartError(f"{name} champion is version {current}, the oldest; nothing to roll back to")
        self.promote(name, older[-1])
        return older[-1]

    def version_uri(self, name: str, version: int) -> str:
        return self.store.uri(self._version_key(name, version))


def check_blessing(gate_result: dict[str, Any], model_dirs: list[Path]) -> tuple[Path, str]:
    """Refuse unless the gate passed for one of these models; returns that model and its sha256.

    With several training seeds the gate names the one run it chose; `model_dirs` are the
    pretrained arm's outputs, one per seed, and the chosen one is found by its weights.
    """
    if not gate_result.get("passed") or gate_result.get("verdict") != "positive":
        raise RegistrationRefused(
            f"the gate did not pass (verdict {gate_result.get('verdict')!r}: {gate_result.get('reason', 'no reason')}); "
            f"nothing was registered"
        )
    for model_dir in model_dirs:
        weights = model_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise RegistrationRefused(f"{model_dir} holds no {WEIGHTS_FILE}; nothing was registered")
        digest = sha256_file(weights)
        if digest == gate_result["pretrained"]["model_sha256"]:
            return model_dir, digest
    raise RegistrationRefused(
        "the model given to register is not the one the gate judged (sha256 mismatch); "
        "pass the pretrained finetune output of the same run"
    )


def model_card(
    name: str,
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
) -> str:
    seeds = gate_result["seeds"]
    base_files = "\n".join(
        f"  - `{f}` sha256 `{info['sha256']}`" for f, info in base_manifest["files"].items()
    )
    return "\n".join(
        [
            f"# {name}",
            "",
            f"A {base_manifest['architecture']} {'image' if data_card.get('modality') == 'image' else 'sequence'} "
            f"classifier ({base_manifest['parameters']:,} parameters in the "
            f"base model) fine-tuned from `{base_manifest['source']}` with the `{cfg.train.strategy}` strategy, "
            f"labels {', '.join(f'`{n}`' for n in gate_result['label_names'])}.",
            "",
            "## Why it was registered",
            "",
            f"Gate verdict **{gate_result['verdict']}**: {gate_result['reason']}.",
            "",
            results_table(gate_result),
            *tuning_lines(gate_result),
            *floor_lines(gate_result),
            "## Data",
            "",
            data_card_markdown(data_card),
            "## Lineage",
            "",
            f"- data fingerprint `{data_card['fingerprint']}`, test split `{data_card['fingerprints']['test']}`",
            f"- training seed {seeds['chosen']}"
            + (f", of {seeds['count']} seeds ({seeds['chosen_by']})" if seeds["count"] > 1 else ""),
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
    model_dir: str | Path | list[str | Path],
    gate_dir: str | Path,
    dataset_dir: str | Path,
    base_model_dir: str | Path,
    run_id: str = "",
    pipeline_job: str = "",
) -> dict[str, Any]:
    """Publish `model_dir` as the next version of `cfg.registry.name`, only with a passing gate result.

    `model_dir` may be a list, the pretrained arm's output of every training seed: the one the gate
    chose is published.

    The other directories are the outputs of gate, ingest and fetch_model of the same run: they give
    the blessing, the data card and the base model's manifest for the model card and lineage.
    `run_id` is the caller's id for the run (`warmstart run` sets one); `pipeline_job` is the KFP
    pipeline job that registered the model.
    """
    gate_result = load_result(gate_dir)
    data_card, base_manifest = load_card(dataset_dir), load_manifest(base_model_dir)
    candidates = model_dir if isinstance(model_dir, list | tuple) else [model_dir]
    model_dir, digest = check_blessing(gate_result, [Path(d) for d in candidates])
    if gate_result["data_fingerprint"] != data_card["fingerprint"]:
        raise RegistrationRefused(
            "the gate result was computed on other data than this data card describes (fingerprint mismatch); "
            "nothing was registered"
        )
    registry = Registry(cfg.registry.uri)
    name = cfg.registry.name
    metadata = version_metadata(cfg, gate_result, data_card, base_manifest, digest, run_id, pipeline_job)
    existing = registry.same_model(name, digest, metadata["lineage"])
    if existing is not None:
        return {
            "name": name,
            "version": existing,
            "uri": registry.version_uri(name, existing),
            "champion": registry.alias(name, "champion") == existing,
            "existing": True,
        }
    version = registry.publish(
        name, model_dir, model_card(name, cfg, gate_result, data_card, base_manifest), metadata
    )
    champion = gate_result.get("promote", True) and registry.move_alias(name, "champion", version)
    record = {
        "name": name,
        "version": version,
        "uri": registry.version_uri(name, version),
        "champion": champion,
        "existing": False,
    }
    if cfg.registry.kubeflow_url:
        from warmstart.kubeflow_registry import record_version

        record["kubeflow_model_registry"] = record_version(
            cfg.registry.kubeflow_url, cfg.registry.kubeflow_author, name, version, record["uri"], metadata
        )
        if not record["kubeflow_model_registry"]["recorded"]:
            print(
                f"warning: {name} version {version} is registered, but recording it in the Kubeflow Model "
                f"Registry failed: {record['kubeflow_model_registry']['reason']}",
                flush=True,
            )
    return record


def version_metadata(
    cfg: Config,
    gate_result: dict[str, Any],
    data_card: dict[str, Any],
    base_manifest: dict[str, Any],
    digest: str,
    run_id: str,
    pipeline_job: str,
) -> dict[str, Any]:
    """A version's metadata.json: the weights' sha256, both arms' metrics, the gate's verdict, the
    lineage (run, data, base model) and the config it was trained with."""
    name = cfg.registry.name
    return {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(),
        "model_sha256": digest,
        "modality": data_card.get("modality", "text"),
        "metrics": {
            arm: {m: gate_result[arm][m] for m in ("accuracy", "macro_f1")}
            for arm in ("pretrained", "scratch")
        },
        "gate": {
            **{k: gate_result[k] for k in ("verdict", "reason", "metric", "decision_rule")},
            "gain": {k: v for k, v in gate_result["gain"].items() if k != "distribution"},
            "mcnemar_p": gate_result["mcnemar"]["p_value"],
            "seeds": {k: gate_result["seeds"][k] for k in ("count", "values", "chosen", "chosen_by")},
        },
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
