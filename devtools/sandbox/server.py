"""A local stand-in for PhotoDNA Cloud Service, over real HTTP, for the demo, tests and benchmarks.

Standard library only: ``http.server.ThreadingHTTPServer`` speaking HTTP/1.1 with
keep-alive (the worker uses a pooled httpx client), one thread per connection.

Reproduced from the real service, as public material documents it:

* ``POST {base}/MatchEdgeHash`` (``multipart/form-data``, up to 5 parts, each part's form
  name echoed as ``ContentId``) and ``POST {base}/MatchHash`` (a JSON array of up to 5
  ``{"DataRepresentation": "Hash", "Value": base64}``), where ``{base}`` is
  ``/photodna/v1.0`` or the server root. Answers are HTTP 200 with ``TrackingId``,
  ``MatchResults`` in request order and ``CMRequestId``; a match carries one ``MatchFlags``
  entry (``MatchId``, ``Source``, ``Violations``).
* Per-item status 3000 OK, 3002 for a malformed hash (wrong size or empty), 3004 when
  injected; a top-level 3209 "Request Size Exceeded" for more than 5 items, a top-level
  3002 for a body with no items or that cannot be read.
* ``POST {base}/Report``: any JSON body is recorded in memory (never logged) and
  acknowledged with a ``ReportId``.
* Azure API Management in front: the ``Ocp-Apim-Subscription-Key`` header is checked
  first (401 with APIM's body), then a sliding-window rate limit of ``rate`` requests per
  second (429 with ``Retry-After``); refused requests do not use up the window.

Beyond the service, for tests: a hash is a match when the SHA-256 of its bytes is in a
known set (``--known FILE``), and seeded fault injection (5xx answers, slow answers, 3004
items, items answered twice with opposite verdicts, connections closed without an answer, a
forced status for every request). Faults,
the key, the rate and the known set can also be changed at runtime through a small JSON
admin API under ``/_sandbox/`` that needs no key, and counters are served there
(``GET /_sandbox/stats``), including the busiest one-second window of accepted requests,
computed exactly from their arrival times.

Neither the subscription key nor hash bytes nor report bodies are ever logged.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import math
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from devtools.sandbox.ratelimit import SlidingWindowLimiter, max_in_window
from devtools.sandbox.rules import (
    DEFAULT_HASH_SIZE,
    INVALID_PARAMETERS,
    MAX_ITEMS_PER_REQUEST,
    OK,
    UNHANDLED_ERROR,
    Item,
    RequestRefused,
    Verdict,
    classify_hash,
    error_body,
    items_from_match_hash,
    items_from_multipart,
    match_response,
    new_request_id,
    new_tracking_id,
    normalize_digest,
    parse_known_lines,
    rate_limited_body,
    report_response,
    request_status_response,
    unauthorized_body,
)

__all__ = ["BASE_PATH", "Sandbox", "SandboxConfig", "SandboxState", "build_parser", "main"]

BASE_PATH = "/photodna/v1.0"
OPERATIONS = ("MatchEdgeHash", "MatchHash", "Report")
KEY_HEADER = "Ocp-Apim-Subscription-Key"
KEY_ENV = "EDGEMATCH_SANDBOX_KEY"
DEFAULT_KEY = "sandbox-key"

# Five 924-byte hashes with their multipart framing take about 5 KiB; anything near this
# cap is a client bug, and refusing it early keeps a runaway client from eating memory.
MAX_BODY_BYTES = 1 << 20
MAX_REPORTS = 1000
# An idle keep-alive connection holds a thread; let it go after a while.
IDLE_TIMEOUT_S = 120.0
# How often serve_forever checks for shutdown: bounds stop() latency at near-zero idle CPU.
POLL_INTERVAL_S = 0.1

_OPERATION_BY_NAME = {name.lower(): name for name in OPERATIONS}
_FRACTIONS = ("fail_rate", "slow_rate", "item_3004_rate", "drop_rate", "conflict_rate")
_FAIL_STATUSES = (500, 503)


def _is_number(value: object) -> bool:
    # bool is an int subclass, but ``true`` is never a meaningful rate.
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class SandboxConfig:
    """Everything the sandbox answers by. Validated on creation and on every change."""

    key: str = field(default=DEFAULT_KEY, repr=False)
    #: Accepted requests per second; 0 or negative means unlimited.
    rate: float = 10.0
    #: The only hash length answered 3000; any other length is 3002.
    hash_size: int = DEFAULT_HASH_SIZE
    #: Lowercase hex SHA-256 digests of hash files that are matches.
    known_sha256: set[str] = field(default_factory=set)
    #: Fraction of accepted requests answered 500 or 503.
    fail_rate: float = 0.0
    #: Fraction of accepted requests answered only after ``slow_s`` seconds.
    slow_rate: float = 0.0
    slow_s: float = 0.0
    #: Fraction of items answered with per-item status 3004.
    item_3004_rate: float = 0.0
    #: Fraction of accepted requests whose connection is closed with no answer at all.
    drop_rate: float = 0.0
    #: Fraction of 3000 items answered twice under one ContentId, the opposite verdict
    #: first: a clean before a known hit's match, a made-up match before a clean. No
    #: client can tell which is true; it must not take either for the item's verdict.
    conflict_rate: float = 0.0
    #: When set, every request with a good key gets this HTTP status until cleared.
    force_status: int | None = None
    #: The next ``throttle_next`` requests with a good key are answered 429 with
    #: ``Retry-After: throttle_retry_after_s`` (API Management's body), whatever the rate:
    #: a quota that asks for a long wait, once or a few times.
    throttle_next: int = 0
    throttle_retry_after_s: int = 1
    #: Seed of the fault-injection random generator, for reproducible runs.
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key must be a non-empty string")
        if not _is_number(self.rate) or math.isnan(self.rate):
            raise ValueError("rate must be a number")
        if isinstance(self.hash_size, bool) or not isinstance(self.hash_size, int):
            raise ValueError("hash_size must be an integer")
        if self.hash_size < 1:
            raise ValueError("hash_size must be at least 1")
        for name in _FRACTIONS:
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not _is_number(self.slow_s) or not 0.0 <= self.slow_s < math.inf:
            raise ValueError("slow_s must be a finite number of seconds, 0 or more")
        if self.force_status is not None and (
            isinstance(self.force_status, bool)
            or not isinstance(self.force_status, int)
            or not 400 <= self.force_status <= 599
        ):
            raise ValueError("force_status must be null or an HTTP status from 400 to 599")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")
        for name in ("throttle_next", "throttle_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more")
        # A fresh, normalized set: a replaced config never shares its set with the original.
        self.known_sha256 = {normalize_digest(digest) for digest in self.known_sha256}

    def public(self) -> dict[str, object]:
        """The config as JSON for the admin API: the key is left out, known digests counted."""
        return {
            "rate": self.rate,
            "hash_size": self.hash_size,
            "known_sha256_count": len(self.known_sha256),
            "fail_rate": self.fail_rate,
            "slow_rate": self.slow_rate,
            "slow_s": self.slow_s,
            "item_3004_rate": self.item_3004_rate,
            "drop_rate": self.drop_rate,
            "conflict_rate": self.conflict_rate,
            "force_status": self.force_status,
            "throttle_next": self.throttle_next,
            "throttle_retry_after_s": self.throttle_retry_after_s,
            "seed": self.seed,
        }


#: Fields ``POST /_sandbox/faults`` may change (the known set has its own endpoint).
CHANGEABLE_FIELDS = frozenset(
    {
        "key",
        "rate",
        "hash_size",
        "fail_rate",
        "slow_rate",
        "slow_s",
        "item_3004_rate",
        "drop_rate",
        "conflict_rate",
        "force_status",
        "throttle_next",
        "throttle_retry_after_s",
        "seed",
    }
)


class Gate(Enum):
    """What happens to an API request before its body is looked at."""

    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    DROP = "drop"
    FORCED = "forced"
    FAIL = "fail"
    PROCEED = "proceed"


@dataclass(frozen=True)
class Admission:
    """The gate's decision for one request, with what the handler needs to carry it out."""

    gate: Gate
    status: int = 200
    retry_after: int = 0
    delay_s: float = 0.0


