"""KFP component: notify, the run's exit handler (library: warmstart.notify)."""

from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def notify(config: dict, pipeline_job: str, status: PipelineTaskFinalStatus):
    """Post one message about how the run went to notify.webhook_url: the verdict and gain, the version
    registered, a skip and why, or the failed task and its error. A message that cannot be delivered is
    a warning in the log, not a failed run: the run's own outcome stands."""
    from warmstart.config import Config
    from warmstart.notify import NotifyError
    from warmstart.notify import notify as send

    try:
        body = send(Config.from_dict(config), pipeline_job, status.state, status.error_message or "")
    except NotifyError as err:
        print(f"warning: notify: {err}", flush=True)
    else:
        print(f"notify: posted the run's outcome ({body['warmstart']['status']}) to the webhook", flush=True)
