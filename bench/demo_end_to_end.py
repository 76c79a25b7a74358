"""The demo end to end: `warmstart run` in a fresh directory, as a new user runs it, timed per stage.

It runs the command in a new process (both arms, gate and register through kfp.local, Python start
and pipeline compile included), reads each task's start and end from kfp.local's log, and each
finetune's own training time from its summary. The orchestration overhead of one component is
measured apart: a component that does nothing, run through the same kfp.local SubprocessRunner.

The demo runs twice: as `warmstart run` runs it (tuning on) and with `--set tune.enabled=false`,
so the tuning's cost is measured against an untuned run on the same machine at the same time.

Usage: python bench/demo_end_to_end.py   (writes bench/results/demo_end_to_end.json)
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from machine import describe, write_result

RESULTS = Path(__file__).resolve().parent / "results" / "demo_end_to_end.json"
TASK_LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d+) - INFO - (?:Executing task '([^']+)'|Task '([^']+)' finished)"
)


def task_seconds(log: Path) -> dict[str, float]:
    """Each task's wall time from kfp.local's log lines 'Executing task X' and 'Task X finished'.

    Tasks of one name (the finetune tasks of a ParallelFor, which run side by side) get "X", "X #2", ...
    in the order they finish, each paired with the earliest start still open; "X (all)" is the span from
    the first one's start to the last one's end."""
    started: dict[str, list[datetime]] = {}
    spans: dict[str, list[datetime]] = {}
    seconds: dict[str, float] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        match = TASK_LINE.match(line)
        if not match:
            continue
        at = datetime.strptime(match.group(1), "%H:%M:%S.%f")
        name = match.group(2) or match.group(3)
        if match.group(2):
            started.setdefault(name, []).append(at)
            spans.setdefault(name, [at, at])
            continue
        key, count = name, 1
        while key in seconds:
            count += 1
            key = f"{name} #{count}"
        seconds[key] = round((at - started[name].pop(0)).total_seconds(), 2)
        spans[name][1] = at
        if count > 1:
            seconds[f"{name} (all)"] = round((spans[name][1] - spans[name][0]).total_seconds(), 2)
    return seconds


def noop_component_seconds(work: Path, repeats: int = 3) -> list[float]:
    """Wall time of a component that does nothing, through kfp.local's SubprocessRunner."""
    from kfp import dsl, local

    # No annotations: this module's `from __future__ import annotations` would hide them from kfp.
    @dsl.component(base_image="python:3.11")
    def nothing():
        pass

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "noop"))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        nothing()
        times.append(round(time.perf_counter() - started, 2))
    return times


def timed_run(work: Path, extra: list[str]) -> dict:
    """`warmstart run` (plus `extra` arguments) in a fresh directory, timed per stage."""
    work.mkdir(parents=True)
    started = time.perf_counter()
    finished = subprocess.run(
        [sys.executable, "-m", "warmstart", "run", *extra], cwd=work, capture_output=True, text=True
    )
    command_seconds = round(time.perf_counter() - started, 1)
    if finished.returncode != 0:
        raise SystemExit(f"warmstart run failed:\n{finished.stdout[-3000:]}\n{finished.stderr[-3000:]}")
    summary = json.loads((work / "warmstart-work" / "summary.json").read_text())
    arms = {}
    for path in (work / "warmstart-work" / "runs").rglob("summary.json"):
        arm = json.loads(path.read_text())
        if "init" in arm and "train_seconds" in arm:  # a finetune evaluation, not the champion's
            arms[arm["init"]] = {
                k: arm.get(k)
                for k in ("precision", "learning_rate", "train_seconds", "train_samples_per_second", "steps")
            }
    tuning = summary.get("tuning") or {}
    return {
        "command_seconds": command_seconds,
        "pipeline_seconds": summary["wall_seconds"],
        "tasks_seconds": task_seconds(Path(summary["log"])),
        "finetune": arms,
        "tuning_steps_ratio": (tuning.get("cost") or {}).get("ratio"),
        "verdict": summary["verdict"],
        "gain": summary["gain"],
        "pretrained_accuracy": summary["pretrained"]["accuracy"],
        "scratch_accuracy": summary["scratch"]["accuracy"],
        "scratch_learned": summary["baselines"]["learned"],
        "start": {k: summary["tests"]["start"][k] for k in ("pretrained", "scratch", "finding")},
        "decisive": summary["gain"]["ci_low"] > 0 or summary["gain"]["ci_high"] < 0,
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        tuned = timed_run(work / "tuned", [])
        untuned = timed_run(work / "untuned", ["--set", "tune.enabled=false"])
        noop = noop_component_seconds(work)
    result = {
        "benchmark": "demo_end_to_end",
        "command": "warmstart run (the demo: MiniLM pretrained vs scratch on the SST-2 sample, 3 epochs, "
        "each arm's learning rate tuned), and the same with --set tune.enabled=false",
        "machine": describe(),
        **tuned,
        "untuned": untuned,
        "tuning_seconds_ratio": round(tuned["command_seconds"] / untuned["command_seconds"], 2),
        "noop_component_seconds": noop,
        "orchestration_overhead_per_component_seconds": statistics.median(noop),
        "targets": "command_seconds <= 120 with a decisive verdict; orchestration overhead < 2 s per component",
    }
    write_result(RESULTS, result)


if __name__ == "__main__":
    main()
