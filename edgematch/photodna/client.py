"""Client for PhotoDNA Cloud Service: ``MatchEdgeHash`` (multipart) and ``MatchHash`` (JSON).

The module is split into pure functions (request building, response parsing, status
classification, ``Retry-After`` parsing), tested without I/O, and :class:`PhotoDNAClient`,
which owns one pooled :class:`httpx.Client` and is the single boundary where httpx
exceptions are translated into :mod:`edgematch.errors`. Which result of an answer
answers which item is decided by one rule, :func:`edgematch.photodna.answers.route`.

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

import base64
import datetime
import email.utils
import json
import math
import re
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NoReturn

import httpx
import structlog

from edgematch import __version__
from edgematch.config.settings import OPERATIONS, Secret, Settings
from edgematch.errors import (
    CredentialError,
    ItemRejected,
    ItemTransient,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.photodna import answers

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

#: The API takes at most this many hashes per request (more is answered 3209).
API_MAX_ITEMS: Final = 5
#: Header carrying the subscription key (Azure API Management).
KEY_HEADER: Final = "Ocp-Apim-Subscription-Key"
#: Seconds to wait after a 429 that names no delay at all.
DEFAULT_RETRY_AFTER_S: Final = 1.0
#: Upper bound, in seconds, on a delay the server asks for: a garbled or hostile value
#: must not freeze the whole pool for days.
RETRY_AFTER_CAP_S: Final = 3600.0
#: Largest answer body read, in bytes; real answers for 5 items are a few KiB.
MAX_RESPONSE_BYTES: Final = 1 << 20
STATUS_OK: Final = 3000

StatusKind = Literal["ok", "transient", "permanent"]

#: THE table: PhotoDNA status code -> (kind, description). Every decision about a status
#: code, per item or for the whole request, reads it; a code not listed is permanent.
STATUS_TABLE: Final[Mapping[int, tuple[StatusKind, str]]] = types.MappingProxyType(
    {
        3000: ("ok", "OK"),
        3002: ("permanent", "Invalid or missing request parameter(s)"),
        3004: ("transient", "Unknown scenario or unhandled error"),
        3206: ("permanent", "Could not be verified"),
        3208: ("permanent", "Size out of range"),
        # Our bug (more than 5 items): never retried as is.
        3209: ("permanent", "Request Size Exceeded"),
    }
)

# Content ids travel as multipart form names and filenames (inside a Content-Disposition
# header) and as JSON strings: a conservative alphabet rules out quoting and header
# injection problems instead of relying on every layer escaping them the same way.
_CONTENT_ID = re.compile(r"[A-Za-z0-9._~:@+=-]{1,128}")
_RETRY_IN = re.compile(r"try again in\s+(\d+(?:\.\d+)?)\s*sec", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_TEXT_LIMIT = 200
# Only the head of an error body is searched for "Try again in N seconds".
_RETRY_SCAN_BYTES = 4096

ErrorForItem = TransientError | PermanentError


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class HashItem:
    """One hash to match. ``content_id`` is an opaque id made by the caller."""

    content_id: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class MatchFlag:
    """One source that matched: its name, violation codes and match ids."""

    source: str
    violations: tuple[str, ...]
    match_ids: tuple[str, ...]


@dataclass(frozen=True)
class ItemOutcome:
    """The answer for one item. ``error`` is None exactly when ``status_code`` is 3000.

    ``match_signalled``: a result that may be this item's said it matched. A verdict
    (``error`` None) has it exactly when it is a match, so a clean verdict with a match
    signal cannot be built; an unanswered item keeps it for the match step to remember.
    Raises ValueError for a combination that breaks these rules (our bug).
    """

    content_id: str
    status_code: int
    description: str
    is_match: bool
    flags: tuple[MatchFlag, ...]
    error: ErrorForItem | None
    match_signalled: bool = False

    def __post_init__(self) -> None:
        answered = self.error is None
        if answered != (self.status_code == STATUS_OK):
            raise ValueError(f"outcome of {self.content_id}: an error exactly when not 3000")
        if self.is_match and not answered:
            raise ValueError(f"outcome of {self.content_id}: a match with an error")
        if answered and self.match_signalled != self.is_match:
            raise ValueError(f"outcome of {self.content_id}: a verdict contradicting its signal")

    @property
    def match_ids(self) -> tuple[str, ...]:
        """Every match id of every flag, de-duplicated, in the order the API gave them."""
        return _unique(mid for flag in self.flags for mid in flag.match_ids)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source that matched, de-duplicated, in order."""
        return _unique(flag.source for flag in self.flags if flag.source)

    @property
    def violations(self) -> tuple[str, ...]:
        """Every violation code of every flag, de-duplicated, in order."""
        return _unique(v for flag in self.flags for v in flag.violations)


