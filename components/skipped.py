"""KFP component: skipped, the pipeline's last step when ingest found nothing new to learn."""

from kfp import dsl
from kfp.dsl import Markdown, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def skipped(status: dict, summary: Output[Markdown]):
    """End the run without training: say in the log and the run's outputs which version already
    holds this data's model."""
    from pathlib import Path

    from warmstart.ingest.freshness import markdown
    from warmstart.stage import report_outcome

    print(status["status"], flush=True)
    Path(summary.path).write_text(markdown(status), encoding="utf-8")
    summary.metadata.update({"status": status["status"]})
    report_outcome("skipped", {"status": status["status"]})
