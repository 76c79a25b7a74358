"""KFP component: finetune (library: warmstart.finetune: launch and train)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output
from warmstart.components import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def finetune(
    config: dict,
    run: dict,
    data_fingerprint: str,
    base_fingerprint: str,
    dataset: Input[Dataset],
    base_model: Input[Model],
    model: Output[Model],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    pipeline_job: str = "",
):
    """Train one arm for one run of the plan: its init (pretrained or scratch), seed, data fraction and
    share of the tuning grid (successive halving over those rates on the validation split);
    evaluation holds test predictions, the learning curve and every trial.

    The fingerprints of the dataset and the base model are parameters so that KFP's cache key,
    which names input artifacts but does not look inside them, changes when their content does.
    """
    from warmstart.config import Config
    from warmstart.finetune.launch import finetune as train
    from warmstart.finetune.tuning import share_of
    from warmstart.ingest.freshness import check_inputs
    from warmstart.run_record import run_record
    from warmstart.stage import user_errors

    init = str(run["init"])
    task = "-".join(f"{key}{run[key]}" for key in sorted(run))  # one record per task of the loop
    with user_errors(f"finetune[{init}]", run_record(config, pipeline_job, task)):
        check_inputs(dataset.path, base_model.path, data_fingerprint, base_fingerprint)
        cfg = Config.from_dict(config).for_seed(int(run["seed"]))
        rates = share_of(cfg, init, int(run["share"]))
        summary = train(
            cfg,
            init,
            dataset.path,
            base_model.path,
            model.path,
            evaluation.path,
            rates,
            float(run["fraction"]),
        )
    for name, value in summary["test_metrics"].items():
        metrics.log_metric(f"test_{name}", value)
    for name in ("train_seconds", "train_samples_per_second"):  # what the arm cost, in the KFP UI
        if summary.get(name) is not None:
            metrics.log_metric(name, summary[name])
    for trial in summary["tuning"]["trials"]:  # every rate tried: its steps and validation metric
        for key in ("steps", *trial["validation"]):
            metrics.log_metric(
                f"lr {trial['learning_rate']:g} {key}", trial.get(key, trial["validation"].get(key))
            )
    metrics.log_metric("learning_rate", summary["learning_rate"])
    model.metadata.update(
        {**run, "learning_rate": summary["learning_rate"], "sha256": summary["model_sha256"]}
    )
