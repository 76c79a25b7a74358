"""KFP component: fetch_model (library: warmstart.fetch)."""

from kfp import dsl
from kfp.dsl import Model, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def fetch_model(config: dict, base_model: Output[Model]):
    """Resolve model.source into safetensors weights, config and tokenizer or image processor, with manifest.json."""
    from warmstart.config import Config
    from warmstart.fetch import fetch_model as fetch
    from warmstart.stage import user_errors

    with user_errors("fetch_model"):
        manifest = fetch(Config.from_dict(config).model, base_model.path)
    base_model.metadata.update({k: manifest[k] for k in ("source", "revision", "architecture", "parameters")})
