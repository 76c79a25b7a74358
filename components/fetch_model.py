"""KFP component: fetch_model (libraries: warmstart.screen, warmstart.fetch)."""

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
) -> str:
    """Resolve model.source into safetensors weights, config and tokenizer or image processor, with
    manifest.json. With model.candidates, the one with the best LogME score on the training split.

    Returns the model's fingerprint (its files' digests), which finetune takes as a parameter.
    """
    from warmstart.config import Config
    from warmstart.fetch import model_fingerprint
    from warmstart.screen import fetch_best
    from warmstart.stage import user_errors

    with user_errors("fetch_model"):
        manifest, ranked = fetch_best(Config.from_dict(config), dataset.path, base_model.path, screening.path)
    base_model.metadata.update({k: manifest[k] for k in ("source", "revision", "architecture", "parameters")})
    for entry in ranked.get("ranking", []):
        scores.log_metric(f"logme {entry['source']}", entry["logme"])
    screening.metadata.update({k: ranked[k] for k in ("screened", "chosen")})
    return model_fingerprint(manifest)
