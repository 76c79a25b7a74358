"""The KFP components of warmstart, one module per pipeline stage (and the exit handler, notify).

Each component is a thin typed wrapper: it declares its inputs and outputs and calls the library
in `warmstart.<stage>`. Every component runs in the warmstart image; the pipeline stamps the
image chosen at compile time onto each task.
"""

DEFAULT_IMAGE = "ghcr.io/warmstart-ml/warmstart:0.1.0"

from warmstart.components.deploy import deploy  # noqa: E402
from warmstart.components.evaluate_champion import evaluate_champion  # noqa: E402
from warmstart.components.fetch_model import fetch_model  # noqa: E402
from warmstart.components.finetune import finetune  # noqa: E402
from warmstart.components.gate import gate  # noqa: E402
from warmstart.components.ingest import ingest  # noqa: E402
from warmstart.components.notify import notify  # noqa: E402
from warmstart.components.register import register  # noqa: E402
from warmstart.components.skipped import skipped  # noqa: E402

__all__ = [
    "DEFAULT_IMAGE",
    "deploy",
    "evaluate_champion",
    "fetch_model",
    "finetune",
    "gate",
    "ingest",
    "notify",
    "register",
    "skipped",
]
