"""KFP component: evaluate_champion (library: warmstart.evaluate_champion)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def evaluate_champion(
    config: dict, dataset: Input[Dataset], evaluation: Output[Dataset], pipeline_job: str = ""
):
    """Predict this run's test split with the registry's champion (or record that there is none)."""
    from warmstart.config import Config
    from warmstart.evaluate_champion import evaluate_champion as evaluate
    from warmstart.run_record import run_record
    from warmstart.stage import user_errors

    with user_errors("evaluate_champion", run_record(config, pipeline_job)):
        summary = evaluate(Config.from_dict(config), dataset.path, evaluation.path)
    evaluation.metadata.update({"version": summary["version"], "comparable": summary["comparable"]})
