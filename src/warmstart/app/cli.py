"""The `warmstart` command: run the pipeline locally, or compile it for Kubeflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from warmstart.errors import ConfigError, WarmstartError

app = typer.Typer(
    help="Fine-tune a pretrained model, train the same architecture from scratch, and register the "
    "fine-tuned model only if pretraining measurably helped.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# In a pipe or a pod's log, lines stay whole instead of wrapping at 80 columns.
console = Console(soft_wrap=not sys.stdout.isatty())
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config (sections data, model, train, gate, registry)."),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set train.epochs=2 (repeatable)."),
]


def _fail(err: WarmstartError, code: int = 2) -> None:
    errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _print_summary(summary: dict) -> None:
    """The run's outcome on the console: the verdict and numbers, the search, the floor, the curves,
    the champion, what was registered, and where the log and the report are."""
    if summary["verdict"] == "skipped":
        console.print(f"warmstart: {summary['skipped']['status']}", highlight=False)
        console.print(
            f"wall time: {summary['wall_seconds']:.0f} s; full log: {summary['log']}", highlight=False
        )
        return

    _print_verdict(summary)
    _print_search(summary)
    _print_curves(summary)
    _print_outcome(summary)
    console.print(f"wall time: {summary['wall_seconds']:.0f} s; full log: {summary['log']}", highlight=False)
    if summary.get("report"):
        console.print(f"report: {summary['report']} (open it with: warmstart report)", highlight=False)


def _print_verdict(summary: dict) -> None:
    """Both arms' metrics, the gain with its interval, and each seed's gain."""
    table = Table(title=f"warmstart: {summary['verdict']} transfer", title_justify="left")
    table.add_column("")
    for metric in ("accuracy", "macro_f1"):
        table.add_column(metric, justify="right")
    seeds = summary["seeds"]
    several = seeds["count"] > 1
    for arm in ("pretrained", "scratch"):
        label = f"{arm} (seed {seeds['chosen']})" if several else arm
        table.add_row(label, *(f"{summary[arm][m]:.4f}" for m in ("accuracy", "macro_f1")))
    console.print(table)
    gain = summary["gain"]
    console.print(
        f"gain ({summary['metric']}{', mean over ' + str(seeds['count']) + ' seeds' if several else ''}): "
        f"{gain['estimate']:+.4f}  {gain['confidence']:.0%} CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]  "
        f"on {summary['test_rows']} test examples; McNemar p = {summary['mcnemar_p']:.3g}"
        f"{' (seed ' + str(seeds['chosen']) + ')' if several else ''}",
        highlight=False,
    )
    if several:
        per_seed = ", ".join(f"seed {seed} {value:+.4f}" for seed, value in seeds["gains"].items())
        console.print(
            f"gain per seed: {per_seed}; the model to register is seed {seeds['chosen']}'s ({seeds['chosen_by']})",
            highlight=False,
        )


def _print_search(summary: dict) -> None:
    """The pre-screen's ranking, the chosen learning rates with any edge warnings, and the floor."""
    if summary.get("screening"):
        ranking = ", ".join(
            f"{entry['source']} {entry['logme']:.3f}"
            + (" (chosen)" if entry["source"] == summary["screening"]["chosen"] else "")
            for entry in summary["screening"]["ranking"]
        )
        console.print(f"pre-screen, LogME on frozen features (higher is better): {ranking}", highlight=False)
    tuning = summary.get("tuning")
    if tuning and tuning["enabled"]:
        chosen = "; ".join(
            f"{arm} {', '.join(f'{rate:g}' for rate in info['chosen'].values())} of "
            f"[{', '.join(f'{rate:g}' for rate in info['grid'])}]"
            for arm, info in tuning["arms"].items()
        )
        cost = tuning["cost"]
        ratio = f"; {cost['ratio']:.2f}× the steps of untuned runs" if cost["ratio"] else ""
        console.print(f"tuned learning rates (on validation): {chosen}{ratio}", highlight=False)
        for warning in tuning["warnings"]:
            console.print(f"[yellow]warning[/]: {warning}", highlight=False)
    floor = summary.get("baselines")
    if floor:
        console.print(
            f"floor ({floor['by']}): {floor['value']:.4f}; scratch {'cleared' if floor['learned'] else 'did not clear'} it",
            highlight=False,
        )


