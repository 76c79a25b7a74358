"""KFP component: ingest (libraries: warmstart.ingest.dataset, warmstart.ingest.freshness)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(config: dict, force: bool, dataset: Output[Dataset], freshness: Output[Markdown]) -> NamedTuple(
    "Outputs", train=bool, runs=list[dict], fingerprint=str, status=dict
):
    """Check every location the run writes or reads and its placement (warmstart.ingest.preflight), then
    read, clean and split the labelled data; the directory holds the splits and data_card.json.

    Then compare with the registry's champion: `train` is false when the data, the pretrained
    source and the training settings are all what they were for it (and `force` is not set), so
    the pipeline ends without training. `runs` are the training runs of each arm (one per seed,
    data fraction and share of the tuning grid: warmstart.finetune.tuning.plan); `fingerprint` identifies
    the data, so the tasks after this one cache on content.
    """
    from collections import namedtuple
    from pathlib import Path

    from warmstart.config import Config
    from warmstart.finetune.tuning import plan
    from warmstart.ingest.dataset import ingest as ingest_data
    from warmstart.ingest.freshness import check, markdown
    from warmstart.ingest.preflight import preflight
    from warmstart.stage import report_outcome, user_errors

    with user_errors("ingest"):
        cfg = Config.from_dict(config)
        preflight(cfg)
        card = ingest_data(cfg.data, dataset.path)
        record = check(cfg, card, force)
    print(record["status"], flush=True)
    report_outcome("ingest", record)
    dataset.metadata.update({"rows": card["rows"], "fingerprint": card["fingerprint"]})
    Path(freshness.path).write_text(markdown(record), encoding="utf-8")
    freshness.metadata.update({k: record[k] for k in ("train", "status", "champion")})
    outputs = namedtuple("Outputs", "train runs fingerprint status")
    return outputs(record["train"], plan(cfg), card["fingerprint"], record)
