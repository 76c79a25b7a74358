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

import contextlib
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warmstart.errors import WarmstartError
from warmstart.storage import Store, open_store

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

    def swap_alias(self, name: str, alias: str, expected: int, version: int | None) -> bool:
        """Point `alias` at `version` (None: remove it) only while it still names `expected`, by
        compare-and-swap; False when someone moved it meanwhile (then it is left as they set it)."""
        key = f"{name}/aliases/{alias}.json"
        while True:
            current = self.store.read(key)
            if current is None or json.loads(current[0])["version"] != expected:
                return False
            if version is None:
                self.store.delete(key)
                return True
            record = json.dumps({"version": version, "updated": _now()}, indent=2).encode()
            if self.store.replace(key, record, current[1]):
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
        try:
            for path in sorted(model_dir.iterdir()):
                if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES:
                    self.store.put_file(self._version_key(name, number, path.name), path)
            with tempfile.TemporaryDirectory() as scratch:
                card = Path(scratch) / CARD_FILE
                card.write_text(model_card, encoding="utf-8")
                self.store.put_file(self._version_key(name, number, CARD_FILE), card)
        except BaseException:
            # A failure or an interrupt (Ctrl-C, a pod's SIGTERM) before the version was made visible:
            # its files go, so nothing half-written stays behind, not even invisibly.
            with contextlib.suppress(Exception):
                self.store.delete(self._version_key(name, number))
            raise
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
