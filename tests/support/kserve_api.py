"""A stand-in for a Kubernetes API server with KServe: the InferenceService endpoints, over real HTTP.

The real `kubernetes` client talks to it. Every InferenceService sent is checked against KServe's and
Kubernetes' client models (an unknown field is a 422, as strict field validation would answer), a
replace must carry the resourceVersion it read (else 409), and `refuse` scripts a 403 or 409 for a verb.
With `execute`, a spec's predictor is run for real: its own command (`warmstart serve`) on loopback, on
the directory its STORAGE_URI names (where KServe's storage initializer would copy it to /mnt/models);
the service is Ready when the server is, and its traffic block names the latest revision's URL as
KServe's tag routing does. `serve_instead` makes the next revision serve another directory (a broken
rollout), and `never_ready` keeps every service not Ready.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.serving import serving

from warmstart import kube_models

PATH = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/?]+))?")


class KServeStandIn(ThreadingHTTPServer):
    def __init__(self, log_dir: Path, execute: bool = True, never_ready: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.log_dir, self.execute, self.never_ready = log_dir, execute, never_ready
        self.services: dict[tuple[str, str], dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.refuse: dict[str, int] = {}
        self.serve_instead: Path | None = None
        self.servers = contextlib.ExitStack()
        self.revisions = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.servers.close()

    def roll_out(self, service: dict, previous: dict | None) -> None:
        """What KServe would do with a new spec: a new revision, Ready once its predictor answers."""
        self.revisions += 1
        generation = (previous or {}).get("metadata", {}).get("generation", 0) + 1
        service["metadata"].update(generation=generation, resourceVersion=str(self.revisions))
        waiting = {
            "type": "Ready",
            "status": "False",
            "reason": "RevisionMissing",
            "message": f'Configuration "{service["metadata"]["name"]}-predictor" is waiting for a Revision to become ready.',
        }
        service["status"] = {"observedGeneration": generation - 1, "conditions": [waiting]}
        if self.never_ready or not self.execute:
            if not self.never_ready:
                service["status"] = _ready_status(generation, "http://unused.invalid", None)
            return
        container = service["spec"]["predictor"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        model_dir = str(self.serve_instead or env["STORAGE_URI"])
        self.serve_instead = None
        args = [model_dir if a == "/mnt/models" else a for a in container["args"]]
        args = [a for i, a in enumerate(args) if a != "--port" and (i == 0 or args[i - 1] != "--port")]
        url = self.servers.enter_context(
            serving(*args, log=self.log_dir / f"revision-{self.revisions}.log", ready_path="/v2/health/ready")
        )
        old_url = ((previous or {}).get("status") or {}).get("address", {}).get("url")
        canary = service["spec"]["predictor"].get("canaryTrafficPercent")
        service["status"] = _ready_status(
            generation, url if canary is None else old_url, url if canary is not None else None
        )
        service["status"]["components"]["predictor"]["traffic"][-1]["url"] = url


def _ready_status(generation: int, address: str, latest: str | None) -> dict:
    traffic = [
        {
            "revisionName": f"rev-{generation}",
            "latestRevision": True,
            "percent": 100,
            "tag": "latest",
            "url": latest or address,
        }
    ]
    return {
        "observedGeneration": generation,
        "conditions": [{"type": "Ready", "status": "True"}],
        "address": {"url": address},
        "components": {"predictor": {"traffic": traffic}},
    }


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, name: str = "") -> None:
        details = {"name": name, "group": "serving.kserve.io", "kind": "inferenceservices"}
        self._answer(
            code,
            {
                "kind": "Status",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
                "details": details,
            },
        )

    def _route(self, verb: str):
        match = PATH.match(self.path)
        if not match:
            self.send_response(404)
            self.end_headers()
            return None
        self.server.requests.append((verb, match.group(2) or ""))
        if verb in self.server.refuse:
            code = self.server.refuse.pop(verb)
            self._status(
                code,
                {403: "Forbidden", 409: "Conflict"}.get(code, "Error"),
                f"scripted {code}",
                match.group(2) or "",
            )
            return None
        return match.group(1), match.group(2)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def do_GET(self) -> None:  # noqa: N802
        route = self._route("get")
        if route:
            found = self.server.services.get(route)
            if found is None:
                self._status(404, "NotFound", f'inferenceservices "{route[1]}" not found', route[1])
            else:
                self._answer(200, found)

    def do_POST(self) -> None:  # noqa: N802
        route = self._route("create")
        if not route:
            return
        body = self._body()
        problems = kube_models.problems(body, "V1beta1InferenceService")
        if problems:
            return self._status(422, "Invalid", "; ".join(problems))
        key = (route[0], body["metadata"]["name"])
        with self.server.lock:
            if key in self.server.services:
                return self._status(409, "AlreadyExists", "exists", key[1])
            self.server.roll_out(body, None)
            self.server.services[key] = body
        self._answer(201, body)

    def do_PUT(self) -> None:  # noqa: N802
        route = self._route("update")
        if not route:
            return
        body = self._body()
        sent = {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "resourceVersion"}}
        problems = kube_models.problems(sent, "V1beta1InferenceService")
        if problems:
            return self._status(422, "Invalid", "; ".join(problems))
        with self.server.lock:
            current = self.server.services.get(route)
            if current is None:
                return self._status(404, "NotFound", "not found", route[1])
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", "the object has been modified", route[1])
            self.server.roll_out(body, current)
            self.server.services[route] = body
        self._answer(200, body)

    def do_DELETE(self) -> None:  # noqa: N802
        route = self._route("delete")
        if route:
            self.server.services.pop(route, None)
            self._answer(200, {"kind": "Status", "status": "Success"})