def _print_curves(summary: dict) -> None:
    """The transfer tests on the learning curves, the data efficiency and where scratch caught up."""
    from warmstart.gate.report_text import efficiency_sentence, match_sentence

    labels = {"start": "start (linear probe)", "slope": "area under curve", "asymptote": "asymptote"}
    curves = "; ".join(
        f"{labels[name] if 'method' in test or name != 'start' else 'start (step 0)'} "
        f"{test['pretrained']:.3f} vs {test['scratch']:.3f} ({test['finding']})"
        for name, test in summary["tests"].items()
        if name in labels
    )
    console.print(f"pretrained vs scratch: {curves}", highlight=False)
    efficiency = summary.get("data_efficiency")
    for point in (efficiency or {}).get("points", []):
        console.print(efficiency_sentence(point), highlight=False)
    console.print(match_sentence(summary["tests"]["match"]), highlight=False)


def _print_outcome(summary: dict) -> None:
    """The comparison with the champion, the deciding reason and what was registered."""
    champion = summary["champion"]
    if champion and champion["comparable"]:
        versus = champion["gain"]
        console.print(
            f"vs champion version {champion['version']}: {champion['challenger']:.4f} vs {champion['champion']:.4f}, "
            f"gain {versus['estimate']:+.4f} {versus['confidence']:.0%} CI [{versus['ci_low']:+.4f}, "
            f"{versus['ci_high']:+.4f}]",
            highlight=False,
        )
    elif champion:
        console.print(f"champion version {champion['version']}: {champion['reason']}", highlight=False)
    console.print(f"reason ({summary['decided_by']} check decided): {summary['reason']}", highlight=False)
    if summary["registered"]:
        reg = summary["registered"]
        how = "registered" if reg["new"] else "already registered (same model and data)"
        champion = ", champion" if reg["champion"] else ""
        console.print(
            f"[green]{how}[/] {reg['name']} version {reg['version']}{champion} → {reg['uri']}",
            highlight=False,
        )
    else:
        console.print("[yellow]not registered[/]: the gate did not pass", highlight=False)
    if summary.get("deployed"):
        console.print(f"deploy: {summary['deployed']['summary']}", highlight=False)


@app.command()
def run(
    config: ConfigOption = None,
    set_: SetOption = None,
    workdir: Annotated[Path, typer.Option(help="Where runs, artifacts and the default registry go.")] = Path(
        "warmstart-work"
    ),
    summary: Annotated[
        Path | None, typer.Option(help="Write the summary JSON here (default: WORKDIR/summary.json).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show kfp.local's full log.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Train even when the data, the pretrained source and the training settings are those "
            "of the registry's champion (such a run is otherwise skipped).",
        ),
    ] = False,
) -> None:
    """Run the whole pipeline on this machine through kfp.local. With no config: the SST-2 demo."""
    import signal

    from warmstart.app.local_run import RunInterrupted, run_local, write_summary
    from warmstart.config import load_config
    from warmstart.stage import INTERRUPT_EXIT, Interrupted, raise_interrupted

    signal.signal(signal.SIGTERM, raise_interrupted)  # until the run's tasks start, when it stops them
    try:
        cfg = load_config(config, set_)
        result = run_local(cfg, workdir, verbose, force)
    except RunInterrupted as err:
        _fail(err, code=INTERRUPT_EXIT[err.signum])
    except WarmstartError as err:
        _fail(err, code=2 if isinstance(err, ConfigError) else 1)
    except (KeyboardInterrupt, Interrupted) as err:
        signum = signal.SIGTERM if isinstance(err, Interrupted) else signal.SIGINT
        _fail(
            WarmstartError("interrupted before any task started; nothing was registered"),
            INTERRUPT_EXIT[signum],
        )
    write_summary(result, summary or workdir / "summary.json")
    _print_summary(result)
    console.print(f"summary: {summary or workdir / 'summary.json'}", highlight=False)