@dataclass(frozen=True)
class BatchResponse:
    """A whole-request answer. ``outcomes`` holds every requested content id."""

    tracking_id: str | None
    request_id: str | None
    outcomes: dict[str, ItemOutcome]
    http_status: int
    elapsed_s: float


# --------------------------------------------------------------------------- pure functions


def classify_item_status(code: int, description: str) -> ErrorForItem | None:
    """Map one status code to None (OK), ItemTransient or ItemRejected. Never raises.

    Decided by :data:`STATUS_TABLE`; a code it does not list is permanent
    ("unknown status NNNN"). ``description`` is the server's text, used in the message
    (control characters stripped, truncated); the table's text when it is empty.
    """
    text = _clean(description)
    entry = STATUS_TABLE.get(code)
    if entry is None:
        suffix = f": {text}" if text else ""
        return ItemRejected(f"unknown status {code}{suffix}", status_code=code)
    kind, table_text = entry
    if kind == "ok":
        return None
    message = f"status {code}: {text or table_text}"
    if kind == "transient":
        return ItemTransient(message, status_code=code)
    return ItemRejected(message, status_code=code)


def parse_retry_after(headers: Mapping[str, str], body: bytes, now: float | None = None) -> float:
    """Seconds to wait after a 429, in ``[0, RETRY_AFTER_CAP_S]``. Never raises.

    In order: the ``Retry-After`` header as seconds or as an HTTP date (relative to
    ``now``, a Unix time in seconds, default the current time); then "Try again in N
    seconds" in the body (API Management's message); then :data:`DEFAULT_RETRY_AFTER_S`.
    """
    raw = _header(headers, "retry-after")
    if raw is not None:
        seconds = _retry_after_value(raw.strip(), time.time() if now is None else now)
        if seconds is not None:
            return seconds
    match = _RETRY_IN.search(body[:_RETRY_SCAN_BYTES].decode("utf-8", errors="replace"))
    if match is not None:
        return _bounded(float(match.group(1)))
    return DEFAULT_RETRY_AFTER_S


def parse_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    requested_ids: Sequence[str],
    elapsed_s: float = 0.0,
    *,
    redact: Callable[[str], str] | None = None,
) -> BatchResponse:
    """Turn one HTTP answer into a :class:`BatchResponse`, or raise the whole-request error.

    Raises RateLimited (429), CredentialError (401, 403), TransportError (408),
    RequestRejected (other 4xx; a top-level Status the table calls permanent, such as
    3209 even under HTTP 200), ServerError (5xx, 1xx, 3xx, an unreadable or wrongly
    shaped 2xx body, a top-level transient Status). Nothing else escapes.

    Which result answers which of ``requested_ids`` is decided by
    :func:`edgematch.photodna.answers.route`: by ``ContentId``, or by position when no
    result carries one and the count is right. An item no result answers unambiguously
    gets an ItemTransient outcome with status 0 (``match_signalled`` when a result that may
    be its own said match). ``redact`` is applied to every piece of server text before it
    is kept.
    """
    clean = _cleaner(redact)
    if status_code == 429:
        seconds = parse_retry_after(headers, body)
        raise RateLimited(
            f"HTTP 429 rate limited, retry after {seconds:g} s{_apim_message(body, clean)}",
            retry_after_s=seconds,
        )
    if status_code in (401, 403):
        raise CredentialError(
            f"HTTP {status_code}: subscription key refused{_apim_message(body, clean)}",
            status_code=status_code,
        )
    if status_code == 408:
        raise TransportError("HTTP 408: the request timed out before the API read it")
    if 400 <= status_code < 500:
        raise RequestRejected(
            f"HTTP {status_code}: request refused{_apim_message(body, clean)}",
            status_code=status_code,
        )
    if not 200 <= status_code < 300:
        raise ServerError(f"HTTP {status_code} from the API", status_code=status_code)

    document = _load_json(body)
    if not isinstance(document, dict):
        raise ServerError(
            f"HTTP {status_code} with a body that is not a JSON object", status_code=status_code
        )
    results = document.get("MatchResults")
    if results is None:
        _raise_request_status(status_code, document.get("Status"), clean)
    if not isinstance(results, list):
        raise ServerError(
            f"HTTP {status_code} with MatchResults that is not a list", status_code=status_code
        )
    return BatchResponse(
        tracking_id=_optional_text(document.get("TrackingId"), clean),
        request_id=_optional_text(document.get("CMRequestId"), clean),
        outcomes=_outcomes(results, requested_ids, clean),
        http_status=status_code,
        elapsed_s=elapsed_s,
    )


