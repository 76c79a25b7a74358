"""KFP component: ingest (libraries: warmstart.ingest.dataset, warmstart.ingest.freshness)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(
    config: dict, force: bool, dataset: Output[Dataset], freshness: Output[Markdown], pipeline_job: str = ""
) -> NamedTuple("Outputs", train=bool, runs=list[dict], fingerprint=str, status=dict):
    """Check every location the run writes or reads and its placement (warmstart.ingest.preflight), then
    read, clean and split the labelled data; the directory holds the splits and data_card.json.

    Then compare with the registry's champion: `train` is false when the data, the pretrained
    source and the training settings are all what they were for it (and `force` is not set), so
    the pipeline ends without training. `runs` are the training runs of each arm (one per seed,
    data fraction and share of the tuning grid: warmstart.finetune.tuning.plan); `fingerprint` identifies
    the data, so the tasks after this one cache on content. `pipeline_job` names the run's record
    (warmstart.run_record), which the exit handler reads.
    """
    from collections import namedtuple
    from pathlib import Path

    from warmstart.config import Config
    from warmstart.finetune.tuning import plan
    from warmstart.ingest.dataset import ingest as ingest_data
    from warmstart.ingest.freshness import check, markdown
    from warmstart.ingest.preflight import preflight
    from warmstart.run_record import run_record
    from warmstart.stage import report_outcome, user_errors

    record = run_record(config, pipeline_job)
    with user_errors("ingest", record):
        cfg = Config.from_dict(config)
        preflight(cfg)
        card = ingest_data(cfg.data, dataset.path)
        outcome = check(cfg, card, force)
    print(outcome["status"], flush=True)
    report_outcome("ingest", outcome, record, {k: outcome[k] for k in ("train", "status", "champion")})
    dataset.metadata.update({"rows": card["rows"], "fingerprint": card["fingerprint"]})
    Path(freshness.path).write_text(markdown(outcome), encoding="utf-8")
    freshness.metadata.update({k: outcome[k] for k in ("train", "status", "champion")})
    outputs = namedtuple("Outputs", "train runs fingerprint status")
    return outputs(outcome["train"], plan(cfg), card["fingerprint"], outcome)
