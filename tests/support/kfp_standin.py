"""A stand-in for the Kubeflow Pipelines API server (v2beta1 REST), for testing the client side.

It answers the calls `warmstart submit`, `schedule` and `runs` make through kfp.Client, keeps what
they create in memory, and checks every request against the API's own models from kfp-server-api:
each JSON body must deserialize into the named model with no unknown field and valid enum values,
each query parameter must be one the generated client sends for that route, and an uploaded
pipeline must load as a KFP pipeline. A request that fails a check is answered 400 and recorded in
`violations`, which the tests assert empty. Responses are the models serialized the way the API
client expects them, so kfp.Client's own deserialization runs on them too.

It does not schedule or execute anything: tests set a run's state and tasks with `finish`.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml
from kfp import components
from kfp_server_api import models

API = "/apis/v2beta1"
PRIMITIVES = {"str": str, "bool": bool, "int": int, "float": (int, float), "object": object}
# int64 fields are strings in the OpenAPI models; the server's JSON parser takes numbers too.
INT64 = {"max_concurrency", "interval_second"}
# Query parameters per route, as the generated kfp_server_api client sends them.
QUERIES = {
    ("GET", "pipelines"): {"namespace", "page_token", "page_size", "sort_by", "filter"},
    ("POST", "pipelines/upload"): {"name", "display_name", "description", "namespace"},
    ("POST", "pipelines/upload_version"): {"name", "display_name", "pipelineid", "description"},
    ("GET", "versions"): {"page_token", "page_size", "sort_by", "filter"},
    ("GET", "experiments"): {"page_token", "page_size", "sort_by", "filter", "namespace"},
    ("GET", "runs"): {"namespace", "experiment_id", "page_token", "page_size", "sort_by", "filter"},
    ("GET", "recurringruns"): {"page_token", "page_size", "sort_by", "namespace", "filter", "experiment_id"},
}
FILTER_KEYS = {"predicates"}
PREDICATE_KEYS = {
    "operation",
    "key",
    "string_value",
    "stringValue",
    "int_value",
    "long_value",
    "timestamp_value",
}


class Invalid(Exception):
    pass


def check_model(data: Any, type_name: str, where: str) -> None:
    """`data` (parsed JSON) is a valid `type_name` of kfp_server_api.models, recursively."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise Invalid(f"{where}: expected a list, got {type(data).__name__}")
        for i, item in enumerate(data):
            check_model(item, type_name[5:-1], f"{where}[{i}]")
        return
    if type_name.startswith("dict("):
        if not isinstance(data, dict):
            raise Invalid(f"{where}: expected an object, got {type(data).__name__}")
        value_type = type_name[5:-1].split(", ", 1)[1]
        for key, value in data.items():
            check_model(value, value_type, f"{where}.{key}")
        return
    if type_name == "datetime":
        try:
            datetime.fromisoformat(str(data).replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"{where}: '{data}' is not an RFC 3339 time") from None
        return
    if type_name in PRIMITIVES:
        expected = PRIMITIVES[type_name]
        if type_name == "str" and where.rsplit(".", 1)[-1] in INT64 and isinstance(data, int):
            return
        if expected is not object and (
            not isinstance(data, expected) or isinstance(data, bool) != (type_name == "bool")
        ):
            raise Invalid(f"{where}: expected {type_name}, got {json.dumps(data)}")
        return
    cls = getattr(models, type_name)
    if hasattr(cls, "allowable_values"):
        if data not in cls.allowable_values:
            raise Invalid(f"{where}: '{data}' is not one of {cls.allowable_values}")
        return
    if not isinstance(data, dict):
        raise Invalid(f"{where}: expected a {type_name} object, got {type(data).__name__}")
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    for key, value in data.items():
        if key not in fields:
            raise Invalid(f"{where}: {type_name} has no field '{key}' (fields: {', '.join(sorted(fields))})")
        if value is not None:
            check_model(value, cls.openapi_types[fields[key]], f"{where}.{key}")