def build_edge_request(
    items: Sequence[HashItem],
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The ``files`` argument of httpx for MatchEdgeHash: one ``<content_id>.bin`` part each.

    The form name is the content id (the API echoes it as ``ContentId``). Raises
    ValueError for 0 or more than 5 items, duplicate or unsafe ids, or empty bytes.
    """
    _check_items(items, API_MAX_ITEMS)
    return [
        (item.content_id, (f"{item.content_id}.bin", item.data, "application/octet-stream"))
        for item in items
    ]


def build_hash_request(items: Sequence[HashItem]) -> list[dict[str, str]]:
    """The JSON body for MatchHash: ``[{"DataRepresentation": "Hash", "Value", "ContentId"}]``.

    ``Value`` is standard base64 of the bytes. Raises ValueError like
    :func:`build_edge_request`.
    """
    _check_items(items, API_MAX_ITEMS)
    return [
        {
            "DataRepresentation": "Hash",
            "Value": base64.b64encode(item.data).decode("ascii"),
            "ContentId": item.content_id,
        }
        for item in items
    ]


# --------------------------------------------------------------------------- client


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

    def match(self, items: Sequence[HashItem]) -> BatchResponse:
        """Send one request of 1..max_batch items; see the module docstring for what it raises.

        Per-item failures (3002, 3004, 3206, 3208, unknown codes, items missing from the
        answer) are returned in the outcomes, not raised.
        """
        _check_items(items, self._max_batch)
        ids = [item.content_id for item in items]
        http_status: int | None = None
        tracking_id: str | None = None
        started = time.perf_counter()
        try:
            status, headers, body = self._send(items)
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
    def _send(self, items: Sequence[HashItem]) -> tuple[int, httpx.Headers, bytes]:
        kwargs: dict[str, Any]
        if self._operation == "MatchHash":
            kwargs = {"json": build_hash_request(items)}
        else:
            kwargs = {"files": build_edge_request(items)}
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
                f"{self._operation}: {type(exc).__name__}: {_clean(self._redact(str(exc)))}"
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


# --------------------------------------------------------------------------- helpers


def _check_items(items: Sequence[HashItem], limit: int) -> None:
    """Refuse, loudly, a request we must never send: it is our bug, not the item's."""
    if not 1 <= len(items) <= limit:
        raise ValueError(f"a request carries 1 to {limit} items, got {len(items)}")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item.content_id, str) or not _CONTENT_ID.fullmatch(item.content_id):
            raise ValueError(
                f"content id {item.content_id!r} must be 1 to 128 of A-Z a-z 0-9 . _ ~ : @ + = -"
            )
        if item.content_id in seen:
            raise ValueError(f"content id {item.content_id!r} appears twice in one request")
        seen.add(item.content_id)
        if not item.data:
            raise ValueError(f"item {item.content_id!r} has no hash bytes")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # httpx.Headers is case-insensitive but a plain dict is not; accept both.
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _retry_after_value(raw: str, now: float) -> float | None:
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return _bounded(seconds) if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        # A date without a zone is GMT by the HTTP spec; naive datetimes would be local.
        target = when.timestamp() if when.tzinfo else when.replace(tzinfo=datetime.UTC).timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return _bounded(target - now)


def _bounded(seconds: float) -> float:
    if math.isnan(seconds):
        return DEFAULT_RETRY_AFTER_S
    return min(RETRY_AFTER_CAP_S, max(0.0, seconds))


def _clean(text: str) -> str:
    """Server text made safe to log: no control characters, at most 200 characters."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= _TEXT_LIMIT else flat[: _TEXT_LIMIT - 1] + "…"


def _cleaner(redact: Callable[[str], str] | None) -> Callable[[object], str]:
    def clean(value: object) -> str:
        if not isinstance(value, str):
            return ""
        text = redact(value) if redact is not None else value
        return _clean(text)

    return clean


def _optional_text(value: object, clean: Callable[[object], str]) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return clean(value) or None


def _apim_message(body: bytes, clean: Callable[[object], str]) -> str:
    """``: <message>`` from an API Management error body, or an empty string."""
    document = _load_json(body[:_RETRY_SCAN_BYTES]) if body else None
    if isinstance(document, dict):
        text = clean(document.get("message"))
        if text:
            return f": {text}"
    return ""


def _load_json(body: bytes) -> object:
    """The decoded body, or None when it is not JSON at all."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return None


def _status_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _raise_request_status(
    http_status: int, status: object, clean: Callable[[object], str]
) -> NoReturn:
    """A body without MatchResults: a whole-request Status, or a body we cannot use."""
    code = _status_code(status.get("Code")) if isinstance(status, dict) else None
    if code is None:
        raise ServerError(
            f"HTTP {http_status} without MatchResults or a Status", status_code=http_status
        )
    kind, table_text = STATUS_TABLE.get(code, ("permanent", ""))
    description = (clean(status.get("Description")) if isinstance(status, dict) else "") or (
        table_text or "unknown status"
    )
    if kind == "ok":
        raise ServerError(
            f"HTTP {http_status} with status {code} but no MatchResults", status_code=http_status
        )
    if kind == "transient":
        raise ServerError(f"request status {code}: {description}", status_code=http_status)
    # The API status (e.g. 3209) says more than the HTTP 200 it came with.
    raise RequestRejected(f"request status {code}: {description}", status_code=code)


def _outcomes(
    results: list[Any], requested_ids: Sequence[str], clean: Callable[[object], str]
) -> dict[str, ItemOutcome]:
    outcomes: dict[str, ItemOutcome] = {}
    for content_id, routed in answers.route(results, requested_ids).items():
        if isinstance(routed, answers.Answered):
            outcomes[content_id] = _item_outcome(content_id, routed.result, clean)
        else:
            outcomes[content_id] = _unreadable(content_id, routed.why, routed.match_signalled)
    return outcomes


def _item_outcome(
    content_id: str, result: Mapping[str, Any], clean: Callable[[object], str]
) -> ItemOutcome:
    """What the item's own result says. Any claim of a match, even in a result that is
    otherwise unreadable or not OK, is kept as ``match_signalled``."""
    signalled = answers.says_match(result)
    status = result.get("Status")
    code = _status_code(status.get("Code")) if isinstance(status, dict) else None
    if code is None:
        return _unreadable(content_id, "no status code in the answer", signalled)
    description = clean(status.get("Description")) if isinstance(status, dict) else ""
    error = classify_item_status(code, description)
    if error is not None:
        table_text = STATUS_TABLE.get(code, ("permanent", "unknown status"))[1]
        return ItemOutcome(content_id, code, description or table_text, False, (), error, signalled)
    is_match = result.get("IsMatch")
    if not isinstance(is_match, bool):
        # Reporting "no match" for an answer we cannot read could hide a match: retry.
        return _unreadable(content_id, "status 3000 without a readable IsMatch", signalled)
    if signalled and not is_match:
        return _unreadable(content_id, "status 3000, IsMatch false but match flags", True)
    flags = _flags(result.get("MatchDetails"), clean) if is_match else ()
    return ItemOutcome(content_id, code, description or "OK", is_match, flags, None, is_match)


def _flags(details: object, clean: Callable[[object], str]) -> tuple[MatchFlag, ...]:
    raw_flags = details.get("MatchFlags") if isinstance(details, dict) else None
    return tuple(
        MatchFlag(
            source=clean(raw.get("Source")),
            violations=_unique(clean(v) for v in _list(raw.get("Violations"))),
            match_ids=_unique(
                _optional_text(entry.get("Value"), clean) or ""
                for entry in _list(raw.get("AdvancedInfo"))
                if isinstance(entry, dict) and entry.get("Key") == "MatchId"
            ),
        )
        for raw in _list(raw_flags)
        if isinstance(raw, dict)
    )


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _unreadable(content_id: str, message: str, match_signalled: bool) -> ItemOutcome:
    return ItemOutcome(
        content_id,
        0,
        message,
        False,
        (),
        ItemTransient(message, status_code=None),
        match_signalled,
    )


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    """De-duplicated, order kept, empty strings dropped."""
    return tuple(dict.fromkeys(value for value in values if value))
