"""The DAG, reading like the picture in the README.

ingest ──► fetch_model ──► for each seed ──┬─► finetune(init=pretrained) ─┐
                                           └─► finetune(init=scratch)   ──┼─► gate ──► [passed] register
ingest ──► evaluate_champion (the registry's champion) ───────────────────┘

fetch_model pre-screens model.candidates when there are any. The loop runs over train.seeds, which
ingest returns from the run's config. evaluate_champion predicts this run's test split with the
current champion, when there is one, so the gate can compare the challenger with it on the same rows.
"""

from pathlib import Path
from typing import Any

from kfp import compiler, dsl
from kfp.dsl import Artifact, Dataset, Input, Model
from warmstart.components import (
    DEFAULT_IMAGE,
    evaluate_champion,
    fetch_model,
    finetune,
    gate,
    ingest,
    register,
)

from warmstart import cluster
from warmstart.config import Config
from warmstart.trainjob import IMAGE_ENV

PIPELINE_NAME = "warmstart-transfer"


def build_pipeline(config: Config, image: str = DEFAULT_IMAGE, seeds_at_once: int = 0) -> Any:
    """The pipeline with `config` as its default parameters and every task running in `image`.

    `seeds_at_once` caps how many seeds train at the same time (0: as many as the cluster allows).
    """

    # One GPU per training process; a multi-node run's GPUs belong to its TrainJob instead.
    gpus = config.train.nproc_per_node if config.train.num_nodes == 1 else 0

    def in_image(task: dsl.PipelineTask, name: str, stage: str = "") -> dsl.PipelineTask:
        for key, value in config.storage.environment().items():
            task.set_env_variable(key, value)
        cluster.apply(task, config.cluster, stage, gpus)
        return task.set_container_image(image).set_display_name(name)

    @dsl.pipeline(name="register-if-passed")
    def register_if_passed(
        config: dict,
        run_id: str,
        pipeline_job: str,
        passed: bool,
        models: Input[list[Model]],
        gate_result: Input[Artifact],
        dataset: Input[Dataset],
        base_model: Input[Model],
    ):
        # Its own sub-DAG because KFP's compiler cannot hand a dsl.Collected list into a dsl.If
        # (kfp 2.17); a sub-pipeline's input can be.
        with dsl.If(passed == True, name="gate passed"):  # noqa: E712
            in_image(
                register(
                    config=config,
                    run_id=run_id,
                    pipeline_job=pipeline_job,
                    models=models,
                    gate_result=gate_result,
                    dataset=dataset,
                    base_model=base_model,
                ),
                "register",
            )

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Fine-tune a pretrained model and a from-scratch baseline of the same architecture, once "
        "per training seed; register the fine-tuned model only if the gate finds positive transfer.",
    )
    # KFP reads parameter defaults from the signature, so the config must be evaluated here.
    def transfer_pipeline(config: dict = config.model_dump(), run_id: str = "") -> dsl.Artifact:  # noqa: B008
        data = in_image(ingest(config=config), "ingest")
        base = in_image(
            fetch_model(config=config, dataset=data.outputs["dataset"]), "fetch model", "fetch_model"
        )
        arms = {}
        # ingest returns train.seeds of the run's config, so a run started with other seeds trains those.
        with dsl.ParallelFor(data.outputs["Output"], parallelism=seeds_at_once, name="seeds") as seed:
            for init in ("pretrained", "scratch"):
                arms[init] = in_image(
                    finetune(
                        config=config,
                        init=init,
                        seed=seed,
                        dataset=data.outputs["dataset"],
                        base_model=base.outputs["base_model"],
                    ),
                    f"finetune ({init})",
                    "finetune",
                )
                arms[init].set_env_variable(IMAGE_ENV, image)
        champion = in_image(
            evaluate_champion(config=config, dataset=data.outputs["dataset"]), "evaluate champion"
        )
        decision = in_image(
            gate(
                config=config,
                pretrained=dsl.Collected(arms["pretrained"].outputs["evaluation"]),
                scratch=dsl.Collected(arms["scratch"].outputs["evaluation"]),
                champion=champion.outputs["evaluation"],
                dataset=data.outputs["dataset"],
                screening=base.outputs["screening"],
            ),
            "gate",
        )
        register_if_passed(
            config=config,
            run_id=run_id,
            pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            passed=decision.outputs["Output"],
            models=dsl.Collected(arms["pretrained"].outputs["model"]),
            gate_result=decision.outputs["result"],
            dataset=data.outputs["dataset"],
            base_model=base.outputs["base_model"],
        ).set_display_name("register if the gate passed")
        return decision.outputs["result"]

    return transfer_pipeline


def compile_pipeline(config: Config, output: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    """Write the pipeline YAML that Kubeflow Pipelines uploads."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(config, image), package_path=str(output))
    return output
