"""A webhook receiver on loopback that keeps what it is sent (a stand-in for Slack's incoming webhooks)."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver(ThreadingHTTPServer):
    """Answers POST /hooks/TOKEN with `status`; `messages` holds each JSON body received there."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status, self.messages, self.token = status, [], f"T0-{secrets.token_hex(12)}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The secret URL (a Slack webhook URL is its own credential)."""
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/{self.token}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == f"/hooks/{self.server.token}":
            self.server.messages.append(json.loads(body))
            self.send_response(self.server.status)
        else:
            self.send_response(404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass
