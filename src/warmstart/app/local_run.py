"""Run the Kubeflow pipeline on this machine through kfp.local and summarise the outcome."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from warmstart.app.kfp_local import ANSI, Failure, ProgressLog, TaskProcesses, one_logger_for_all_tasks
from warmstart.artifacts import HTML_FILE, load_result
from warmstart.config import Config
from warmstart.errors import ConfigError, WarmstartError
from warmstart.registry import Registry
from warmstart.run_record import RUNS_DIR
from warmstart.stage import CPU_THREADS_ENV, OUTCOME_FILE_ENV
from warmstart.storage import open_store, s3_client, scheme_of


class PipelineFailed(WarmstartError):
    """A pipeline task failed; the message is the failed stage's own error when it gave one."""


def localize(cfg: Config, workdir: Path) -> Config:
    """Absolute local paths (tasks may run elsewhere), and the registry under `workdir` unless set."""
    cfg = cfg.model_copy(deep=True)
    for section, key in (
        ("data", "source"),
        ("data", "test_source"),
        ("model", "source"),
        ("registry", "uri"),
        ("placement", "checkpoint_uri"),
    ):
        holder = getattr(cfg, section)
        value = getattr(holder, key)
        if value and scheme_of(value) == "":
            setattr(holder, key, str(Path(value).expanduser().resolve()))
    cfg.model.candidates = [
        str(Path(uri).expanduser().resolve()) if scheme_of(uri) == "" else uri for uri in cfg.model.candidates
    ]
    if not cfg.registry.uri:
        cfg.registry.uri = str(workdir / "registry")
    return cfg


def run_local(cfg: Config, workdir: Path, verbose: bool = False, force: bool = False) -> dict[str, Any]:
    """Execute the pipeline with kfp.local's SubprocessRunner and return the run summary.

    kfp.local's full log goes to WORKDIR/runs/RUN_ID.log; the console gets progress lines only,
    unless `verbose`. `force` trains even when nothing changed since the champion. A failure raises
    PipelineFailed with the first failing stage's sentence; Ctrl-C or SIGTERM stops every task and
    raises RunInterrupted.
    """
    from kfp import local

    from warmstart.pipelines import build_pipeline

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = localize(cfg, workdir)
    check_machine(cfg)
    cfg, secrets = secrets_apart(cfg)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    outcome_file = workdir / f".outcome-{run_id}"
    (workdir / "runs").mkdir(exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workdir / "runs"))
    started = time.perf_counter()
    progress_file = workdir / "runs" / f"{run_id}.log"
    tasks = TaskProcesses(workdir / f".errors-{run_id}")
    trainings, threads = side_by_side()
    # kfp.local's task processes inherit this process's environment, and so does the lookup below.
    with environment(
        {
            OUTCOME_FILE_ENV: str(outcome_file),
            **({CPU_THREADS_ENV: str(threads)} if threads else {}),
            **cfg.storage.environment(),
            **secrets,
        }
    ):
        progress = ProgressLog(progress_file, sys.stdout, verbose)
        tasks.on_stop = progress.mute  # kfp.local's lines about the tasks it can no longer start: log only
        failed: RuntimeError | None = None
        try:
            with (
                contextlib.redirect_stdout(progress),
                one_logger_for_all_tasks(),
                tasks.installed(),
                warnings.catch_warnings(),
            ):
                # kfp.local notes that GPU requests and display names do nothing locally: true, and expected.
                warnings.filterwarnings(
                    "ignore", message=".*(have no effect in the current local runner|non-Python base image).*"
                )
                pipeline = build_pipeline(cfg, trainings_at_once=trainings)
                pipeline(config=cfg.as_pipeline_argument(), run_id=run_id, force=force)
        except RuntimeError as err:
            failed = err
        finally:
            progress.close()
        if tasks.interrupted:
            outcome_file.unlink(missing_ok=True)
            raise RunInterrupted(interrupted_line(cfg, tasks, run_id), tasks.interrupted) from None
        if failed:
            outcome_file.unlink(missing_ok=True)
            raise PipelineFailed(failure_line(tasks.first_failure(), failed, progress_file)) from None
        seconds = time.perf_counter() - started
        outcome = json.loads(outcome_file.read_text(encoding="utf-8")) if outcome_file.is_file() else {}
        outcome_file.unlink(missing_ok=True)
        if "skipped" in outcome:
            return skipped_summary(outcome["ingest"], run_id, seconds, progress_file)
        if "gate" not in outcome:
            raise PipelineFailed(
                f"the pipeline ended with neither a verdict nor a skip; the full log is {progress_file}"
            )
        gate_result = load_result(outcome["gate"]["result"])
        registered = registration(cfg, gate_result, run_id)
    report = Path(outcome["gate"]["result"]) / HTML_FILE
    summary = summarize(gate_result, registered, run_id, seconds, progress_file, report)
    return {**summary, "freshness": outcome["ingest"]["status"], "deployed": outcome.get("deploy")}