def check_filter(raw: str) -> dict:
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise Invalid(f"filter is not JSON: {raw!r}") from None
    if set(parsed) - FILTER_KEYS:
        raise Invalid(f"filter has unknown keys {sorted(set(parsed) - FILTER_KEYS)}")
    for predicate in parsed.get("predicates", []):
        if set(predicate) - PREDICATE_KEYS:
            raise Invalid(f"filter predicate has unknown keys {sorted(set(predicate) - PREDICATE_KEYS)}")
        operation = predicate.get("operation")
        # proto3 JSON takes an enum by name or by number.
        if not (
            isinstance(operation, int)
            and 0 <= operation < len(models.V2beta1PredicateOperation.allowable_values)
        ):
            check_model(operation, "V2beta1PredicateOperation", "filter.operation")
    return parsed


def matches(item: Any, raw_filter: str | None) -> bool:
    if not raw_filter:
        return True
    for predicate in json.loads(raw_filter).get("predicates", []):
        value = predicate.get("string_value", predicate.get("stringValue"))
        if predicate["operation"] in ("EQUALS", 1) and getattr(item, predicate["key"]) != value:
            return False
    return True


def same_namespace(item: Any, query: dict) -> bool:
    """An empty namespace is no namespace (a single-user backend)."""
    return (item.namespace or None) == (query.get("namespace") or None)


