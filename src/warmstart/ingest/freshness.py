"""Whether a run has anything new to learn: scheduled retraining skips the run when nothing changed.

A run would reproduce the registry's champion when three things are what they were for it: the
data (ingest's fingerprint of the splits, which covers their content and the split settings), the
pretrained start (the `model` section: source, candidates, screening, sequence length) and the
training recipe (the `train` and `tune` sections: what each arm learns, and each arm's learning-rate
search). Where a run executes (the `placement` and `cluster` sections) is not part of it. Then ingest ends
the run with "skipped: data unchanged since version N" and nothing is trained; `force` trains anyway.
Anything else (no registry yet, no champion, any of the three changed) trains, and says why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from warmstart.config import Config, migrated

# What a run learns: a run that differs from the champion only elsewhere (placement, cluster,
# storage, the gate's policy, the registry) would train the same model again.
RECIPE = ("model", "train", "tune")


def _short(fingerprint: str | None) -> str:
    return f"{fingerprint[:12]}…" if fingerprint else "none"


def _changes(section: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`section.key (old → new)` for every key whose value differs."""
    return [
        f"{section}.{key} ({json.dumps(old.get(key))} → {json.dumps(new.get(key))})"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


def check(cfg: Config, card: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Compare this run with the champion of `cfg.registry.name`: train or skip, and the reason in one line.

    `card` is ingest's data card of this run. Returns train (bool), status (the one line),
    champion (its version or None), fingerprint (this run's data) and changed (what differs).
    """
    from warmstart.registry import Registry

    record: dict[str, Any] = {
        "train": True,
        "forced": force,
        "champion": None,
        "fingerprint": card["fingerprint"],
        "changed": [],
    }
    name = cfg.registry.name
    registry = Registry(cfg.registry.uri) if cfg.registry.uri else None
    version = registry.alias(name, "champion") if registry else None
    if version is None:
        record["status"] = f"training: {name} has no champion yet"
        return record
    record["champion"] = version
    champion = registry.metadata(name, version)
    # An older champion's config may hold placement keys under `train`: moved, as the Config moves them.
    before = migrated(champion.get("config", {}))
    changed = []
    if champion["lineage"]["data_fingerprint"] != card["fingerprint"]:
        changed.append(
            f"data (fingerprint {_short(champion['lineage']['data_fingerprint'])} → {_short(card['fingerprint'])})"
        )
    now = cfg.model_dump()
    for section in RECIPE:
        changed += _changes(section, before.get(section, {}), now[section])
    record["changed"] = changed
    if changed:
        record["status"] = f"training: changed since version {version}: {'; '.join(changed)}"
    elif force:
        record["status"] = f"training (forced): data unchanged since version {version}"
    else:
        record["train"] = False
        record["status"] = (
            f"skipped: data unchanged since version {version} (fingerprint {_short(card['fingerprint'])}; "
            f"same pretrained source and training settings); to train anyway: --force, or the run "
            f"parameter force=true"
        )
    return record


def markdown(record: dict[str, Any]) -> str:
    """The record as the Markdown the KFP UI shows on ingest and on the skipped step."""
    lines = [f"# warmstart: {record['status'].split(':')[0]}", "", record["status"], ""]
    if record["champion"] is not None:
        lines.append(f"- champion: version {int(record['champion'])}")
    lines.append(f"- data fingerprint: `{record['fingerprint']}`")
    lines += [f"- changed: {change}" for change in record["changed"]]
    return "\n".join(lines) + "\n"


def check_inputs(dataset_dir: str | Path, base_model_dir: str | Path, data: str, base_model: str) -> None:
    """Refuse a dataset or base model that is not the one this task was started for.

    The fingerprints come in as task parameters, so they are also in the KFP cache key: a cached
    result is reused only for the same data and the same weights, whatever the artifacts are called.
    """
    from warmstart.artifacts import load_card, load_manifest, model_fingerprint
    from warmstart.errors import WarmstartError

    found = {
        "dataset": (load_card(dataset_dir)["fingerprint"], data),
        "base model": (model_fingerprint(load_manifest(base_model_dir)), base_model),
    }
    for what, (actual, expected) in found.items():
        if expected and actual != expected:
            raise WarmstartError(
                f"the {what} given is not the one this task was started for (fingerprint {_short(actual)}, "
                f"expected {_short(expected)}): a stale artifact; rerun the pipeline from ingest"
            )
