"""KFP component: fetch_model (libraries: warmstart.fetch_model.screen, .sources, .probe)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fetch_model(
    config: dict,
    dataset: Input[Dataset],
    base_model: Output[Model],
    screening: Output[Artifact],
    scores: Output[Metrics],
    pipeline_job: str = "",
) -> str:
    """Resolve model.source into safetensors weights, config and tokenizer or image processor, with
    manifest.json. With model.candidates, the one with the best LogME score on the training split.
    Then the linear probe of the chosen model and its random init (the start the gate reports),
    written beside the pre-screen.

    Returns the model's fingerprint (its files' digests), which finetune takes as a parameter.
    """
    from warmstart.artifacts import model_fingerprint
    from warmstart.config import Config
    from warmstart.fetch_model.probe import linear_probe
    from warmstart.fetch_model.screen import fetch_best
    from warmstart.finetune.strategies import check_strategy
    from warmstart.run_record import run_record
    from warmstart.stage import user_errors

    with user_errors("fetch_model", run_record(config, pipeline_job)):
        cfg, features = Config.from_dict(config), {}
        manifest, ranked = fetch_best(cfg, dataset.path, base_model.path, screening.path, features)
        check_strategy(cfg.train, dataset.path, base_model.path)  # what finetune would refuse, here
        probe = linear_probe(cfg, dataset.path, base_model.path, screening.path, features)
    base_model.metadata.update({k: manifest[k] for k in ("source", "revision", "architecture", "parameters")})
    for entry in ranked.get("ranking", []):
        scores.log_metric(f"logme {entry['source']}", entry["logme"])
    for arm in ("pretrained", "random_init"):
        scores.log_metric(f"probe {arm} {probe['metric']}", probe[arm][probe["metric"]])
    screening.metadata.update({k: ranked[k] for k in ("screened", "chosen")})
    return model_fingerprint(manifest)