@app.command()
def report(
    path: Annotated[
        Path,
        typer.Argument(help="A report.html, a gate output directory, or a work directory (its latest run)."),
    ] = Path("warmstart-work"),
) -> None:
    """Open a gate report in the web browser (or print where it is when there is none)."""
    import webbrowser

    from warmstart.gate.report import find_report

    try:
        found = find_report(path)
    except WarmstartError as err:
        _fail(err, code=1)
    opened = webbrowser.open(found.resolve().as_uri())
    console.print(f"{'opened' if opened else 'no browser here; the report is'} {found}", highlight=False)


@app.command()
def serve(
    registry: Annotated[
        str | None, typer.Option(help="Registry root (a directory or s3://BUCKET/PREFIX) to serve from.")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name (the URL's NAME; default: the version's own).")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Version to serve (default: the champion).")] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(help="A registered version's directory instead of --registry (KServe: /mnt/models)."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8080,
    batch_size: Annotated[int, typer.Option(help="Rows per forward pass.")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to share its forward pass.")
    ] = 5.0,
) -> None:
    """Serve a registered version with KServe's model server (v1 and v2 REST), text, images or audio."""
    import tempfile

    from warmstart.serve.model import check_version_dir, fetch_version
    from warmstart.serve.server import serve as run_server

    if (registry is None) == (model_dir is None):
        _fail(ConfigError("pass --registry with --name, or --model-dir (one of the two)"))
    with tempfile.TemporaryDirectory(prefix="warmstart-serve-") as scratch:
        try:
            if registry is not None:
                if not name:
                    _fail(ConfigError("--registry needs --name, the registered model to serve"))
                model_dir = fetch_version(registry, name, version, Path(scratch))
            metadata = check_version_dir(model_dir)
            run_server(
                name or metadata.get("name", "model"),
                model_dir,
                host=host,
                port=port,
                batch_size=batch_size,
                max_batch_rows=max(batch_size * 2, 1),
                max_wait_ms=max_wait_ms,
            )
        except WarmstartError as err:
            _fail(err, 1)


@app.command("compile")
def compile_(
    config: ConfigOption = None,
    set_: SetOption = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Pipeline YAML to write.")] = Path(
        "warmstart-pipeline.yaml"
    ),
    image: Annotated[
        str | None, typer.Option(help="Container image of every task (default: the release image).")
    ] = None,
) -> None:
    """Write the pipeline YAML to upload to Kubeflow Pipelines; the config becomes its default parameters."""
    from warmstart.components import DEFAULT_IMAGE
    from warmstart.config import check_for_cluster, load_config
    from warmstart.pipelines import compile_pipeline

    try:
        cfg = load_config(config, set_)
        check_for_cluster(cfg)
    except WarmstartError as err:
        _fail(err)
    path = compile_pipeline(cfg, output, image or DEFAULT_IMAGE)
    console.print(f"wrote {path} (image {image or DEFAULT_IMAGE})", highlight=False)


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        envvar="KF_PIPELINES_ENDPOINT",
        help="Kubeflow Pipelines API, e.g. http://localhost:8888 after `kubectl port-forward -n kubeflow "
        "svc/ml-pipeline 8888`, or the Kubeflow dashboard's URL + /pipeline. Auth: KF_PIPELINES_TOKEN (a bearer "
        "token), else KF_PIPELINES_SA_TOKEN_PATH (a service-account token file), else none.",
    ),
]
NamespaceOption = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Kubeflow profile namespace (multi-user Kubeflow).")
]
ExperimentOption = Annotated[
    str, typer.Option("--experiment", help="KFP experiment the runs belong to (created when missing).")
]
ImageOption = Annotated[
    str | None, typer.Option(help="Container image of every task (default: the release image).")
]
PipelineNameOption = Annotated[str, typer.Option("--pipeline", help="Name of the pipeline in KFP.")]
CaCertOption = Annotated[
    Path | None, typer.Option("--ca-cert", help="CA bundle for an https host with a private CA.")
]


def _connect(config, set_, host, namespace, ca_cert):
    """The config (checked for a cluster) and the backend."""
    from warmstart.app.submit import Kubeflow
    from warmstart.config import check_for_cluster, load_config

    try:
        cfg = load_config(config, set_)
        check_for_cluster(cfg)
    except WarmstartError as err:
        _fail(err)
    try:
        return cfg, Kubeflow(host, namespace, str(ca_cert) if ca_cert else None)
    except WarmstartError as err:
        _fail(err, 1)


