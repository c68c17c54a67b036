"""What PhotoDNA Cloud Service answers, as pure functions: no sockets, no clocks, no state.

Status codes, response bodies (MatchEdgeHash, MatchHash, Report, the API Management 401
and 429), how one hash is classified, and how request bodies become items. The server
module only wires these to HTTP, counters and fault injection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from devtools.sandbox.multipart import (
    MultipartError,
    boundary_from_content_type,
    parse_multipart,
)

__all__ = [
    "CONFLICT_MATCH_ID",
    "DEFAULT_HASH_SIZE",
    "DESCRIPTIONS",
    "INVALID_PARAMETERS",
    "MATCH_SOURCE",
    "MATCH_VIOLATIONS",
    "MAX_ITEMS_PER_REQUEST",
    "NOT_VERIFIED",
    "OK",
    "REQUEST_SIZE_EXCEEDED",
    "SIZE_OUT_OF_RANGE",
    "UNHANDLED_ERROR",
    "Item",
    "RequestRefused",
    "Verdict",
    "check_item_count",
    "classify_hash",
    "conflicting_result",
    "error_body",
    "items_from_match_hash",
    "items_from_multipart",
    "match_id_for",
    "match_response",
    "match_result",
    "new_request_id",
    "new_tracking_id",
    "normalize_digest",
    "parse_known_lines",
    "rate_limited_body",
    "report_response",
    "request_status_response",
    "sha256_hex",
    "status",
    "unauthorized_body",
]

OK = 3000
INVALID_PARAMETERS = 3002
UNHANDLED_ERROR = 3004
NOT_VERIFIED = 3206
SIZE_OUT_OF_RANGE = 3208
REQUEST_SIZE_EXCEEDED = 3209

DESCRIPTIONS: dict[int, str] = {
    OK: "OK",
    INVALID_PARAMETERS: "Invalid or missing request parameter(s)",
    UNHANDLED_ERROR: "Unknown scenario or unhandled error occurred while processing request",
    NOT_VERIFIED: "The requested content could not be verified",
    SIZE_OUT_OF_RANGE: "Size out of range",
    REQUEST_SIZE_EXCEEDED: "Request Size Exceeded",
}

MAX_ITEMS_PER_REQUEST = 5
DEFAULT_HASH_SIZE = 924
MATCH_SOURCE = "sandbox"
MATCH_VIOLATIONS = ("A1",)
#: The MatchId of the made-up match a conflicting answer gives a clean item.
CONFLICT_MATCH_ID = "sandbox-conflict"

UNAUTHORIZED_MESSAGE = (
    "Access denied due to invalid subscription key. "
    "Make sure to provide a valid key for an active subscription."
)

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class RequestRefused(Exception):
    """The whole request gets one top-level status instead of per-item results."""

    def __init__(self, code: int, *, item_count: int | None = None) -> None:
        super().__init__(DESCRIPTIONS[code])
        self.code = code
        #: How many items the request carried, when the body could be read that far.
        self.item_count = item_count


@dataclass(frozen=True)
class Item:
    """One thing to match: the ``ContentId`` to echo, and its hash bytes (None if unreadable)."""

    content_id: str
    data: bytes | None


@dataclass(frozen=True)
class Verdict:
    """The answer for one item: a per-item status code, and a match id when it is a hit."""

    content_id: str
    code: int
    match_id: str | None = None
    #: Fault injection: the item is answered twice under its ContentId, the opposite
    #: verdict first (a clean before a match; a made-up match before a clean).
    conflict: bool = False

    @property
    def is_match(self) -> bool:
        return self.code == OK and self.match_id is not None


# --- identifiers -------------------------------------------------------------------------


def new_tracking_id() -> str:
    """A TrackingId shaped like the service's (a region-ish prefix, then opaque hex)."""
    return f"SBX_{uuid.uuid4().hex}"


def new_request_id() -> str:
    """A CMRequestId or ReportId: an opaque GUID."""
    return str(uuid.uuid4())


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def match_id_for(digest: str) -> str:
    """Deterministic from the digest, so tests and demo runs can predict it."""
    return digest[:16]


# --- known hashes ------------------------------------------------------------------------


def normalize_digest(value: str) -> str:
    """Lowercase a hex SHA-256 digest, or raise ValueError if it is not one."""
    digest = value.strip().lower()
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError(f"not a hex SHA-256 digest: {value[:80]!r}")
    return digest


def parse_known_lines(lines: Iterable[str]) -> set[str]:
    """Digests from a known-hashes file: one per line, blank lines and ``#`` comments ignored."""
    known: set[str] = set()
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            known.add(normalize_digest(entry))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return known


# --- classification ----------------------------------------------------------------------


def classify_hash(data: bytes | None, *, hash_size: int, known: Collection[str]) -> Verdict:
    """Classify one hash. The ``content_id`` of the result is empty; callers fill it in.

    A hash of the wrong size (or none) is 3002, as the service answers a malformed
    parameter; a hash whose SHA-256 is known is a match; anything else is a clean miss.
    """
    if not data or len(data) != hash_size:
        return Verdict("", INVALID_PARAMETERS)
    digest = sha256_hex(data)
    if digest in known:
        return Verdict("", OK, match_id_for(digest))
    return Verdict("", OK)


