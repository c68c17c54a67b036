"""A local webhook receiver over real HTTP: the other end of ``EDGEMATCH_REPORTER=webhook``.

Standard library only (``ThreadingHTTPServer`` in a daemon thread). It checks each
delivery's ``X-Edgematch-Signature`` against the shared secret (401 when it is wrong),
answers 500 to the first ``fail_first`` good deliveries (to exercise retries), counts a
report as delivered once per ``Idempotency-Key`` as a real receiver should, and records
every request. For the tests and for trying the reporter by hand; never used in
production. Report bodies are kept in memory and never logged.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgematch.downstream.reporters import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signature_ok


@dataclass(frozen=True)
class Delivery:
    """One request the receiver saw, and what it answered (HTTP status)."""

    idempotency_key: str | None
    signature_ok: bool
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """``with WebhookReceiver(secret, fail_first=1) as hook:`` serves on ``hook.url``."""

    def __init__(self, secret: str, *, fail_first: int = 0, path: str = "/reports") -> None:
        self.secret = secret
        self.path = path
        self._fail_left = fail_first
        self._lock = threading.Lock()
        self._requests: list[Delivery] = []
        self._accepted: dict[str, Delivery] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    @property
    def requests(self) -> list[Delivery]:
        """Every request, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def delivered(self) -> dict[str, Delivery]:
        """Accepted reports by idempotency key: a retry of a delivered report adds none."""
        with self._lock:
            return dict(self._accepted)

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _receive(self, path: str, headers: Any, body: bytes) -> int:
        key = headers.get(IDEMPOTENCY_HEADER)
        good = signature_ok(body, headers.get(SIGNATURE_HEADER), self.secret)
        with self._lock:
            if path != self.path:
                status = 404
            elif not good:
                status = 401
            elif key in self._accepted:
                status = 200  # a repeat of a delivered report: acknowledged, not counted
            elif self._fail_left > 0:
                self._fail_left -= 1
                status = 500
            else:
                status = 200
            delivery = Delivery(key, good, status, body)
            self._requests.append(delivery)
            if status == 200 and key and key not in self._accepted:
                self._accepted[key] = delivery
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._receive(self.path, self.headers, body)
                reply = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # bodies are reports: nothing is printed

        return Handler
