"""The sandbox's HTTP: the PhotoDNA API (key, rate limit, faults, answers) and the admin API.

One :class:`SandboxHandler` per connection, HTTP/1.1 with keep-alive. Routes:
``POST {BASE_PATH}/<operation>`` (or at the root) for the API, ``/_sandbox/...`` and
``/healthz`` for the admin API, which needs no key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, cast
from urllib.parse import urlsplit

from devtools.sandbox.listener import SandboxHTTPServer
from devtools.sandbox.rules import (
    INVALID_PARAMETERS,
    RequestRefused,
    error_body,
    items_from_match_hash,
    items_from_multipart,
    match_response,
    new_request_id,
    new_tracking_id,
    rate_limited_body,
    report_response,
    request_status_response,
    unauthorized_body,
)
from devtools.sandbox.state import Gate

__all__ = ["BASE_PATH", "KEY_HEADER", "OPERATIONS", "SandboxHandler"]

BASE_PATH = "/photodna/v1.0"
OPERATIONS = ("MatchEdgeHash", "MatchHash", "Report")
KEY_HEADER = "Ocp-Apim-Subscription-Key"
# Five 924-byte hashes with their multipart framing take about 5 KiB; anything near this
# cap is a client bug, and refusing it early keeps a runaway client from eating memory.
MAX_BODY_BYTES = 1 << 20
# An idle keep-alive connection holds a thread; let it go after a while.
IDLE_TIMEOUT_S = 120.0

_OPERATION_BY_NAME = {name.lower(): name for name in OPERATIONS}


def _operation_for(path: str) -> str | None:
    """The operation a path names, under ``/photodna/v1.0`` or the root; None otherwise."""
    if path.startswith(BASE_PATH + "/"):
        rest = path[len(BASE_PATH) + 1 :]
    elif path.startswith("/"):
        rest = path[1:]
    else:
        return None
    # API Management matches operation paths case-insensitively.
    return _OPERATION_BY_NAME.get(rest.rstrip("/").lower())


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class SandboxHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests; the sandbox's state is on its server."""

    protocol_version = "HTTP/1.1"
    server_version = "edgematch-sandbox"
    sys_version = ""
    # Headers and body go out in separate writes; without TCP_NODELAY the body can wait
    # for the client's delayed ACK (~40 ms), which would distort every latency measured.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S

    _status: int | None = None
    _started: float = 0.0
    _counts_status: bool = False

    @property
    def _sandbox(self) -> SandboxHTTPServer:
        return cast(SandboxHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        self._sandbox.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._sandbox.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: http.server would log every request (with its query) to stderr."""

    # --- plumbing ------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self._status = status
        if self._counts_status:
            # Counted before the answer leaves: a client that has read it and asks for
            # /_sandbox/stats at once must find it counted.
            self._sandbox.state.record_status(status)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", headers)

    def _refuse_body(self, status: int, message: str) -> None:
        # The unread body would be taken for the next request: this connection is done.
        self.close_connection = True
        self._send_json(status, error_body(status, message))

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering (or losing) a request we cannot read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse_body(411, "Content-Length is required.")
            return None
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b""
        try:
            length = int(raw_length)
        except ValueError:
            length = -1
        if length < 0:
            self._refuse_body(400, "Invalid Content-Length.")
            return None
        if length > MAX_BODY_BYTES:
            self._refuse_body(413, "Request entity too large.")
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _log_request(self, path: str, outcome: str) -> None:
        if self._sandbox.verbose:
            elapsed_ms = (time.perf_counter() - self._started) * 1000
            self._sandbox.log(f"{self.command} {path} {outcome} {elapsed_ms:.1f}ms")

    # --- routing -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._started = time.perf_counter()
        self._status = None
        self._counts_status = False
        if self._read_body() is None:
            return
        path = urlsplit(self.path).path
        state = self._sandbox.state
        if path == "/healthz":
            self._send(200, b"ok", "text/plain; charset=utf-8")
        elif path == "/_sandbox/stats":
            self._send_json(200, state.stats())
        elif path == "/_sandbox/config":
            self._send_json(200, state.config.public())
        elif path == "/_sandbox/reports":
            self._send_json(200, {"reports": state.reports()})
        else:
            self._send_json(404, error_body(404, "Resource not found"))
        self._log_request(path, str(self._status))

    def do_POST(self) -> None:
        self._started = time.perf_counter()
        self._status = None
        self._counts_status = False
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path.startswith("/_sandbox/"):
            self._admin(path, body)
            self._log_request(path, str(self._status))
            return
        operation = _operation_for(path)
        if operation is None:
            self._send_json(404, error_body(404, "Resource not found"))
            self._log_request(path, str(self._status))
            return
        self._api(operation, body)
        outcome = "dropped" if self._status is None else str(self._status)
        self._log_request(path, outcome)

    # --- the API -------------------------------------------------------------------------

    def _api(self, operation: str, body: bytes) -> None:
        state = self._sandbox.state
        self._counts_status = True
        admission = state.admit(operation, self.headers.get(KEY_HEADER))
        if admission.gate is Gate.DROP:
            # No status line, no headers: the client sees the connection end mid-exchange.
            self.close_connection = True
            return
        if admission.delay_s > 0:
            state.stopping.wait(admission.delay_s)
        if admission.gate is Gate.UNAUTHORIZED:
            self._send_json(401, unauthorized_body())
        elif admission.gate is Gate.RATE_LIMITED:
            self._send_rate_limited(admission.retry_after)
        elif admission.gate in (Gate.FORCED, Gate.FAIL):
            self._send_failure(admission.status)
        else:
            self._send_json(200, self._operate(operation, body))

    def _send_rate_limited(self, retry_after: int) -> None:
        self._send_json(429, rate_limited_body(retry_after), [("Retry-After", str(retry_after))])

    def _send_failure(self, status: int) -> None:
        if status == 401:
            self._send_json(401, unauthorized_body())
        elif status == 429:
            self._send_rate_limited(1)
        else:
            message = f"{_status_phrase(status)} (injected by the sandbox)."
            self._send_json(status, error_body(status, message))

    def _operate(self, operation: str, body: bytes) -> dict[str, object]:
        state = self._sandbox.state
        tracking_id, request_id = new_tracking_id(), new_request_id()
        try:
            if operation == "Report":
                try:
                    payload: object = json.loads(body)
                except (ValueError, UnicodeDecodeError):
                    raise RequestRefused(INVALID_PARAMETERS) from None
                state.record_report(payload)
                return report_response(tracking_id=tracking_id, report_id=request_id)
            if operation == "MatchEdgeHash":
                items = items_from_multipart(body, self.headers.get("Content-Type"))
            else:
                items = items_from_match_hash(body)
        except RequestRefused as refusal:
            state.refused(refusal)
            return request_status_response(
                refusal.code, tracking_id=tracking_id, request_id=request_id
            )
        verdicts = state.judge(items)
        return match_response(verdicts, tracking_id=tracking_id, request_id=request_id)

    # --- admin ---------------------------------------------------------------------------

    def _admin(self, path: str, body: bytes) -> None:
        state = self._sandbox.state
        try:
            payload: object = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            self._send_json(400, {"error": "body is not JSON"})
            return
        if not isinstance(payload, dict):
            self._send_json(400, {"error": "body must be a JSON object"})
            return
        try:
            if path == "/_sandbox/faults":
                self._send_json(200, state.configure(payload))
            elif path == "/_sandbox/known":
                digests = payload.get("sha256")
                if not isinstance(digests, list) or not all(isinstance(d, str) for d in digests):
                    raise ValueError('expected {"sha256": ["<hex digest>", ...]}')
                total = state.add_known(digests)
                self._send_json(200, {"known_sha256_count": total})
            elif path == "/_sandbox/reset":
                state.reset()
                self._send_json(200, {"reset": True})
            else:
                self._send_json(404, error_body(404, "Resource not found"))
        except ValueError as exc:
            self._send_json(400, {"error": str(exc)})