def check_item_count(count: int) -> None:
    """Raise RequestRefused for an empty request (3002) or one over the batch limit (3209)."""
    if count == 0:
        raise RequestRefused(INVALID_PARAMETERS, item_count=0)
    if count > MAX_ITEMS_PER_REQUEST:
        raise RequestRefused(REQUEST_SIZE_EXCEEDED, item_count=count)


def items_from_multipart(body: bytes, content_type: str | None) -> list[Item]:
    """The items of a MatchEdgeHash upload, one per form part, ContentId = the part's name.

    Raises RequestRefused: 3002 for an unreadable body or no parts, 3209 for more than five.
    A part without a name cannot be reported back; it is answered 3002 under its index.
    """
    try:
        parts = parse_multipart(body, boundary_from_content_type(content_type))
    except MultipartError:
        raise RequestRefused(INVALID_PARAMETERS) from None
    check_item_count(len(parts))
    return [
        Item(part.name, part.data) if part.name else Item(str(index), None)
        for index, part in enumerate(parts)
    ]


def items_from_match_hash(body: bytes) -> list[Item]:
    """The items of a MatchHash JSON body: ``[{"DataRepresentation": "Hash", "Value": b64}]``.

    ContentId is the one given, or the item's zero-based index. An item that is not such an
    object, or whose Value is not base64, becomes an unreadable item (answered 3002).
    """
    try:
        payload: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestRefused(INVALID_PARAMETERS) from None
    if not isinstance(payload, list):
        raise RequestRefused(INVALID_PARAMETERS)
    check_item_count(len(payload))
    return [_match_hash_item(index, entry) for index, entry in enumerate(payload)]


def _match_hash_item(index: int, entry: object) -> Item:
    if not isinstance(entry, dict):
        return Item(str(index), None)
    given = entry.get("ContentId")
    content_id = given if isinstance(given, str) else str(index)
    value = entry.get("Value")
    if (
        (given is not None and not isinstance(given, str))
        or entry.get("DataRepresentation") != "Hash"
        or not isinstance(value, str)
    ):
        return Item(content_id, None)
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return Item(content_id, None)
    return Item(content_id, data)


# --- response bodies ---------------------------------------------------------------------


def status(code: int) -> dict[str, object]:
    return {"Code": code, "Description": DESCRIPTIONS[code], "Exception": None}


def match_result(verdict: Verdict) -> dict[str, object]:
    """One entry of ``MatchResults``."""
    flags: list[dict[str, object]] = []
    if verdict.is_match:
        flags.append(
            {
                "AdvancedInfo": [{"Key": "MatchId", "Value": verdict.match_id}],
                "Source": MATCH_SOURCE,
                "Violations": list(MATCH_VIOLATIONS),
            }
        )
    return {
        "Status": status(verdict.code),
        "ContentId": verdict.content_id,
        "IsMatch": verdict.is_match,
        "MatchDetails": {"AdvancedInfo": [], "MatchFlags": flags},
    }


def conflicting_result(verdict: Verdict) -> dict[str, object]:
    """The opposite answer for a 3000 verdict, under the same ContentId (fault injection)."""
    if verdict.is_match:
        return match_result(Verdict(verdict.content_id, OK))
    return match_result(Verdict(verdict.content_id, OK, CONFLICT_MATCH_ID))


def match_response(
    verdicts: Iterable[Verdict], *, tracking_id: str, request_id: str
) -> dict[str, object]:
    """The 200 body of MatchEdgeHash and MatchHash: one result per item, in request order
    (a verdict marked ``conflict`` preceded by :func:`conflicting_result`)."""
    results: list[dict[str, object]] = []
    for verdict in verdicts:
        if verdict.conflict and verdict.code == OK:
            results.append(conflicting_result(verdict))
        results.append(match_result(verdict))
    return {"TrackingId": tracking_id, "MatchResults": results, "CMRequestId": request_id}


def request_status_response(code: int, *, tracking_id: str, request_id: str) -> dict[str, object]:
    """A 200 body refusing the whole request (3209 too many items, 3002 nothing readable)."""
    return {"Status": status(code), "TrackingId": tracking_id, "CMRequestId": request_id}


def report_response(*, tracking_id: str, report_id: str) -> dict[str, object]:
    return {
        "TrackingId": tracking_id,
        "Status": {"Code": OK, "Description": DESCRIPTIONS[OK]},
        "ReportId": report_id,
    }


def error_body(status_code: int, message: str) -> dict[str, object]:
    """API Management's error shape, used for 401, 429, 404 and injected 5xx answers."""
    return {"statusCode": status_code, "message": message}


def unauthorized_body() -> dict[str, object]:
    return error_body(401, UNAUTHORIZED_MESSAGE)


def rate_limited_body(retry_after_s: int) -> dict[str, object]:
    return error_body(429, f"Rate limit is exceeded. Try again in {retry_after_s} seconds.")
