"""KFP component: deploy (library: warmstart.deploy)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def deploy(
    config: dict,
    registration: Input[Artifact],
    dataset: Input[Dataset],
    evaluations: Input[list[Dataset]],
    deployment: Output[Artifact],
    pipeline_job: str = "",
):
    """Serve the version register made champion with a KServe InferenceService (a canary beside the live
    version), smoke-test it against the offline predictions the gate judged (evaluations: every finetune
    task's), and on failure restore the traffic and the champion alias."""
    import json
    import os
    from pathlib import Path

    from warmstart.config import Config
    from warmstart.deploy import deploy as serve
    from warmstart.finetune.trainjob import IMAGE_ENV
    from warmstart.run_record import run_record
    from warmstart.stage import report_outcome, user_errors

    record = run_record(config, pipeline_job)
    with user_errors("deploy", record):
        done = serve(
            Config.from_dict(config),
            json.loads(Path(registration.path).read_text()),
            dataset.path,
            [evaluation.path for evaluation in evaluations],
            os.environ.get(IMAGE_ENV, ""),  # the pipeline's own image, set on every task
        )
    print(f"deploy: {done['summary']}", flush=True)
    Path(deployment.path).write_text(json.dumps(done, indent=2))
    deployment.metadata.update({k: v for k, v in done.items() if v is not None})
    report_outcome("deploy", done, record)
