"""ingest's preflight: before the data is read, and long before any training, everything the run will
write or read is checked for what the run needs, so that a mistake in a location or a setting ends the
run in seconds, in a task that is never retried, with one line naming the setting.

- The registry root and the checkpoint root are directories or s3:// prefixes (not files), and the
  run can write there: a probe is written and removed (a missing directory is created for the probe
  and removed with it), so the S3 endpoint, the credentials and the bucket are checked too.
- The model source and every candidate can be fetched: the directory holds a config.json, the
  archive or S3 object is there, the registry has the version, the Hub or the local cache has it.
- The placement makes sense: a multi-node run (train.num_nodes > 1) has checkpoint storage every
  node reaches, the Trainer's API types, an image and a namespace.

The data source is read right after, by ingest itself. What only the training machine can say (a GPU
for train.precision=fp16) is checked by `warmstart run` on this machine before any task starts; on a
cluster the finetune pod finds it.
"""

from __future__ import annotations

from warmstart.config import CHECKPOINTS_DIR, Config
from warmstart.fetch_model.sources import locate
from warmstart.storage import check_writable


def preflight(cfg: Config) -> None:
    """Check every location and the placement of a run; the first problem raises a WarmstartError
    whose message starts with the setting to change."""
    if cfg.train.num_nodes > 1:
        from warmstart.finetune.trainjob import check_placement

        check_placement(cfg)
    if cfg.registry.uri:
        check_writable(cfg.registry.uri, "registry.uri")
    root = cfg.checkpoint_root()
    if root and (cfg.placement.checkpoint_steps or cfg.train.num_nodes > 1):
        what = (
            "placement.checkpoint_uri"
            if cfg.placement.checkpoint_uri
            else f"registry.uri (its {CHECKPOINTS_DIR} folder, where checkpoints go unless placement.checkpoint_uri is set)"
        )
        check_writable(root, what)
    locate(cfg.model.source, cfg.registry.uri, "model.source")
    for index, candidate in enumerate(cfg.model.candidates):
        locate(candidate, cfg.registry.uri, f"model.candidates[{index}]")
