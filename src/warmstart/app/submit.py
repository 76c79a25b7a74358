"""Run the pipeline on a Kubeflow Pipelines backend: upload it, start a run, schedule it, list runs.

Everything goes through `kfp.Client` (the KFP v2beta1 REST API). Authentication follows the kfp
client's own options, first match wins:

1. `KF_PIPELINES_TOKEN`: a bearer token (an OIDC id token, or `kubectl create token SA`);
2. `KF_PIPELINES_SA_TOKEN_PATH`, or the projected token at
   /var/run/secrets/kubeflow/pipelines/token inside a pod: a service-account token file, reread
   whenever it is refreshed;
3. nothing: a port-forward to the KFP API (`kubectl port-forward -n kubeflow svc/ml-pipeline 8888`).

Tokens are sent as an `Authorization: Bearer` header and never printed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from warmstart.config import Config
from warmstart.errors import WarmstartError

TOKEN_ENV = "KF_PIPELINES_TOKEN"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_DEFAULT_PATH = "/var/run/secrets/kubeflow/pipelines/token"
SA_NAMESPACE_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"  # kfp.Client reads it in a pod
# KFP's cron (robfig/cron with seconds): second minute hour day-of-month month day-of-week.
CRON_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")
CRON_FIELD = re.compile(
    r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*$"
)
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class KubeflowError(WarmstartError):
    """The KFP backend could not be reached, refused the request or answered with an error."""


def check_cron(expression: str) -> str:
    """The expression if KFP's 6-field cron can read it; otherwise an error saying how to write it."""
    expression = " ".join(expression.split())
    if expression in CRON_DESCRIPTORS or re.fullmatch(r"@every [0-9]+[smh]([0-9]+[smh])*", expression):
        return expression
    fields = expression.split(" ")
    if len(fields) == 5:
        raise KubeflowError(
            f"cron '{expression}' has 5 fields; KFP's cron has 6, seconds first "
            f"(second minute hour day-of-month month day-of-week): '0 {expression}' means the same"
        )
    if len(fields) != 6:
        raise KubeflowError(
            f"cron '{expression}' has {len(fields)} fields; KFP's cron has 6: "
            f"{' '.join(CRON_FIELDS)}, e.g. '0 0 3 * * *' for 03:00 every day"
        )
    for name, field in zip(CRON_FIELDS, fields, strict=True):
        if not CRON_FIELD.match(field):
            raise KubeflowError(f"cron '{expression}': the {name} field '{field}' is not a cron field")
    return expression


