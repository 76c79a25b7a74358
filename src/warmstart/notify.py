"""notify: one message per run to a webhook, from the run's exit handler, whatever the run did.

The message is Slack-compatible (`text`, and `blocks` with the key facts as fields) and carries the same
facts as structured JSON under `warmstart`, for any other receiver: passed (the verdict, the gain and
its interval, the version registered and deployed), not passed (the verdict and why), skipped (nothing
changed, and which version already holds this data), or failed (the task and its error line). The
facts come from the run's record (warmstart.run_record), since an exit handler sees only the run's
final state.

The URL is a secret (a Slack webhook URL is its own credential): it is read from the environment or a
config value at send time, and neither this module nor the pipeline's logs ever print it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from warmstart.config import Config
from warmstart.errors import WarmstartError
from warmstart.run_record import run_record

# The notify task's environment variable holding the URL: `warmstart run` sets it, a cluster takes it
# from notify.webhook_secret.
WEBHOOK_ENV = "WARMSTART_WEBHOOK_URL"


class NotifyError(WarmstartError):
    """The message could not be delivered (the reason never includes the URL)."""


def webhook_url(cfg: Config) -> str | None:
    """The URL to post to, or None when none is configured or its variable is unset."""
    url = cfg.notify.webhook_url
    if url.startswith("env:"):
        return os.environ.get(url.removeprefix("env:")) or None
    if url:
        return url
    return os.environ.get(WEBHOOK_ENV) or None if cfg.notify.webhook_secret else None


def _gain(gate: dict[str, Any]) -> str:
    gain = gate["gain"]
    return (
        f"{gate['metric']} {gain['estimate']:+.4f} over scratch "
        f"[{gain.get('confidence', 0.95):.0%} CI {gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]"
    )


def message(
    cfg: Config, pipeline_job: str, state: str, error: str, records: dict[str, Any]
) -> dict[str, Any]:
    """The JSON body for a run that ended in `state` (PipelineTaskFinalStatus.state) with these records."""
    name = cfg.registry.name or "model"
    facts: dict[str, Any] = {"model": name, "run": pipeline_job, "state": state}
    failures = sorted((v for k, v in records.items() if k.startswith("failed-")), key=lambda f: f["time"])
    ingest, gate, registered, deployed = (records.get(k) for k in ("ingest", "gate", "register", "deploy"))
    if state != "SUCCEEDED":
        failure = failures[0] if failures else None
        facts["status"] = "failed"
        facts["failed"] = (
            {k: failure[k] for k in ("stage", "message", "kind")}
            if failure
            else {"stage": None, "message": error or f"the run ended {state}", "kind": None}
        )
        where = f" in {failure['stage']}" if failure else ""
        text = f"failed{where}: {facts['failed']['message']}"
    elif ingest and not ingest.get("train", True):
        facts.update(status="skipped", skipped=ingest.get("status"), champion=ingest.get("champion"))
        text = f"skipped: {ingest.get('status')}"
    elif gate:
        facts.update(
            verdict=gate["verdict"],
            reason=gate["reason"],
            metric=gate["metric"],
            gain={k: gate["gain"][k] for k in ("estimate", "ci_low", "ci_high")},
        )
        if gate["passed"] and registered:
            facts.update(status="passed", registered=registered)
            champion = "now champion" if registered.get("champion") else "not made champion"
            text = f"passed: {gate['verdict']} transfer, {_gain(gate)}; registered version {registered['version']} ({champion})"
        else:
            facts["status"] = "not passed"
            text = (
                f"not passed (verdict {gate['verdict']}): {gate['reason']}; {_gain(gate)}; nothing registered"
            )
    else:
        facts["status"] = "unknown"
        text = "ended without a verdict or a skip on record"
    if deployed:
        facts["deployed"] = deployed
        text += f"; {deployed['summary']}"
    text = f"warmstart {name}: {text}"
    fields = [f"*Status*\n{facts['status']}", f"*Run*\n{pipeline_job or 'unnamed'}"]
    if "verdict" in facts:
        fields += [f"*Verdict*\n{facts['verdict']}", f"*Gain*\n{_gain(gate)}"]
    if "registered" in facts:
        fields.append(f"*Registered*\nversion {registered['version']}")
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
        ],
        "warmstart": facts,
    }


def post(url: str, body: dict[str, Any], timeout: float, attempts: int = 3) -> None:
    """POST `body` as JSON; raise NotifyError (naming the receiver's answer, never the URL)."""
    data = json.dumps(body).encode()
    last = ""
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return
        except urllib.error.HTTPError as err:
            last = f"the webhook answered {err.code} {err.reason}"
            if err.code < 500 and err.code != 429:
                break
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            last = f"the webhook could not be reached ({type(reason).__name__})"
        if attempt + 1 < attempts:
            time.sleep(2**attempt)
    raise NotifyError(f"the run's notification was not delivered: {last}")


def notify(cfg: Config, pipeline_job: str, state: str, error: str = "") -> dict[str, Any] | None:
    """Post the run's message (None when no webhook is configured); the run's record is then removed."""
    url = webhook_url(cfg)
    record = run_record(cfg, pipeline_job)
    records = record.read() if record else {}
    body = message(cfg, pipeline_job, state, error, records)
    if url is None:
        source = cfg.notify.webhook_url or f"secret {cfg.notify.webhook_secret}"
        raise NotifyError(
            f"no webhook URL: notify is configured ({source}) but the URL is not set in this task"
        )
    try:
        post(url, body, cfg.notify.timeout_seconds)
    finally:
        if record:
            record.clear()
    return body