def _new_histogram() -> Counter[str]:
    # The usual batch sizes are always listed, so a benchmark report has stable columns.
    return Counter({str(size): 0 for size in range(1, MAX_ITEMS_PER_REQUEST + 1)})


@dataclass
class _Counters:
    requests_total: int = 0
    dropped_total: int = 0
    by_http_status: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    items_total: int = 0
    items_by_code: Counter[str] = field(default_factory=Counter)
    top_level_by_code: Counter[str] = field(default_factory=Counter)
    matches_total: int = 0
    conflicts_total: int = 0
    files_per_request: Counter[str] = field(default_factory=_new_histogram)
    reports_received: int = 0
    # Arrival times of accepted requests (monotonic seconds), sorted since they are
    # appended under the lock; 8 bytes each, so a day at 10 requests/s is under 7 MB.
    accepted: array[float] = field(default_factory=lambda: array("d"))


def _numeric_keys(counter: Counter[str]) -> dict[str, int]:
    return {key: counter[key] for key in sorted(counter, key=lambda k: (len(k), k))}


class SandboxState:
    """Config, counters, rate limiter and fault dice of one sandbox, behind one lock.

    Every decision that reads the config or draws from the seeded generator happens under
    the lock, so concurrent requests see a consistent config and a sequential client sees
    a reproducible sequence of faults.
    """

    def __init__(
        self, config: SandboxConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._config = replace(config)
        self._clock = clock
        # Fault dice, not cryptography: a seeded generator makes chaos runs reproducible.
        self._rng = random.Random(config.seed)  # noqa: S311
        self._limiter = SlidingWindowLimiter(config.rate, clock=clock)
        self._counters = _Counters()
        self._reports: deque[object] = deque(maxlen=MAX_REPORTS)
        #: Set when the server stops, so injected slow answers stop waiting.
        self.stopping = threading.Event()

    # --- decisions -----------------------------------------------------------------------

    def _chance(self, probability: float) -> bool:
        # No draw at 0 or 1: the sequence for the other faults stays the same whether or
        # not an always-on or always-off fault is configured.
        if probability <= 0.0:
            return False
        if probability >= 1.0:
            return True
        return self._rng.random() < probability

    def _refusal(self, config: SandboxConfig, now: float) -> int | None:
        """The Retry-After of a 429 for this request (a throttle set at runtime first, then
        the rate limit), or None when it is admitted. Call with the lock held."""
        if config.throttle_next > 0:
            config.throttle_next -= 1
            return config.throttle_retry_after_s
        decision = self._limiter.try_acquire(now)
        return None if decision.admitted else decision.retry_after

    def admit(self, operation: str, key: str | None) -> Admission:
        """Count one API request and decide its fate: key, then rate limit, then faults."""
        with self._lock:
            counters, config = self._counters, self._config
            counters.requests_total += 1
            counters.by_operation[operation] += 1
            if key is None or not hmac.compare_digest(key.encode(), config.key.encode()):
                return Admission(Gate.UNAUTHORIZED)
            now = self._clock()
            retry_after = self._refusal(config, now)
            if retry_after is not None:
                return Admission(Gate.RATE_LIMITED, retry_after=retry_after)
            counters.accepted.append(now)
            if self._chance(config.drop_rate):
                counters.dropped_total += 1
                return Admission(Gate.DROP)
            delay_s = config.slow_s if self._chance(config.slow_rate) else 0.0
            if config.force_status is not None:
                return Admission(Gate.FORCED, status=config.force_status, delay_s=delay_s)
            if self._chance(config.fail_rate):
                status = self._rng.choice(_FAIL_STATUSES)
                return Admission(Gate.FAIL, status=status, delay_s=delay_s)
            return Admission(Gate.PROCEED, delay_s=delay_s)

    def judge(self, items: list[Item]) -> list[Verdict]:
        """Answer each item of an accepted request, and count them."""
        with self._lock:
            counters, config = self._counters, self._config
            counters.files_per_request[str(len(items))] += 1
            verdicts: list[Verdict] = []
            for item in items:
                if self._chance(config.item_3004_rate):
                    verdict = Verdict(item.content_id, UNHANDLED_ERROR)
                else:
                    verdict = replace(
                        classify_hash(
                            item.data, hash_size=config.hash_size, known=config.known_sha256
                        ),
                        content_id=item.content_id,
                    )
                if verdict.code == OK and self._chance(config.conflict_rate):
                    verdict = replace(verdict, conflict=True)
                    counters.conflicts_total += 1
                verdicts.append(verdict)
                counters.items_total += 1
                counters.items_by_code[str(verdict.code)] += 1
                if verdict.is_match:
                    counters.matches_total += 1
            return verdicts

    def refused(self, refusal: RequestRefused) -> None:
        """Count a request answered with one top-level status."""
        with self._lock:
            self._counters.top_level_by_code[str(refusal.code)] += 1
            if refusal.item_count is not None:
                self._counters.files_per_request[str(refusal.item_count)] += 1

    def record_report(self, payload: object) -> None:
        with self._lock:
            self._reports.append(payload)
            self._counters.reports_received += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self._counters.by_http_status[str(status)] += 1

    # --- admin ---------------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        """A copy of the current config (changing it has no effect; use ``configure``)."""
        with self._lock:
            return replace(self._config)

    def configure(self, changes: Mapping[str, object]) -> dict[str, object]:
        """Apply a subset of CHANGEABLE_FIELDS atomically; raise ValueError, changing nothing,
        if any field is unknown or invalid. Returns the public view of the new config."""
        unknown = sorted(set(changes) - CHANGEABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        values: dict[str, Any] = dict(changes)
        # JSON has one number type; let ``"rate": 5`` mean 5.0.
        for name in ("rate", "slow_s", *_FRACTIONS):
            if name in values and _is_number(values[name]):
                values[name] = float(values[name])
        with self._lock:
            updated = replace(self._config, **values)
            if updated.rate != self._config.rate:
                self._limiter.set_rate(updated.rate)
            if "seed" in values:
                self._rng.seed(updated.seed)
            self._config = updated
            return updated.public()

    def add_known(self, digests: Iterable[str]) -> int:
        """Add known digests (validated first, all or none); returns the new total."""
        normalized = {normalize_digest(digest) for digest in digests}
        with self._lock:
            self._config.known_sha256.update(normalized)
            return len(self._config.known_sha256)

    def reset(self) -> None:
        """Clear counters and recorded reports. The config and the rate window stay."""
        with self._lock:
            self._counters = _Counters()
            self._reports.clear()

    def reports(self) -> list[object]:
        with self._lock:
            return list(self._reports)

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters, as JSON-ready values."""
        with self._lock:
            counters = self._counters
            accepted = array("d", counters.accepted)
            snapshot: dict[str, object] = {
                "requests_total": counters.requests_total,
                "by_http_status": _numeric_keys(counters.by_http_status),
                "by_operation": dict(sorted(counters.by_operation.items())),
                "dropped_total": counters.dropped_total,
                "items_total": counters.items_total,
                "items_by_code": _numeric_keys(counters.items_by_code),
                "top_level_by_code": _numeric_keys(counters.top_level_by_code),
                "matches_total": counters.matches_total,
                "conflicts_total": counters.conflicts_total,
                "files_per_request": _numeric_keys(counters.files_per_request),
                "reports_received": counters.reports_received,
            }
        # The sweep is linear in the number of accepted requests: done outside the lock so
        # a stats call during a long benchmark never delays the requests being measured.
        snapshot["max_accepted_in_any_1s_window"] = max_in_window(accepted, 1.0)
        snapshot["accepted_timestamps"] = len(accepted)
        return snapshot


# --- HTTP ------------------------------------------------------------------------------


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, *, verbose: bool) -> None:
        self.state = state
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._log_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds on
        # hosts without working reverse DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection, so stop() is prompt."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Already closed by the client: nothing left to wake.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer are routine (timeouts, chaos tests); only real bugs
        # deserve a traceback on stderr.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def log(self, line: str) -> None:
        with self._log_lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


class _Handler(BaseHTTPRequestHandler):
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
    def _sandbox(self) -> _Server:
        return cast(_Server, self.server)

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


# --- the public object -------------------------------------------------------------------


class Sandbox:
    """One sandbox server. Binds on creation (so ``url`` is known), serves after ``start``.

    ``with Sandbox(SandboxConfig()) as sandbox:`` serves in a daemon thread for the block.
    """

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = SandboxState(config, clock=clock)
        self._server = _Server((host, port), self.state, verbose=verbose)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def root_url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:54321`` (admin paths hang off it)."""
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321/photodna/v1.0``."""
        return self.root_url + BASE_PATH

    def start(self) -> Sandbox:
        """Serve in a daemon thread; returns self. Calling it twice is harmless."""
        if self._stopped:
            raise RuntimeError("a stopped sandbox cannot be restarted")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL_S},
                name="edgematch-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the listening socket. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.close_connections()
        self._server.server_close()

    def stats(self) -> dict[str, object]:
        return self.state.stats()

    def configure(self, **changes: object) -> dict[str, object]:
        """Change faults, key or rate at runtime, as ``POST /_sandbox/faults`` does."""
        return self.state.configure(changes)

    def add_known(self, digests: Iterable[str]) -> int:
        return self.state.add_known(digests)

    def reset(self) -> None:
        self.state.reset()

    def reports(self) -> list[object]:
        return self.state.reports()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --- command line ------------------------------------------------------------------------

_EPILOG = f"""\
API (key in the {KEY_HEADER} header), under {BASE_PATH} or the root:
  POST MatchEdgeHash   multipart/form-data, 1-5 parts; ContentId = each part's name
  POST MatchHash       JSON [{{"DataRepresentation": "Hash", "Value": "<base64>"}}, ...]
  POST Report          any JSON body, kept in memory (last {MAX_REPORTS})

Admin (JSON, no key):
  GET  /healthz              "ok"
  GET  /_sandbox/stats       counters, incl. max_accepted_in_any_1s_window
  GET  /_sandbox/config      current config (without the key)
  GET  /_sandbox/reports     recorded Report bodies
  POST /_sandbox/faults      any of: key rate hash_size fail_rate slow_rate slow_s
                             item_3004_rate drop_rate conflict_rate force_status
                             (null clears) throttle_next throttle_retry_after_s seed
  POST /_sandbox/known       {{"sha256": ["<hex digest>", ...]}}
  POST /_sandbox/reset       clear counters and reports (config is kept)

On start, prints one line, "sandbox listening on <base url>", then serves until
SIGTERM or SIGINT and exits 0.
"""


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.sandbox",
        description=(
            "A local stand-in for PhotoDNA Cloud Service (MatchEdgeHash, MatchHash, Report)\n"
            "with Azure API Management's key check and rate limit, known-hash matches and\n"
            "seeded fault injection. For demos, tests and benchmarks; never production."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    net = parser.add_argument_group("listening")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    net.add_argument(
        "--port", type=int, default=0, help="port to bind; 0 picks a free one (default: 0)"
    )
    api = parser.add_argument_group("API behaviour")
    api.add_argument(
        "--key",
        default=None,
        help=f"the accepted subscription key (default: ${KEY_ENV}, else {DEFAULT_KEY!r})",
    )
    api.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="accepted requests per second, sliding 1 s window; 0 = unlimited (default: 10)",
    )
    api.add_argument(
        "--known",
        metavar="FILE",
        action="append",
        default=[],
        help="file of hex SHA-256 digests of hash files that match, one per line, "
        "'#' comments allowed; may be repeated",
    )
    api.add_argument(
        "--hash-size",
        type=int,
        default=DEFAULT_HASH_SIZE,
        help="hash length in bytes; other lengths get status 3002 (default: %(default)s)",
    )
    faults = parser.add_argument_group("fault injection (all can be changed at runtime)")
    faults.add_argument(
        "--fail-rate", type=_fraction, default=0.0, help="fraction of requests answered 500/503"
    )
    faults.add_argument(
        "--slow-rate", type=_fraction, default=0.0, help="fraction of requests delayed by --slow-s"
    )
    faults.add_argument(
        "--slow-s", type=_seconds, default=0.0, help="delay of a slow request, in seconds"
    )
    faults.add_argument(
        "--item-3004-rate",
        type=_fraction,
        default=0.0,
        help="fraction of items answered with per-item status 3004",
    )
    faults.add_argument(
        "--drop-rate",
        type=_fraction,
        default=0.0,
        help="fraction of requests whose connection is closed without an answer",
    )
    faults.add_argument(
        "--conflict-rate",
        type=_fraction,
        default=0.0,
        help="fraction of items answered twice under one ContentId, the opposite verdict "
        "first (a clean before a match, a made-up match before a clean)",
    )
    faults.add_argument(
        "--force-status",
        type=int,
        default=None,
        metavar="STATUS",
        help="answer every request with this HTTP status (400-599) until cleared at runtime",
    )
    faults.add_argument(
        "--throttle-next",
        type=int,
        default=0,
        metavar="N",
        help="answer the next N requests 429 with Retry-After --throttle-retry-after",
    )
    faults.add_argument(
        "--throttle-retry-after",
        type=int,
        default=1,
        metavar="S",
        help="the Retry-After of --throttle-next's 429s, in seconds (default: 1)",
    )
    faults.add_argument(
        "--seed", type=int, default=0, help="seed of the fault generator (default: 0)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log one line per request to stderr (method, path, status, duration; no keys)",
    )
    return parser


def _config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SandboxConfig:
    known: set[str] = set()
    for path in args.known:
        try:
            with open(path, encoding="utf-8") as lines:
                known |= parse_known_lines(lines)
        except OSError as exc:
            parser.error(f"--known {path}: {exc.strerror or exc}")
        except ValueError as exc:
            parser.error(f"--known {path}: {exc}")
    key = args.key if args.key is not None else os.environ.get(KEY_ENV) or DEFAULT_KEY
    try:
        return SandboxConfig(
            key=key,
            rate=args.rate,
            hash_size=args.hash_size,
            known_sha256=known,
            fail_rate=args.fail_rate,
            slow_rate=args.slow_rate,
            slow_s=args.slow_s,
            item_3004_rate=args.item_3004_rate,
            drop_rate=args.drop_rate,
            conflict_rate=args.conflict_rate,
            force_status=args.force_status,
            throttle_next=args.throttle_next,
            throttle_retry_after_s=args.throttle_retry_after,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str] | None = None) -> int:
    """Run a sandbox until SIGTERM or SIGINT. Exit status 0, 1 if it cannot bind, 2 on usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = _config_from_args(parser, args)
    try:
        sandbox = Sandbox(config, args.host, args.port, verbose=args.verbose)
    except OSError as exc:
        print(f"sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    # signal.signal only works in the main thread; elsewhere the caller owns shutdown.
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        with sandbox:
            print(f"sandbox listening on {sandbox.url}", flush=True)
            stop.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
