"""The DAG, reading like the picture in the README.

ingest ──► fetch_model ──┬─► finetune(init=pretrained) ─┐
                         └─► finetune(init=scratch)   ──┼─► gate ──► [passed] register
ingest ──► evaluate_champion (the registry's champion) ──┘

evaluate_champion predicts this run's test split with the current champion, when there is one, so
the gate can compare the challenger with it on the same rows.
"""

from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from warmstart.components import (
    DEFAULT_IMAGE,
    evaluate_champion,
    fetch_model,
    finetune,
    gate,
    ingest,
    register,
)

from warmstart.config import Config
from warmstart.trainjob import IMAGE_ENV

PIPELINE_NAME = "warmstart-transfer"


def build_pipeline(config: Config, image: str = DEFAULT_IMAGE) -> Any:
    """The pipeline with `config` as its default parameters and every task running in `image`."""

    # One GPU per training process; a multi-node run's GPUs belong to its TrainJob instead.
    gpus = config.train.nproc_per_node if config.train.num_nodes == 1 else 0

    def in_image(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        for key, value in config.storage.environment().items():
            task.set_env_variable(key, value)
        return task.set_container_image(image).set_display_name(name)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Fine-tune a pretrained model and a from-scratch baseline of the same architecture; "
        "register the fine-tuned model only if the gate finds positive transfer.",
    )
    # KFP reads parameter defaults from the signature, so the config must be evaluated here.
    def transfer_pipeline(config: dict = config.model_dump(), run_id: str = "") -> dsl.Artifact:  # noqa: B008
        data = in_image(ingest(config=config), "ingest")
        base = in_image(fetch_model(config=config), "fetch model")
        arms = {}
        for init in ("pretrained", "scratch"):
            arms[init] = in_image(
                finetune(
                    config=config,
                    init=init,
                    dataset=data.outputs["dataset"],
                    base_model=base.outputs["base_model"],
                ),
                f"finetune ({init})",
            )
            if gpus:
                arms[init].set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
            arms[init].set_env_variable(IMAGE_ENV, image)
            # A rescheduled or failed pod is retried; the retry resumes from its checkpoints.
            arms[init].set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
        champion = in_image(
            evaluate_champion(config=config, dataset=data.outputs["dataset"]), "evaluate champion"
        )
        decision = in_image(
            gate(
                config=config,
                pretrained=arms["pretrained"].outputs["evaluation"],
                scratch=arms["scratch"].outputs["evaluation"],
                champion=champion.outputs["evaluation"],
                dataset=data.outputs["dataset"],
            ),
            "gate",
        )
        with dsl.If(decision.outputs["Output"] == True, name="gate passed"):  # noqa: E712
            in_image(
                register(
                    config=config,
                    run_id=run_id,
                    pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    model=arms["pretrained"].outputs["model"],
                    gate_result=decision.outputs["result"],
                    dataset=data.outputs["dataset"],
                    base_model=base.outputs["base_model"],
                ),
                "register",
            )
        return decision.outputs["result"]

    return transfer_pipeline


def compile_pipeline(config: Config, output: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    """Write the pipeline YAML that Kubeflow Pipelines uploads."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(config, image), package_path=str(output))
    return output