@contextlib.contextmanager
def _api_errors(host: str) -> Iterator[None]:
    """The backend's failures as one line each: what failed, where, and what to do."""
    import kfp_server_api
    import urllib3

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # kfp.Client prints "Run details: ..." lines
            yield
    except kfp_server_api.ApiException as err:
        detail = _message(err.body) or err.reason or ""
        if err.status in (401, 403):
            raise KubeflowError(
                f"Kubeflow Pipelines at {host} refused the request ({err.status} {err.reason}): {detail}; "
                f"set {TOKEN_ENV} to a bearer token or {SA_TOKEN_PATH_ENV} to a service-account token file, "
                f"and with multi-user Kubeflow pass --namespace with a profile you may use"
            ) from None
        raise KubeflowError(
            f"Kubeflow Pipelines at {host} answered {err.status} {err.reason}: {detail}"
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise _unreachable(host, err) from None


def _unreachable(host: str, err: Exception) -> KubeflowError:
    reason = getattr(err, "reason", None) or err
    return KubeflowError(
        f"cannot reach Kubeflow Pipelines at {host} ({type(reason).__name__}); check --host, e.g. "
        f"`kubectl port-forward -n kubeflow svc/ml-pipeline 8888` and --host http://localhost:8888"
    )


def _message(body: Any) -> str:
    try:
        return json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        return str(body)[:200]


def connect(host: str, namespace: str | None = None, ca_cert: str | None = None) -> Any:
    """A kfp.Client for `host`, authenticated as the module docstring says."""
    import kfp
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    if not host:
        raise KubeflowError(
            "no Kubeflow Pipelines host: pass --host URL (or set KF_PIPELINES_ENDPOINT), e.g. "
            "http://localhost:8888 after `kubectl port-forward -n kubeflow svc/ml-pipeline 8888`"
        )
    if not host.startswith(("http://", "https://")):
        raise KubeflowError(f"--host '{host}' needs a scheme: http://{host} or https://{host}")
    token = os.environ.get(TOKEN_ENV) or None
    token_path = os.environ.get(SA_TOKEN_PATH_ENV) or (
        SA_TOKEN_DEFAULT_PATH if Path(SA_TOKEN_DEFAULT_PATH).is_file() else ""
    )
    credentials = None
    if not token and token_path:
        if not Path(token_path).is_file():
            raise KubeflowError(f"{SA_TOKEN_PATH_ENV} names '{token_path}', which is not a file")
        credentials = ServiceAccountTokenVolumeCredentials(path=token_path)
    multi_user = _probe(
        host, token or (Path(token_path).read_text().strip() if token_path else None), ca_cert
    )
    if multi_user and not namespace and not Path(SA_NAMESPACE_PATH).is_file():
        raise KubeflowError(
            f"Kubeflow Pipelines at {host} is multi-user: pass --namespace with your profile's namespace"
        )
    with _api_errors(host), warnings.catch_warnings():
        # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later": said on every call.
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp.client")
        return kfp.Client(
            host=host,
            namespace=namespace or "kubeflow",
            existing_token=token,
            credentials=credentials,
            ssl_ca_cert=ca_cert,
        )


def _probe(host: str, token: str | None, ca_cert: str | None) -> bool:
    """One health check before kfp.Client (which retries a failing one for half a minute, printing
    tracebacks): the host answers, as a KFP API, and takes the credentials. Returns multi_user."""
    import urllib3

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    pool = urllib3.PoolManager(ca_certs=ca_cert) if ca_cert else urllib3.PoolManager()
    url = f"{host}/apis/v2beta1/healthz"
    try:
        response = pool.request("GET", url, headers=headers, timeout=15.0, retries=False, redirect=False)
    except urllib3.exceptions.HTTPError as err:
        raise _unreachable(host, err) from None
    if response.status in (401, 403) or 300 <= response.status < 400:
        # A redirect here is a login page in front of the API.
        raise KubeflowError(
            f"Kubeflow Pipelines at {host} refused the request ({response.status} {response.reason}); "
            f"set {TOKEN_ENV} to a bearer token or {SA_TOKEN_PATH_ENV} to a service-account token file"
        )
    if response.status != 200:
        raise KubeflowError(
            f"{url} answered {response.status} {response.reason}: is --host the KFP API? (the Kubeflow "
            f"dashboard's URL + /pipeline, or a port-forward to svc/ml-pipeline)"
        )
    try:
        return bool(json.loads(response.data).get("multi_user"))
    except (ValueError, AttributeError):
        raise KubeflowError(f"{url} did not answer JSON: is --host the KFP API?") from None


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


class Kubeflow:
    """One KFP backend, for warmstart's pipeline: upload it once, then versions, runs and schedules."""

    def __init__(self, host: str, namespace: str | None = None, ca_cert: str | None = None) -> None:
        self.host, self.namespace = host.rstrip("/"), namespace or None
        self.client = connect(self.host, self.namespace, ca_cert)

    def upload(self, cfg: Config, image: str, name: str) -> dict[str, str]:
        """Compile the pipeline and make it a version of pipeline `name` (created on first use).

        The version is named after the compiled YAML's sha256, so uploading the same pipeline twice
        reuses one version. Returns pipeline_id, version_id, version and whether it is new.
        """
        from warmstart.pipelines import compile_pipeline

        with tempfile.TemporaryDirectory(prefix="warmstart-") as scratch:
            package = compile_pipeline(cfg, Path(scratch) / "pipeline.yaml", image)
            digest = spec_digest(package)
            version_name = f"{name}-{digest[:12]}"
            with _api_errors(self.host):
                found = self.client.list_pipelines(
                    filter=_equals("display_name", name), namespace=self.namespace
                )
                pipelines = found.pipelines or []
                if not pipelines:
                    pipeline = self.client.upload_pipeline(
                        str(package), pipeline_name=name, description=_description(), namespace=self.namespace
                    )
                    pipeline_id = pipeline.pipeline_id
                else:
                    pipeline_id = pipelines[0].pipeline_id
                versions = self.client.list_pipeline_versions(
                    pipeline_id, filter=_equals("display_name", version_name)
                ).pipeline_versions
                if versions:
                    version_id, new = versions[0].pipeline_version_id, False
                else:
                    # Also on the first upload, whose default version is named after the pipeline:
                    # every run then names its version by content.
                    version = self.client.upload_pipeline_version(
                        str(package), version_name, pipeline_id=pipeline_id, description=_description()
                    )
                    version_id, new = version.pipeline_version_id, True
        return {"pipeline_id": pipeline_id, "version_id": version_id, "version": version_name, "new": new}

    def experiment(self, name: str) -> str:
        """The id of experiment `name`, created when missing."""
        with _api_errors(self.host):
            return self.client.create_experiment(name, namespace=self.namespace).experiment_id

    def run(
        self,
        cfg: Config,
        uploaded: dict[str, str],
        experiment_id: str,
        run_name: str,
        force: bool = False,
    ) -> dict[str, str]:
        """Start one run of the uploaded version; returns its id and the UI link."""
        with _api_errors(self.host):
            run = self.client.run_pipeline(
                experiment_id,
                run_name,
                params=_parameters(cfg, force),
                pipeline_id=uploaded["pipeline_id"],
                version_id=uploaded["version_id"],
                service_account=cfg.cluster.service_account or None,
            )
        return {"run_id": run.run_id, "url": f"{self.host}/#/runs/details/{run.run_id}"}

    def schedule(
        self,
        cfg: Config,
        uploaded: dict[str, str],
        experiment_id: str,
        name: str,
        cron: str,
        replace: bool = False,
    ) -> dict[str, Any]:
        """Create recurring run `name` (one run at a time, no catch-up); with `replace`, instead of the
        one of that name in this experiment."""
        cron = check_cron(cron)
        with _api_errors(self.host):
            existing = (
                self.client.list_recurring_runs(
                    experiment_id=experiment_id,
                    namespace=self.namespace,
                    filter=_equals("display_name", name),
                ).recurring_runs
                or []
            )
            if existing and not replace:
                raise KubeflowError(
                    f"experiment already has a recurring run named '{name}' ({existing[0].recurring_run_id}); "
                    f"pass --replace to replace it, or --name to add another"
                )
            for old in existing:
                self.client.delete_recurring_run(old.recurring_run_id)
            recurring = self.client.create_recurring_run(
                experiment_id,
                name,
                description=f"warmstart retraining on '{cron}'; skips when nothing changed since the champion",
                cron_expression=cron,
                max_concurrency=1,
                no_catchup=True,
                params=_parameters(cfg, False),
                pipeline_id=uploaded["pipeline_id"],
                version_id=uploaded["version_id"],
                enabled=True,
                service_account=cfg.cluster.service_account or None,
            )
        return {
            "recurring_run_id": recurring.recurring_run_id,
            "replaced": [old.recurring_run_id for old in existing],
            "url": f"{self.host}/#/recurringrun/details/{recurring.recurring_run_id}",
        }

    def runs(self, experiment: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest runs (of one experiment, or all), each with the outcome its tasks show."""
        with _api_errors(self.host):
            experiment_id = None
            if experiment:
                found = self.client.list_experiments(
                    filter=_equals("display_name", experiment), namespace=self.namespace
                ).experiments
                if not found:
                    raise KubeflowError(f"Kubeflow Pipelines at {self.host} has no experiment '{experiment}'")
                experiment_id = found[0].experiment_id
            listed = (
                self.client.list_runs(
                    page_size=limit,
                    sort_by="created_at desc",
                    experiment_id=experiment_id,
                    namespace=self.namespace,
                ).runs
                or []
            )
            runs = [run if run.run_details else self.client.get_run(run.run_id) for run in listed]
        return [
            {
                "run_id": run.run_id,
                "name": run.display_name,
                "created": run.created_at.isoformat() if run.created_at else None,
                "state": run.state,
                "outcome": outcome(run),
                "recurring_run_id": run.recurring_run_id or None,
                "url": f"{self.host}/#/runs/details/{run.run_id}",
            }
            for run in runs
        ]


def spec_digest(package: Path) -> str:
    """sha256 of the compiled pipeline's content: its YAML documents as canonical JSON (the header
    comment that the compiler writes lists the config's keys in no fixed order)."""
    import yaml

    documents = list(yaml.safe_load_all(package.read_text(encoding="utf-8")))
    return hashlib.sha256(json.dumps(documents, sort_keys=True).encode()).hexdigest()


def _description() -> str:
    from warmstart import __version__

    return f"warmstart {__version__}: transfer-learning gate, compiled {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


def _parameters(cfg: Config, force: bool) -> dict[str, Any]:
    """The run's parameters: the config (also the version's default) and force."""
    return {"config": cfg.as_pipeline_argument(), "force": force}


def outcome(run: Any) -> str:
    """What a run came to, read from its tasks' states (the KFP API does not return outputs)."""
    from warmstart.pipelines import SKIPPED_TASK

    tasks = (
        {task.display_name: task for task in (run.run_details.task_details or [])} if run.run_details else {}
    )
    state = run.state or "RUNTIME_STATE_UNSPECIFIED"

    def succeeded(name: str) -> bool:
        return name in tasks and tasks[name].state == "SUCCEEDED"

    if state == "FAILED":
        failed = sorted(
            (task for task in tasks.values() if task.state == "FAILED" and not task.child_tasks),
            key=lambda task: task.end_time or datetime.min.replace(tzinfo=timezone.utc),
        )
        where = f" at {failed[0].display_name}" if failed else ""
        message = run.error.message if run.error and run.error.message else ""
        return f"failed{where}" + (f": {message.splitlines()[0]}" if message else "")
    if state in ("PENDING", "RUNNING"):
        running = [
            task.display_name for task in tasks.values() if task.state == "RUNNING" and not task.child_tasks
        ]
        return "running" + (f": {', '.join(sorted(running))}" if running else "")
    if state == "SUCCEEDED":
        if succeeded(SKIPPED_TASK):
            return "skipped: nothing changed since the champion"
        if succeeded("register"):
            return "passed: registered"
        if succeeded("gate"):
            return "did not pass: nothing registered"
    return state.lower()