def secrets_apart(cfg: Config) -> tuple[Config, dict[str, str]]:
    """The config with a literal webhook URL replaced by the name of the variable that holds it, and
    that variable: kfp.local writes every task's inputs to the log, and the URL is a credential."""
    from warmstart.notify import WEBHOOK_ENV

    url = cfg.notify.webhook_url
    if not url or url.startswith("env:"):
        return cfg, {}
    cfg = cfg.model_copy(deep=True)
    cfg.notify.webhook_url = f"env:{WEBHOOK_ENV}"
    return cfg, {WEBHOOK_ENV: url}


def check_machine(cfg: Config) -> None:
    """What this machine must have for the run, checked before any task starts: a CUDA GPU for
    fp16, and as many GPUs as train.nproc_per_node asks for when it has GPUs (on a CPU, the
    processes share the cores through the gloo backend)."""
    import torch

    from warmstart.precision import native_bf16, resolve_precision

    cuda = torch.cuda.is_available()
    resolve_precision(cfg.train.precision, cuda, native_bf16(cuda))
    if cuda and cfg.train.num_nodes == 1 and cfg.train.nproc_per_node > torch.cuda.device_count():
        raise ConfigError(
            f"train.nproc_per_node={cfg.train.nproc_per_node} asks for a GPU per process and this machine "
            f"has {torch.cuda.device_count()}; set train.nproc_per_node to at most that"
        )


def failure_line(failure: Failure | None, err: RuntimeError, log: Path) -> str:
    """The one line a failed run ends with: the first failing stage's own sentence, or, when it gave
    none (a crash, a kill), what is known, and where the details are."""
    if failure is None:
        first = ANSI.sub("", str(err)).splitlines()[0] if str(err) else type(err).__name__
        return f"the pipeline failed outside its tasks ({first}); this is a bug in warmstart; the full log is {log}"
    record = failure.record
    if record and record["kind"] == "user":
        return f"{record['stage']}: {record['message']}"
    if record and record["kind"] == "bug":
        return (
            f"{record['stage']}: a bug in warmstart: {record['message']}; the traceback is in the full log, "
            f"{log}; please report it"
        )
    # Killed by a signal: a negative code from the process itself, 128 + the signal from the shell
    # that kfp.local's command runs it in.
    signum = -failure.code if failure.code < 0 else failure.code - 128
    if signum in {int(s) for s in signal.Signals}:
        name = signal.Signals(signum).name
        why = " (the kernel kills a process this way when memory runs out)" if name == "SIGKILL" else ""
        return f"{failure.stage} was killed by {name}{why}; rerun to resume; the full log is {log}"
    return (
        f"{failure.stage} ended with exit code {failure.code} without saying why, which is a bug in "
        f"warmstart; the traceback is in the full log, {log}; please report it"
    )


def interrupted_line(cfg: Config, tasks: TaskProcesses, run_id: str) -> str:
    """What an interrupted run says: where it stopped, whether anything was registered, how to go on."""
    during = ", ".join(tasks.during) or "start-up"
    version = None
    if "register" in tasks.started:
        with contextlib.suppress(WarmstartError):
            version = Registry(cfg.registry.uri).find(cfg.registry.name, run_id=run_id)
    registered = (
        f"{cfg.registry.name} version {version} was registered" if version else "nothing was registered"
    )
    rerun = "rerun to start again"
    if "finetune" in tasks.started and cfg.placement.checkpoint_steps and cfg.checkpoint_root():
        with contextlib.suppress(WarmstartError):
            if [name for name in open_store(cfg.checkpoint_root()).children("") if name != RUNS_DIR]:
                rerun = "rerun to resume from the last checkpoint"
            else:
                rerun = "rerun to start again (training had written no checkpoint yet)"
    return f"interrupted during {during}; {registered}; {rerun}"


class RunInterrupted(WarmstartError):
    """Ctrl-C or SIGTERM stopped the run; `signum` is which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def side_by_side() -> tuple[int, int]:
    """How many finetune tasks train at once on this machine, and the CPU threads each gets (0: torch's
    default). On a CPU, two at once on half the cores each: the demo's two arms took 85 s so against
    113 s one after the other on 2 cores (a small model's step does not use two cores fully, see
    bench/RESULTS.md). With a GPU, one at a time: two trainings would share its memory."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if torch.cuda.is_available() or cores < 2:
        return 1, 0
    return 2, cores // 2


