"""Training checkpoints that survive the pod: copied to a directory or s3:// and found again on restart.

A finetune writes its Trainer checkpoints (safetensors weights, optimizer, scheduler and RNG state,
trainer_state.json) under `ROOT/RUN/step-NNNNNNNNN/`, where RUN names the arm and a hash of every
input that shapes training. The checkpoint's `complete.json` (each file's sha256) is written last,
so a checkpoint counts only once whole; a restarted finetune with the same inputs resumes from the
newest complete one without being told to. Older checkpoints beyond `keep` are removed, and the
whole RUN folder once the arm has written its model.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from warmstart.config import PLACEMENT_KEYS
from warmstart.errors import WarmstartError
from warmstart.storage import Store, open_store, sha256_file

MARKER = "complete.json"
STEP_DIR = re.compile(r"step-(\d{9})$")
# Settings that decide where and how often checkpoints go, not what training computes: the placement
# section's (never in `train` now, but a caller may hand in an older train dict). `seeds` lists the
# runs; each run's own seed is `seed`, which is in the key.
NOT_IN_KEY = (*PLACEMENT_KEYS, "seeds")


def run_name(init: str, train: dict[str, Any], **inputs: Any) -> str:
    """`ARM-HASH`: the same only when the arm, the training settings and the inputs are the same."""
    shaping = {key: value for key, value in train.items() if key not in NOT_IN_KEY}
    blob = json.dumps({"init": init, "train": shaping, **inputs}, sort_keys=True, default=str)
    return f"{init}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def arm_run(cfg: Any, init: str, card: dict[str, Any], manifest: dict[str, Any], **extra: Any) -> str:
    """The run name of one arm from its config, data card and base-model manifest; `extra` names what
    else shapes the run (the share of the training split it learns from, say)."""
    return run_name(
        init,
        cfg.train.model_dump(),
        data=card["fingerprint"],
        base_model={name: entry["sha256"] for name, entry in manifest["files"].items()},
        max_length=cfg.model.max_length,
        **extra,
    )


class Checkpoints:
    """The checkpoints of one run under one storage root."""

    def __init__(self, root: str, run: str, keep: int) -> None:
        self.store: Store = open_store(root)
        self.run, self.keep = run, keep

    @property
    def uri(self) -> str:
        return self.store.uri(self.run)

    def _folder(self, step: int) -> str:
        return f"{self.run}/step-{step:09d}"

    def _all_steps(self) -> list[int]:
        return sorted(
            int(match.group(1)) for name in self.store.children(self.run) if (match := STEP_DIR.match(name))
        )

    def complete(self) -> list[int]:
        """Steps with a whole checkpoint, oldest first."""
        return [step for step in self._all_steps() if self.store.exists(f"{self._folder(step)}/{MARKER}")]

    def save(self, local_dir: Path, step: int) -> None:
        """Copy a Trainer checkpoint directory, mark it complete, then drop checkpoints beyond `keep`."""
        folder = self._folder(step)
        files = {}
        try:
            for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
                relative = path.relative_to(local_dir).as_posix()
                self.store.put_file(f"{folder}/{relative}", path)
                files[relative] = sha256_file(path)
            self.store.create(f"{folder}/{MARKER}", json.dumps({"step": step, "files": files}).encode())
        except WarmstartError:
            # Never complete, so never restored; removed so it does not hold the space that ran out.
            self.store.delete(folder)
            raise
        newest = self.complete()
        for old in self._all_steps():
            if old < step and (old not in newest[-self.keep :]):
                self.store.delete(f"{self._folder(old)}/{MARKER}")  # no longer complete, then gone
                self.store.delete(self._folder(old))

    def restore(self, target_parent: Path) -> Path | None:
        """Download the newest complete checkpoint into `target_parent/checkpoint-STEP`, checksums verified."""
        steps = self.complete()
        if not steps:
            return None
        step = steps[-1]
        folder = self._folder(step)
        marker = self.store.read(f"{folder}/{MARKER}")
        files = json.loads(marker[0])["files"] if marker else {}
        target = target_parent / f"checkpoint-{step}"
        for relative, digest in files.items():
            path = self.store.get_file(f"{folder}/{relative}", target / relative)
            if sha256_file(path) != digest:
                raise WarmstartError(
                    f"checkpoint {self.store.uri(folder)}: {relative} does not match the checksum written "
                    f"with it; delete {self.uri} to start this arm over"
                )
        return target

    def clear(self) -> None:
        """Remove this run's checkpoints (its model is written; they are no longer needed)."""
        for step in self._all_steps():
            self.store.delete(f"{self._folder(step)}/{MARKER}")
        self.store.delete(self.run)