class StandIn:
    """The server's state and checks; `url` is where kfp.Client should point."""

    def __init__(self, token: str | None = None, multi_user: bool = False) -> None:
        self.token, self.multi_user = token, multi_user
        self.violations: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.pipelines: dict[str, models.V2beta1Pipeline] = {}
        self.versions: dict[str, models.V2beta1PipelineVersion] = {}
        self.packages: dict[str, dict] = {}
        self.experiments: dict[str, models.V2beta1Experiment] = {}
        self.runs: dict[str, models.V2beta1Run] = {}
        self.recurring: dict[str, models.V2beta1RecurringRun] = {}
        self._serializer = kfp_server_api.ApiClient()
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                with standin._lock:
                    status, body = standin.handle(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _out(self, model: Any) -> Any:
        return self._serializer.sanitize_for_serialization(model)

    @staticmethod
    def _now() -> datetime:
        return datetime.now(timezone.utc)

    def finish(self, run_id: str, state: str, tasks: dict[str, str], error: str = "") -> None:
        """Give a run the state and task states (display name → state) a backend would report."""
        run = self.runs[run_id]
        run.state = state
        run.finished_at = self._now()
        if error:
            run.error = models.GoogleRpcStatus(code=2, message=error)
        run.run_details = models.V2beta1RunDetails(
            task_details=[
                models.V2beta1PipelineTaskDetail(
                    run_id=run_id, task_id=uuid.uuid4().hex, display_name=name, state=s
                )
                for name, s in tasks.items()
            ]
        )

    def handle(self, request: BaseHTTPRequestHandler) -> tuple[int, Any]:
        parsed = urlparse(request.path)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        record = {
            "method": request.command,
            "path": parsed.path,
            "query": query,
            "authorization": request.headers.get("Authorization"),
        }
        self.requests.append(record)
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"code": 16, "message": "Unauthenticated: no valid bearer token"}
        try:
            return self.route(request.command, parsed.path, query, raw, request.headers, record)
        except Invalid as err:
            self.violations.append(f"{request.command} {parsed.path}: {err}")
            return 400, {"code": 3, "message": str(err)}

    def _check_query(self, method: str, route: str, query: dict[str, str]) -> None:
        unknown = set(query) - QUERIES[(method, route)]
        if unknown:
            raise Invalid(f"unknown query parameters {sorted(unknown)}")
        if "filter" in query:
            check_filter(query["filter"])

    def _json(self, raw: bytes, model: str) -> dict:
        try:
            data = json.loads(raw)
        except ValueError:
            raise Invalid("the body is not JSON") from None
        check_model(data, model, model)
        return data

    def _upload(self, raw: bytes, headers: Any) -> dict:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + raw
        )
        files = [
            part
            for part in message.iter_parts()
            if part.get_param("name", header="content-disposition") == "uploadfile"
        ]
        if len(files) != 1:
            raise Invalid("expected one multipart field 'uploadfile'")
        text = files[0].get_content()
        text = text.decode() if isinstance(text, bytes) else text
        spec = next(yaml.safe_load_all(text))
        if "pipelineInfo" not in spec or "root" not in spec:
            raise Invalid("the uploaded file is not a compiled KFP pipeline")
        components.load_component_from_text(text)
        return spec

    def route(
        self, method: str, path: str, query: dict, raw: bytes, headers: Any, record: dict
    ) -> tuple[int, Any]:
        if not path.startswith(API):
            raise Invalid(f"not a v2beta1 path: {path}")
        route = path[len(API) + 1 :]
        if method == "GET" and route == "healthz":
            return 200, self._out(models.V2beta1GetHealthzResponse(multi_user=self.multi_user))
        if method == "GET" and route == "pipelines":
            self._check_query(method, route, query)
            found = [
                p
                for p in self.pipelines.values()
                if matches(p, query.get("filter")) and same_namespace(p, query)
            ]
            return 200, self._out(
                models.V2beta1ListPipelinesResponse(pipelines=found or None, total_size=len(found))
            )
        if method == "POST" and route == "pipelines/upload":
            self._check_query(method, route, query)
            spec = self._upload(raw, headers)
            name = query.get("name") or query.get("display_name")
            if any(p.display_name == name and same_namespace(p, query) for p in self.pipelines.values()):
                return 409, {"code": 6, "message": f"pipeline {name} already exists"}
            pipeline = models.V2beta1Pipeline(
                pipeline_id=uuid.uuid4().hex,
                display_name=name,
                description=query.get("description"),
                namespace=query.get("namespace"),
                created_at=self._now(),
            )
            self.pipelines[pipeline.pipeline_id] = pipeline
            self._add_version(pipeline.pipeline_id, name, spec, query.get("description"))
            record["pipeline"] = spec
            return 200, self._out(pipeline)
        if method == "POST" and route == "pipelines/upload_version":
            self._check_query(method, route, query)
            spec = self._upload(raw, headers)
            if query.get("pipelineid") not in self.pipelines:
                return 404, {"code": 5, "message": f"no pipeline {query.get('pipelineid')}"}
            record["pipeline"] = spec
            return 200, self._out(
                self._add_version(query["pipelineid"], query["name"], spec, query.get("description"))
            )
        versions = re.fullmatch(r"pipelines/([^/]+)/versions", route)
        if method == "GET" and versions:
            self._check_query(method, "versions", query)
            found = [
                v
                for v in self.versions.values()
                if v.pipeline_id == versions[1] and matches(v, query.get("filter"))
            ]
            return 200, self._out(
                models.V2beta1ListPipelineVersionsResponse(
                    pipeline_versions=found or None, total_size=len(found)
                )
            )
        if method == "GET" and route == "experiments":
            self._check_query(method, route, query)
            found = [
                e
                for e in self.experiments.values()
                if matches(e, query.get("filter")) and same_namespace(e, query)
            ]
            return 200, self._out(
                models.V2beta1ListExperimentsResponse(experiments=found or None, total_size=len(found))
            )
        if method == "POST" and route == "experiments":
            data = self._json(raw, "V2beta1Experiment")
            experiment = models.V2beta1Experiment(
                experiment_id=uuid.uuid4().hex,
                display_name=data["display_name"],
                description=data.get("description"),
                namespace=data.get("namespace"),
                created_at=self._now(),
                storage_state="AVAILABLE",
            )
            self.experiments[experiment.experiment_id] = experiment
            return 200, self._out(experiment)
        if method == "POST" and route == "runs":
            data = self._json(raw, "V2beta1Run")
            self._check_reference(data)
            run = models.V2beta1Run(
                run_id=uuid.uuid4().hex,
                experiment_id=data["experiment_id"],
                display_name=data["display_name"],
                pipeline_version_reference=models.V2beta1PipelineVersionReference(
                    **data["pipeline_version_reference"]
                ),
                runtime_config=models.V2beta1RuntimeConfig(**data.get("runtime_config", {})),
                service_account=data.get("service_account"),
                created_at=self._now(),
                state="PENDING",
            )
            record["body"] = data
            self.runs[run.run_id] = run
            return 200, self._out(run)
        if method == "GET" and route == "runs":
            self._check_query(method, route, query)
            found = [
                r
                for r in self.runs.values()
                if not query.get("experiment_id") or r.experiment_id == query["experiment_id"]
            ]
            if query.get("sort_by") == "created_at desc":
                found.sort(key=lambda r: r.created_at, reverse=True)
            found = found[: int(query.get("page_size", 10))]
            # The list omits task details, as the real server's list does; a get returns them.
            listed = [copy.copy(r) for r in found]
            for item in listed:
                item.run_details = None
            return 200, self._out(models.V2beta1ListRunsResponse(runs=listed or None, total_size=len(found)))
        run = re.fullmatch(r"runs/([^/:]+)", route)
        if method == "GET" and run:
            if run[1] not in self.runs:
                return 404, {"code": 5, "message": f"no run {run[1]}"}
            return 200, self._out(self.runs[run[1]])
        if method == "POST" and route == "recurringruns":
            data = self._json(raw, "V2beta1RecurringRun")
            self._check_reference(data)
            recurring = models.V2beta1RecurringRun(
                recurring_run_id=uuid.uuid4().hex,
                display_name=data["display_name"],
                experiment_id=data["experiment_id"],
                created_at=self._now(),
                mode=data.get("mode"),
                max_concurrency=str(data.get("max_concurrency")),
                no_catchup=data.get("no_catchup"),
            )
            record["body"] = data
            self.recurring[recurring.recurring_run_id] = recurring
            return 200, self._out(recurring)
        if method == "GET" and route == "recurringruns":
            self._check_query(method, route, query)
            found = [
                r
                for r in self.recurring.values()
                if (not query.get("experiment_id") or r.experiment_id == query["experiment_id"])
                and matches(r, query.get("filter"))
            ]
            return 200, self._out(
                models.V2beta1ListRecurringRunsResponse(recurring_runs=found or None, total_size=len(found))
            )
        recurring_id = re.fullmatch(r"recurringruns/([^/:]+)", route)
        if method == "DELETE" and recurring_id:
            if not self.recurring.pop(recurring_id[1], None):
                return 404, {"code": 5, "message": f"no recurring run {recurring_id[1]}"}
            return 200, {}
        raise Invalid(f"no such route: {method} {path}")

    def _check_reference(self, data: dict) -> None:
        reference = data.get("pipeline_version_reference") or {}
        version = self.versions.get(reference.get("pipeline_version_id"))
        if version is None or version.pipeline_id != reference.get("pipeline_id"):
            raise Invalid(f"pipeline_version_reference {reference} names no uploaded version")
        if data.get("experiment_id") not in self.experiments:
            raise Invalid(f"experiment_id {data.get('experiment_id')!r} names no experiment")
        declared = self.packages[version.pipeline_version_id]["root"]["inputDefinitions"]["parameters"]
        unknown = set((data.get("runtime_config") or {}).get("parameters") or {}) - set(declared)
        if unknown:
            raise Invalid(f"runtime_config.parameters {sorted(unknown)} are not parameters of the pipeline")

    def _add_version(self, pipeline_id: str, name: str, spec: dict, description: str | None) -> Any:
        version = models.V2beta1PipelineVersion(
            pipeline_id=pipeline_id,
            pipeline_version_id=uuid.uuid4().hex,
            display_name=name,
            description=description,
            created_at=self._now(),
        )
        self.versions[version.pipeline_version_id] = version
        self.packages[version.pipeline_version_id] = spec
        return version
