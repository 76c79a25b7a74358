"""KFP component: register (library: warmstart.register)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def register(
    config: dict,
    run_id: str,
    pipeline_job: str,
    models: Input[list[Model]],
    gate_result: Input[Artifact],
    dataset: Input[Dataset],
    base_model: Input[Model],
    registration: Output[Artifact],
):
    """Publish the pretrained-init model the gate chose (models: every finetune task's) as a new
    registry version; refuses without a passing gate result."""
    import json
    from pathlib import Path

    from warmstart.config import Config
    from warmstart.register.publish import register as publish
    from warmstart.run_record import run_record
    from warmstart.stage import report_outcome, user_errors

    record = run_record(config, pipeline_job)
    with user_errors("register", record):
        registered = publish(
            Config.from_dict(config),
            [model.path for model in models],
            gate_result.path,
            dataset.path,
            base_model.path,
            run_id,
            pipeline_job,
        )
    Path(registration.path).write_text(json.dumps(registered, indent=2))
    registration.metadata.update(registered)
    report_outcome("register", registered, record)
