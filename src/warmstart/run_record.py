"""How a run went, stage by stage, where the run's exit handler can read it.

KFP's exit handler learns only the run's final state (PipelineTaskFinalStatus), not what its tasks
returned. So the stages that decide something (ingest: train or skip; gate: the verdict; register: the
version; deploy: the endpoint) and any stage that fails write a small JSON record under the run's own
prefix on shared storage, `<checkpoint root>/runs/<pipeline job>/`, and notify reads them back to
say in one message what the run did, then removes them. Without notify configured, a pipeline job
name or a storage root, nothing is written.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from warmstart.config import Config
from warmstart.errors import WarmstartError
from warmstart.storage import Store, open_store

RUNS_DIR = "runs"


class RunRecord:
    """The records of one pipeline job; `task` names this task's failure record where several tasks
    run the same stage (finetune, once per arm and seed)."""

    def __init__(self, store: Store, task: str = "") -> None:
        self.store, self.task = store, task

    def write(self, part: str, details: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="warmstart-record-") as scratch:
            path = Path(scratch) / "record.json"
            path.write_text(json.dumps({**details, "time": time.time()}), encoding="utf-8")
            self.store.put_file(f"{_key(part)}.json", path)

    def failed(self, stage: str, message: str, kind: str) -> None:
        self.write(f"failed-{self.task or stage}", {"stage": stage, "message": message, "kind": kind})

    def succeeded(self, stage: str) -> None:
        """A retry that succeeded undoes the failure its earlier attempt recorded."""
        self.store.delete(f"failed-{_key(self.task or stage)}.json")

    def read(self) -> dict[str, Any]:
        found = {}
        for name in self.store.children(""):
            data = self.store.read(name) if name.endswith(".json") else None
            if data is not None:
                found[name.removesuffix(".json")] = json.loads(data[0])
        return found

    def first_failure(self) -> dict[str, Any] | None:
        failures = [v for k, v in self.read().items() if k.startswith("failed-")]
        return min(failures, key=lambda f: f["time"]) if failures else None

    def clear(self) -> None:
        for name in self.store.children(""):
            self.store.delete(name)


def _key(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part)


def run_record(config: dict[str, Any] | Config, pipeline_job: str, task: str = "") -> RunRecord | None:
    """The run's record, or None when there is nowhere to keep it (no job name, no storage root, a
    config that does not validate: the stage itself says what is wrong with that)."""
    if not pipeline_job:
        return None
    try:
        cfg = config if isinstance(config, Config) else Config.from_dict(config)
        if not cfg.notify.enabled():  # nobody would read it, and nobody would remove it
            return None
        root = cfg.checkpoint_root()
        if not root:
            return None
        return RunRecord(open_store(f"{root.rstrip('/')}/{RUNS_DIR}/{_key(pipeline_job)}"), task)
    except WarmstartError:
        return None
