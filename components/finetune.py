"""KFP component: finetune (library: warmstart.finetune)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def finetune(
    config: dict,
    init: str,
    seed: int,
    dataset: Input[Dataset],
    base_model: Input[Model],
    model: Output[Model],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Train one arm (init = pretrained or scratch) with one of train.seeds; evaluation holds test
    predictions and the learning curve."""
    from warmstart.config import Config
    from warmstart.finetune import finetune as train
    from warmstart.stage import user_errors

    with user_errors(f"finetune[{init}]"):
        summary = train(
            Config.from_dict(config).for_seed(int(seed)),
            init,
            dataset.path,
            base_model.path,
            model.path,
            evaluation.path,
        )
    for name, value in summary["test_metrics"].items():
        metrics.log_metric(f"test_{name}", value)
    model.metadata.update({"init": init, "seed": int(seed), "sha256": summary["model_sha256"]})