@app.command()
def submit(
    host: HostOption = "",
    namespace: NamespaceOption = None,
    experiment: ExperimentOption = "warmstart",
    config: ConfigOption = None,
    set_: SetOption = None,
    image: ImageOption = None,
    pipeline: PipelineNameOption = "warmstart-transfer",
    run_name: Annotated[
        str | None, typer.Option(help="Run name (default: the pipeline and the time).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Train even when nothing changed since the champion.")
    ] = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Upload the pipeline to Kubeflow Pipelines (a new version when it changed) and start a run."""
    from datetime import datetime, timezone

    from warmstart.components import DEFAULT_IMAGE

    cfg, kubeflow = _connect(config, set_, host, namespace, ca_cert)
    name = run_name or f"{pipeline} {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}"
    try:
        uploaded = kubeflow.upload(cfg, image or DEFAULT_IMAGE, pipeline)
        started = kubeflow.run(cfg, uploaded, kubeflow.experiment(experiment), name, force)
    except WarmstartError as err:
        _fail(err, 1)
    console.print(
        f"pipeline {pipeline}, version {uploaded['version']}{' (new)' if uploaded['new'] else ''}",
        highlight=False,
    )
    console.print(
        f"started run {started['run_id']} in experiment {experiment}: {started['url']}", highlight=False
    )


@app.command()
def schedule(
    cron: Annotated[
        str,
        typer.Option(
            "--cron",
            help="When to run, in KFP's 6-field cron: second minute hour day-of-month month day-of-week "
            "(robfig/cron, in the time zone of KFP's scheduled-workflow controller: CRON_SCHEDULE_TIMEZONE, UTC "
            "by default). '0 0 3 * * *' is 03:00 every day, '0 30 2 * * 1' 02:30 every Monday, '0 0 */6 * * *' "
            "every 6 hours; @daily and '@every 12h' work too. A 5-field crontab line is refused with its "
            "6-field form.",
        ),
    ],
    host: HostOption = "",
    namespace: NamespaceOption = None,
    experiment: ExperimentOption = "warmstart",
    config: ConfigOption = None,
    set_: SetOption = None,
    image: ImageOption = None,
    pipeline: PipelineNameOption = "warmstart-transfer",
    name: Annotated[str, typer.Option("--name", help="Name of the recurring run.")] = "warmstart-retraining",
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace the experiment's recurring run of the same name.")
    ] = False,
    ca_cert: CaCertOption = None,
) -> None:
    """Create a recurring run: one run at a time, no catch-up of missed runs. Each run trains only when
    the data, the pretrained source or the training settings changed since the champion."""
    from warmstart.app.submit import check_cron
    from warmstart.components import DEFAULT_IMAGE

    try:
        check_cron(cron)
    except WarmstartError as err:
        _fail(err)
    cfg, kubeflow = _connect(config, set_, host, namespace, ca_cert)
    try:
        uploaded = kubeflow.upload(cfg, image or DEFAULT_IMAGE, pipeline)
        created = kubeflow.schedule(cfg, uploaded, kubeflow.experiment(experiment), name, cron, replace)
    except WarmstartError as err:
        _fail(err, 1)
    replaced = f", replacing {', '.join(created['replaced'])}" if created["replaced"] else ""
    console.print(
        f"scheduled '{name}' ({cron}, one run at a time, no catch-up) on pipeline {pipeline} version "
        f"{uploaded['version']}{replaced}: {created['url']}",
        highlight=False,
    )


@app.command()
def runs(
    host: HostOption = "",
    namespace: NamespaceOption = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="Only this experiment's runs (default: every run).")
    ] = "warmstart",
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many of the newest runs.")] = 20,
    as_json: JsonOption = False,
    ca_cert: CaCertOption = None,
) -> None:
    """The newest runs on Kubeflow Pipelines with what each came to: registered, did not pass, skipped
    because nothing changed, failed (at which task), or running."""
    from warmstart.app.submit import Kubeflow

    try:
        found = Kubeflow(host, namespace, str(ca_cert) if ca_cert else None).runs(experiment or None, limit)
    except WarmstartError as err:
        _fail(err, 1)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title=f"runs on {host}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("created (UTC)", "name", "state", "outcome", "run id"):
        table.add_column(column)
    for run in found:
        created = (run["created"] or "")[:16].replace("T", " ")
        table.add_row(created, run["name"], run["state"], run["outcome"], run["run_id"])
    (console if console.is_terminal else Console(width=200)).print(table)


@app.command("config")
def show_config(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The reference page (docs/config.md) instead of YAML.")
    ] = False,
) -> None:
    """Print every config key with its default and what it does (a starting point for your own file)."""
    from warmstart.config import config_reference, describe_fields

    typer.echo(config_reference() if markdown else describe_fields(), nl=False)


registry_app = typer.Typer(help="Inspect a registry and move its champion alias.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
UriOption = Annotated[str, typer.Option("--uri", help="Registry root: a directory or s3://BUCKET/PREFIX.")]


def _open_registry(uri: str):
    from warmstart.registry import Registry

    try:
        return Registry(uri)
    except WarmstartError as err:
        _fail(err)


@registry_app.command("list")
def registry_list(
    uri: UriOption,
    name: Annotated[str | None, typer.Option(help="Only this model (default: every model).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Versions with their key metrics; the champion is marked."""
    registry = _open_registry(uri)
    try:
        rows = []
        for model in [name] if name else registry.names():
            champion = registry.alias(model, "champion")
            for version in registry.versions(model):
                meta = registry.metadata(model, version)
                gate = meta["gate"]
                rows.append(
                    {
                        "name": model,
                        "version": version,
                        "champion": version == champion,
                        "created": meta["created"],
                        "metric": gate["metric"],
                        "value": meta["metrics"]["pretrained"][gate["metric"]],
                        "gain": gate["gain"],
                        "data_fingerprint": meta["lineage"]["data_fingerprint"],
                    }
                )
    except WarmstartError as err:
        _fail(err, 1)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"registry {uri}", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("name", "version", "", "created (UTC)", "test metric", "gain vs scratch [CI]"):
        table.add_column(column)
    for row in rows:
        gain = row["gain"]
        table.add_row(
            row["name"],
            str(row["version"]),
            "champion" if row["champion"] else "",
            row["created"][:16].replace("T", " "),
            f"{row['metric']} {row['value']:.3f}",
            f"{gain['estimate']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}]",
        )
    # A pipe or a log gets whole lines; a terminal wraps to its width.
    (console if console.is_terminal else Console(width=160)).print(table)


@registry_app.command("show")
def registry_show(
    uri: UriOption,
    name: Annotated[str, typer.Option(help="Model name.")],
    version: Annotated[int | None, typer.Option(help="Version (default: the champion).")] = None,
    as_json: JsonOption = False,
) -> None:
    """One version's model card (or its metadata as JSON)."""
    registry = _open_registry(uri)
    try:
        version = version or registry.alias(name, "champion")
        if version is None:
            raise WarmstartError(f"{name} has no champion in {uri}; pass --version")
        metadata = registry.metadata(name, version)
        card = registry.store.read(f"{name}/versions/{version}/model_card.md")
    except WarmstartError as err:
        _fail(err, 1)
    text = card[0].decode()
    if text.startswith("---\n"):  # the Hub's YAML metadata; the person reading wants the card itself
        text = text.split("\n---\n", 1)[-1].lstrip("\n")
    typer.echo(json.dumps(metadata, indent=2) if as_json else text)


@registry_app.command("promote")
def registry_promote(
    uri: UriOption,
    name: Annotated[str, typer.Option(help="Model name.")],
    version: Annotated[int, typer.Option(help="The version to make champion.")],
) -> None:
    """Make a version the champion (compare-and-swap on the alias)."""
    registry = _open_registry(uri)
    try:
        registry.promote(name, version)
    except WarmstartError as err:
        _fail(err, 1)
    console.print(f"{name}: champion is now version {version}", highlight=False)


@registry_app.command("rollback")
def registry_rollback(uri: UriOption, name: Annotated[str, typer.Option(help="Model name.")]) -> None:
    """Move the champion back to the newest version older than the current champion."""
    registry = _open_registry(uri)
    try:
        version = registry.rollback(name)
    except WarmstartError as err:
        _fail(err, 1)
    console.print(f"{name}: champion rolled back to version {version}", highlight=False)


def main() -> None:
    app()