def skipped_summary(status: dict[str, Any], run_id: str, seconds: float, log_file: Path) -> dict[str, Any]:
    """The summary of a run that ended at ingest because nothing changed since the champion."""
    return {
        "run_id": run_id,
        "verdict": "skipped",
        "passed": False,
        "skipped": {
            "status": status["status"],
            "champion": int(status["champion"]),
            "fingerprint": status["fingerprint"],
        },
        "registered": None,
        "wall_seconds": round(seconds, 1),
        "log": str(log_file),
        "report": None,
    }


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore what was there (a fresh S3 client too)."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    s3_client.cache_clear()
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        s3_client.cache_clear()


def registration(cfg: Config, gate_result: dict[str, Any], run_id: str) -> dict[str, Any] | None:
    """The registry version holding the model this run's gate passed (None if it did not pass).

    Found by the weights' sha256, so a rerun that produced the very same model reports the version
    registered first (`new` false) instead of nothing.
    """
    if not gate_result["passed"]:
        return None
    registry = Registry(cfg.registry.uri)
    name = cfg.registry.name
    version = registry.find(name, model_sha256=gate_result["pretrained"]["model_sha256"])
    if version is None:
        raise PipelineFailed(
            f"the gate passed but {name} has no version with this model in {cfg.registry.uri}"
        )
    return {
        "name": name,
        "version": version,
        "uri": registry.version_uri(name, version),
        "new": registry.metadata(name, version)["lineage"]["run_id"] == run_id,
        "champion": registry.alias(name, "champion") == version,
    }


def summarize(
    gate_result: dict[str, Any],
    registered: dict[str, Any] | None,
    run_id: str,
    seconds: float,
    log_file: Path,
    report: Path | None = None,
) -> dict[str, Any]:
    """The run summary: the gate's verdict and numbers, what was registered, and where the report is."""
    metric_names = ("accuracy", "macro_f1")
    return {
        "run_id": run_id,
        "verdict": gate_result["verdict"],
        "passed": gate_result["passed"],
        "metric": gate_result["metric"],
        "pretrained": {m: gate_result["pretrained"][m] for m in metric_names},
        "scratch": {m: gate_result["scratch"][m] for m in metric_names},
        "gain": {k: gate_result["gain"][k] for k in ("estimate", "ci_low", "ci_high", "confidence")},
        "mcnemar_p": gate_result["mcnemar"]["p_value"],
        "seeds": seeds_summary(gate_result),
        "screening": screening_summary(gate_result),
        "tests": gate_result["curves"]["tests"],
        "tuning": gate_result.get("tuning"),
        "baselines": gate_result.get("baselines"),
        "data_efficiency": gate_result.get("data_efficiency"),
        "registered": registered,
        "champion": champion_summary(gate_result),
        "decided_by": gate_result["decided_by"],
        "reason": gate_result["reason"],
        "decision_rule": gate_result["decision_rule"],
        "test_rows": gate_result["test_rows"],
        "wall_seconds": round(seconds, 1),
        "log": str(log_file),
        "report": str(report) if report else None,
    }


def seeds_summary(gate_result: dict[str, Any]) -> dict[str, Any]:
    """How many training seeds backed the verdict, which one was registered, and each seed's gain."""
    seeds = gate_result["seeds"]
    return {
        **{k: seeds[k] for k in ("count", "values", "chosen", "chosen_by")},
        "gains": {str(run["seed"]): run["gain"] for run in seeds["runs"]},
    }


def screening_summary(gate_result: dict[str, Any]) -> dict[str, Any] | None:
    """The pre-screen in brief: the LogME score of every candidate, best first, and the one chosen."""
    screening = gate_result.get("screening")
    if not screening or not screening["screened"]:
        return None
    return {
        "chosen": screening["chosen"],
        "ranking": [{k: entry[k] for k in ("source", "logme", "floor")} for entry in screening["ranking"]],
    }


def champion_summary(gate_result: dict[str, Any]) -> dict[str, Any] | None:
    """The champion check in brief: which version, the comparison, and whether this run takes over."""
    champion = gate_result.get("champion")
    if not champion:
        return None
    brief = {k: champion[k] for k in ("version", "comparable", "reason")}
    if champion["comparable"]:
        brief.update({k: champion[k] for k in ("challenger", "champion", "non_inferior", "superior")})
        brief["gain"] = {k: champion["gain"][k] for k in ("estimate", "ci_low", "ci_high", "confidence")}
    brief["promoted"] = gate_result["promote"] and gate_result["passed"]
    return brief


def write_summary(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
