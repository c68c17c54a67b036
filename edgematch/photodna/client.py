"""Client for PhotoDNA Cloud Service: ``MatchEdgeHash`` (multipart) and ``MatchHash`` (JSON).

:class:`PhotoDNAClient` owns one pooled :class:`httpx.Client` and is the single boundary
where httpx exceptions are translated into :mod:`edgematch.errors`. What goes over the
wire is built and read by pure functions, tested without I/O: request bodies and answer
parsing in :mod:`edgematch.photodna.wire`, the status table in
:mod:`edgematch.photodna.status`, ``Retry-After`` in :mod:`edgematch.photodna.retryafter`,
the values in :mod:`edgematch.photodna.outcomes`. This module re-exports them, so a caller
of the client finds everything it handles in one place.

What :meth:`PhotoDNAClient.match` raises (whole-request outcomes; per-item outcomes are
*returned* in :attr:`ItemOutcome.error`, never raised):

- :class:`~edgematch.errors.RateLimited` - HTTP 429; ``retry_after_s`` in seconds.
- :class:`~edgematch.errors.CredentialError` - HTTP 401 or 403.
- :class:`~edgematch.errors.ServerError` - HTTP 5xx, 1xx/3xx, an unreadable or
  wrongly shaped 2xx body, a body larger than :data:`MAX_RESPONSE_BYTES`, or a
  top-level Status the table calls transient (3004).
- :class:`~edgematch.errors.TransportError` - timeouts, refused, reset or dropped
  connections, and HTTP 408.
- :class:`~edgematch.errors.RequestRejected` - a top-level Status that is not OK
  and not transient (3209 "Request Size Exceeded" even under HTTP 200), or any other 4xx.
- :class:`ValueError` - our own bug, refused before anything is sent: 0 items, more
  than ``max_batch``, duplicate or unsafe content ids, empty hash bytes.

Units: every duration is in seconds (``float``); sizes are in bytes. The size of an edge
hash is configuration (``Settings.max_hash_bytes``), checked by the caller, not here.

Secrets: the subscription key lives in a :class:`~edgematch.config.settings.Secret` and in
the pooled client's default headers only. Text the server sends back is redacted of the
key, stripped of control characters and truncated before it reaches a message, so a key
echoed by a misbehaving proxy cannot reach a log either. Hash bytes are never logged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
import structlog

from edgematch import __version__
from edgematch.config.settings import OPERATIONS, Secret, Settings
from edgematch.errors import ServerError, TransportError
from edgematch.photodna.outcomes import BatchResponse, HashItem, ItemOutcome, MatchFlag
from edgematch.photodna.retryafter import (
    DEFAULT_RETRY_AFTER_S,
    RETRY_AFTER_CAP_S,
    parse_retry_after,
)
from edgematch.photodna.servertext import clean
from edgematch.photodna.status import STATUS_OK, STATUS_TABLE, StatusKind, classify_item_status
from edgematch.photodna.wire import (
    API_MAX_ITEMS,
    build_edge_request,
    build_hash_request,
    check_items,
    parse_response,
)

__all__ = [
    "API_MAX_ITEMS",
    "DEFAULT_RETRY_AFTER_S",
    "KEY_HEADER",
    "MAX_RESPONSE_BYTES",
    "RETRY_AFTER_CAP_S",
    "STATUS_OK",
    "STATUS_TABLE",
    "BatchResponse",
    "HashItem",
    "ItemOutcome",
    "MatchFlag",
    "PhotoDNAClient",
    "StatusKind",
    "build_edge_request",
    "build_hash_request",
    "classify_item_status",
    "parse_response",
    "parse_retry_after",
]

_log = structlog.get_logger(__name__)

#: Header carrying the subscription key (Azure API Management).
KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"
#: Largest answer body read, in bytes; real answers for 5 items are a few KiB.
MAX_RESPONSE_BYTES: Final = 1 << 20


class PhotoDNAClient:
    """One pooled HTTP client for the PhotoDNA API; keep one per process.

    Thread-safe as httpx.Client is. Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        key: Secret,
        *,
        operation: str = "MatchEdgeHash",
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        verify: bool = True,
        max_batch: int = API_MAX_ITEMS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Raises ValueError for an unknown operation, a batch size outside 1..5, a
        non-positive timeout or a base URL that is not http(s); timeouts in seconds."""
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}, got {operation!r}")
        if not 1 <= max_batch <= API_MAX_ITEMS:
            raise ValueError(f"max_batch must be 1 to {API_MAX_ITEMS}, got {max_batch}")
        for name, value in (("timeout_s", timeout_s), ("connect_timeout_s", connect_timeout_s)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        base = base_url.rstrip("/")
        url = httpx.URL(f"{base}/{operation}")
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if not key:
            raise ValueError("the subscription key is empty")
        self._base_url = base
        self._url = url
        self._operation = operation
        self._max_batch = max_batch
        self._key = key
        self._http = httpx.Client(
            # The one place the key leaves its Secret: into the pooled client's headers.
            headers={
                KEY_HEADER: key.reveal(),
                "User-Agent": f"edgematch/{__version__}",
                "Accept": "application/json",
            },
            # pool= bounds the wait for a free connection, so an exhausted pool surfaces
            # as a timeout (TransportError) instead of a hang.
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            # Bounded so a burst can never open unbounded sockets to one host; the
            # keep-alive window is long enough to reuse connections between batches.
            limits=httpx.Limits(
                max_connections=16, max_keepalive_connections=8, keepalive_expiry=30.0
            ),
            verify=verify,
            # A redirect would resend the key to wherever it points; never follow one.
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, transport: httpx.BaseTransport | None = None
    ) -> PhotoDNAClient:
        """Build from Settings. Raises ConfigurationError when no subscription key is set."""
        return cls(
            settings.api_url,
            settings.require_subscription_key(),
            operation=settings.api_operation,
            timeout_s=settings.api_timeout_s,
            connect_timeout_s=settings.api_connect_timeout_s,
            verify=settings.tls_verify,
            max_batch=settings.batch_size,
            transport=transport,
        )

    @property
    def operation(self) -> str:
        return self._operation

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def match(
        self, items: Sequence[HashItem], *, on_written: Callable[[float], None] | None = None
    ) -> BatchResponse:
        """Send one request of 1..max_batch items; see the module docstring for what it raises.

        Per-item failures (3002, 3004, 3206, 3208, unknown codes, items missing from the
        answer) are returned in the outcomes, not raised. ``on_written`` is called with
        ``time.monotonic()`` once the whole request has been handed to the socket (httpx's
        trace; a transport that reports none, such as a test's, never calls it); it must
        be quick and must not raise.
        """
        check_items(items, self._max_batch)
        ids = [item.content_id for item in items]
        http_status: int | None = None
        tracking_id: str | None = None
        started = time.perf_counter()
        try:
            status, headers, body = self._send(items, on_written)
            http_status = status
            response = parse_response(
                status, headers, body, ids, time.perf_counter() - started, redact=self._redact
            )
            tracking_id = response.tracking_id
            return response
        finally:
            _log.debug(
                "photodna_request",
                operation=self._operation,
                items=len(ids),
                http_status=http_status,
                elapsed_s=round(time.perf_counter() - started, 4),
                tracking_id=tracking_id,
            )

    def close(self) -> None:
        """Close the pooled connections. Idempotent."""
        self._http.close()

    def __enter__(self) -> PhotoDNAClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PhotoDNAClient(base_url={self._base_url!r}, operation={self._operation!r}, "
            f"max_batch={self._max_batch})"
        )

    # The one boundary where httpx exceptions become ours.
    def _send(
        self, items: Sequence[HashItem], on_written: Callable[[float], None] | None = None
    ) -> tuple[int, httpx.Headers, bytes]:
        kwargs: dict[str, Any]
        if self._operation == "MatchHash":
            kwargs = {"json": build_hash_request(items)}
        else:
            kwargs = {"files": build_edge_request(items)}
        if on_written is not None:
            kwargs["extensions"] = {"trace": _written_trace(on_written)}
        try:
            with self._http.stream("POST", self._url, **kwargs) as response:
                body = self._read_capped(response)
                return response.status_code, response.headers, body
        except httpx.TimeoutException as exc:
            raise TransportError(f"{self._operation}: timed out ({type(exc).__name__})") from exc
        except httpx.DecodingError as exc:
            raise ServerError(
                f"{self._operation}: undecodable answer ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            # TransportError (connect, read, write, RemoteProtocolError when the server
            # drops the connection, proxy errors) and any other request-level failure.
            raise TransportError(
                f"{self._operation}: {type(exc).__name__}: {clean(self._redact(str(exc)))}"
            ) from exc
        except httpx.StreamError as exc:
            raise TransportError(f"{self._operation}: {type(exc).__name__}") from exc

    def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ServerError(
                    f"{self._operation}: answer larger than {MAX_RESPONSE_BYTES} bytes",
                    status_code=response.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _redact(self, text: str) -> str:
        # The second (and last) use of reveal(): keep an echoed key out of our messages.
        secret = self._key.reveal()
        return text.replace(secret, "[redacted]") if secret else text


def _written_trace(on_written: Callable[[float], None]) -> Callable[[str, Any], None]:
    """An httpx trace callback that reports when the request body has left (HTTP/1.1 and 2)."""

    def trace(event: str, _info: Any) -> None:
        if event.endswith("send_request_body.complete"):
            on_written(time.monotonic())

    return trace
