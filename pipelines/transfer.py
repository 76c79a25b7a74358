"""The DAG, reading like the picture in the README.

ingest ─┬─[something changed]─► fetch_model ──► for each run and arm ─► finetune(init=pretrained|scratch) ─┐
        │                       (+ linear probe)                                                           ├─► gate ──► [passed] register ──► deploy
        │                       evaluate_champion (the registry's champion) ───────────────────────────────┘
        └─[nothing changed]──► skipped

ingest compares the run with the registry's champion: when the data (its fingerprint), the
pretrained source and the training settings are the same, the run ends at `skipped` unless the
`force` parameter is true. fetch_model pre-screens model.candidates when there are any, and probes
the chosen model's frozen features (the start). The loop runs over the plan ingest returns from the
run's config: one finetune task per arm for each training seed, data fraction (gate.data_fractions)
and share of the tuning grid (tune.parallel_trials); each searches its share of its arm's learning
rates by successive halving. The two arms of a run are neighbouring items, so they train side by side
wherever two fit at once. The gate takes the best run of each arm per seed on validation.
evaluate_champion predicts this run's test split with the current champion, when there is one, so
the gate can compare the challenger with it on the same rows. deploy (with deploy.enabled) serves the
new champion with KServe and smoke-tests it against the predictions the gate judged.

With notify configured, all of it runs inside a dsl.ExitHandler whose exit task, notify, posts one
message however the run ended; the stages leave what it says in the run's record (warmstart.run_record)."""

from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Model
from warmstart.components import (
    DEFAULT_IMAGE,
    deploy,
    evaluate_champion,
    fetch_model,
    finetune,
    gate,
    ingest,
    notify,
    register,
    skipped,
)

from warmstart.app import cluster
from warmstart.config import Config, refuse_literal_webhook
from warmstart.finetune.trainjob import IMAGE_ENV
from warmstart.notify import WEBHOOK_ENV

PIPELINE_NAME = "warmstart-transfer"
# The display name of the task that ends a run in which nothing changed (`warmstart runs` looks for it).
SKIPPED_TASK = "skipped: nothing changed"


