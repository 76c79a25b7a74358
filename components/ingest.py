"""KFP component: ingest (library: warmstart.ingest)."""

from kfp import dsl
from kfp.dsl import Dataset, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(config: dict, dataset: Output[Dataset]) -> list[int]:
    """Read, clean and split the labelled data; the directory holds the splits and data_card.json.

    Returns the training seeds (train.seeds, or [train.seed]) of the config it validated: the
    pipeline trains both arms once per seed, so the loop follows the run's own config.
    """
    from warmstart.config import Config
    from warmstart.ingest import ingest as ingest_data
    from warmstart.stage import user_errors

    with user_errors("ingest"):
        cfg = Config.from_dict(config)
        card = ingest_data(cfg.data, dataset.path)
    dataset.metadata.update({"rows": card["rows"], "fingerprint": card["fingerprint"]})
    return cfg.train.run_seeds()