def build_pipeline(config: Config, image: str = DEFAULT_IMAGE, trainings_at_once: int | None = None) -> Any:
    """The pipeline with `config` as its default parameters and every task running in `image`.

    `trainings_at_once` caps how many finetune tasks (one per arm of each run of the plan) train at the
    same time (default: cluster.max_parallel_trainings; 0: as many as the cluster allows).
    """
    if trainings_at_once is None:
        trainings_at_once = config.cluster.max_parallel_trainings
    config_notify, notifying = config.notify, config.notify.enabled()
    deploying = config.deploy.enabled

    # One GPU per training process; a multi-node run's GPUs belong to its TrainJob instead.
    gpus = config.train.nproc_per_node if config.train.num_nodes == 1 else 0

    def in_image(task: dsl.PipelineTask, name: str, stage: str = "") -> dsl.PipelineTask:
        for key, value in config.storage.environment().items():
            task.set_env_variable(key, value)
        task.set_env_variable(IMAGE_ENV, image)  # a TrainJob's nodes run it; the preflight checks it is set
        cluster.apply(task, config.cluster, stage, gpus)
        return task.set_container_image(image).set_display_name(name)

    @dsl.pipeline(name="register-if-passed")
    def register_if_passed(
        config: dict,
        run_id: str,
        pipeline_job: str,
        passed: bool,
        models: Input[list[Model]],
        evaluations: Input[list[Dataset]],
        gate_result: Input[Artifact],
        dataset: Input[Dataset],
        base_model: Input[Model],
    ):
        # Its own sub-DAG because KFP's compiler cannot hand a dsl.Collected list into a dsl.If
        # (kfp 2.17); a sub-pipeline's input can be.
        with dsl.If(passed == True, name="gate passed"):  # noqa: E712
            registered = in_image(
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
            if deploying:
                in_image(
                    deploy(
                        config=config,
                        registration=registered.outputs["registration"],
                        dataset=dataset,
                        evaluations=evaluations,
                        pipeline_job=pipeline_job,
                    ),
                    "deploy",
                )

    @dsl.pipeline(name="train-judge-register")
    def train_judge_register(
        config: dict,
        run_id: str,
        pipeline_job: str,
        runs: list,
        data_fingerprint: str,
        base_fingerprint: str,
        dataset: Input[Dataset],
        base_model: Input[Model],
        screening: Input[Artifact],
    ):
        # Its own sub-DAG so that every value the seed loop reads is an input of this DAG: kfp.local
        # (2.17) hands a loop task the loop item in place of any sibling task's output parameter.
        with dsl.ParallelFor(runs, parallelism=trainings_at_once, name="runs") as run:
            training = in_image(
                finetune(
                    config=config,
                    run=run,
                    data_fingerprint=data_fingerprint,
                    base_fingerprint=base_fingerprint,
                    dataset=dataset,
                    base_model=base_model,
                    pipeline_job=pipeline_job,
                ),
                "finetune",
                "finetune",
            )
        champion = in_image(
            evaluate_champion(config=config, dataset=dataset, pipeline_job=pipeline_job), "evaluate champion"
        )
        decision = in_image(
            gate(
                config=config,
                evaluations=dsl.Collected(training.outputs["evaluation"]),
                champion=champion.outputs["evaluation"],
                dataset=dataset,
                screening=screening,
                pipeline_job=pipeline_job,
            ),
            "gate",
        )
        register_if_passed(
            config=config,
            run_id=run_id,
            pipeline_job=pipeline_job,
            passed=decision.outputs["Output"],
            models=dsl.Collected(training.outputs["model"]),
            evaluations=dsl.Collected(training.outputs["evaluation"]),
            gate_result=decision.outputs["result"],
            dataset=dataset,
            base_model=base_model,
        ).set_display_name("register if the gate passed")

    def train_or_skip(config, run_id, force) -> None:
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        data = in_image(ingest(config=config, force=force, pipeline_job=job), "ingest")
        with dsl.If(data.outputs["train"] == True, name="something changed: train"):  # noqa: E712
            base = in_image(
                fetch_model(config=config, dataset=data.outputs["dataset"], pipeline_job=job),
                "fetch model",
                "fetch_model",
            )
            train_judge_register(
                config=config,
                run_id=run_id,
                pipeline_job=job,
                runs=data.outputs["runs"],
                data_fingerprint=data.outputs["fingerprint"],
                base_fingerprint=base.outputs["Output"],
                dataset=data.outputs["dataset"],
                base_model=base.outputs["base_model"],
                screening=base.outputs["screening"],
            ).set_display_name("train, judge, register")
        with dsl.Else(name="nothing changed: skip"):
            in_image(skipped(status=data.outputs["status"]), SKIPPED_TASK)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Fine-tune a pretrained model and a from-scratch baseline of the same architecture, each "
        "with its learning rate tuned on validation, once per training seed; register the fine-tuned model "
        "only if the gate finds positive transfer. "
        "Ends early when the data, the pretrained source and the training settings are those of the "
        "registry's champion, unless force is true.",
    )
    # KFP reads parameter defaults from the signature, so the config must be evaluated here.
    def transfer_pipeline(
        config: dict = config.as_pipeline_argument(),  # noqa: B008
        run_id: str = "",
        force: bool = False,
    ):
        if not notifying:
            train_or_skip(config, run_id, force)
            return
        # The exit handler runs however the run ends, and learns what it did from the run's record.
        handler = in_image(notify(config=config, pipeline_job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER), "notify")
        if config_notify.webhook_secret:
            kubernetes.use_secret_as_env(
                handler, config_notify.webhook_secret, {config_notify.secret_key: WEBHOOK_ENV}
            )
        with dsl.ExitHandler(handler, name="run, then notify"):
            train_or_skip(config, run_id, force)

    return transfer_pipeline


def compile_pipeline(config: Config, output: str | Path, image: str = DEFAULT_IMAGE) -> Path:
    """Write the pipeline YAML that Kubeflow Pipelines uploads (a literal webhook URL is refused: the
    config is in it for anyone who can read the pipeline)."""
    refuse_literal_webhook(config)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(config, image), package_path=str(output))
    return output
