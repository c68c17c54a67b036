"""The PhotoDNA wire format: request bodies out, HTTP answers in. Pure, no I/O.

Requests: ``MatchEdgeHash`` takes ``multipart/form-data`` (one ``<content_id>.bin`` part
per hash, the form name echoed as ``ContentId``); ``MatchHash`` a JSON array of
``{"DataRepresentation": "Hash", "Value": <base64>, "ContentId"}``. Both refuse, with
ValueError, a request we must never send (0 or more than 5 items, duplicate or unsafe
content ids, empty hash bytes): that is our bug, not the item's.

Answers: :func:`parse_response` turns one HTTP answer into a
:class:`~edgematch.photodna.outcomes.BatchResponse` or raises the whole-request error.
Which result answers which item is decided by one rule,
:func:`edgematch.photodna.answers.route`; status codes by one table,
:data:`edgematch.photodna.status.STATUS_TABLE`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NoReturn

from edgematch.errors import (
    CredentialError,
    ItemTransient,
    RateLimited,
    RequestRejected,
    ServerError,
    TransportError,
)
from edgematch.photodna import answers
from edgematch.photodna.outcomes import BatchResponse, HashItem, ItemOutcome, MatchFlag, unique
from edgematch.photodna.retryafter import RETRY_SCAN_BYTES, parse_retry_after
from edgematch.photodna.servertext import Cleaner, cleaner, optional_text
from edgematch.photodna.status import STATUS_TABLE, classify_item_status, status_code

__all__ = [
    "API_MAX_ITEMS",
    "build_edge_request",
    "build_hash_request",
    "check_items",
    "parse_response",
]

#: The API takes at most this many hashes per request (more is answered 3209).
API_MAX_ITEMS: Final = 5

# Content ids travel as multipart form names and filenames (inside a Content-Disposition
# header) and as JSON strings: a conservative alphabet rules out quoting and header
# injection problems instead of relying on every layer escaping them the same way.
_CONTENT_ID = re.compile(r"[A-Za-z0-9._~:@+=-]{1,128}")


# --------------------------------------------------------------------------- requests


def check_items(items: Sequence[HashItem], limit: int) -> None:
    """Refuse, loudly, a request we must never send: it is our bug, not the item's.

    Raises ValueError for 0 or more than ``limit`` items, duplicate or unsafe content ids,
    or empty hash bytes.
    """
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


def build_edge_request(
    items: Sequence[HashItem],
) -> list[tuple[str, tuple[str, bytes, str]]]:
    """The ``files`` argument of httpx for MatchEdgeHash: one ``<content_id>.bin`` part each.

    The form name is the content id (the API echoes it as ``ContentId``). Raises
    ValueError for 0 or more than 5 items, duplicate or unsafe ids, or empty bytes.
    """
    check_items(items, API_MAX_ITEMS)
    return [
        (item.content_id, (f"{item.content_id}.bin", item.data, "application/octet-stream"))
        for item in items
    ]


def build_hash_request(items: Sequence[HashItem]) -> list[dict[str, str]]:
    """The JSON body for MatchHash: ``[{"DataRepresentation": "Hash", "Value", "ContentId"}]``.

    ``Value`` is standard base64 of the bytes. Raises ValueError like
    :func:`build_edge_request`.
    """
    check_items(items, API_MAX_ITEMS)
    return [
        {
            "DataRepresentation": "Hash",
            "Value": base64.b64encode(item.data).decode("ascii"),
            "ContentId": item.content_id,
        }
        for item in items
    ]


# --------------------------------------------------------------------------- answers


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
    clean = cleaner(redact)
    _raise_for_http_status(status_code, headers, body, clean)
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
        tracking_id=optional_text(document.get("TrackingId"), clean),
        request_id=optional_text(document.get("CMRequestId"), clean),
        outcomes=_outcomes(results, requested_ids, clean),
        http_status=status_code,
        elapsed_s=elapsed_s,
    )


def _raise_for_http_status(
    status_code: int, headers: Mapping[str, str], body: bytes, clean: Cleaner
) -> None:
    """Raise the whole-request error an HTTP status other than 2xx stands for."""
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


def _apim_message(body: bytes, clean: Cleaner) -> str:
    """``: <message>`` from an API Management error body, or an empty string."""
    document = _load_json(body[:RETRY_SCAN_BYTES]) if body else None
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


def _raise_request_status(http_status: int, status: object, clean: Cleaner) -> NoReturn:
    """A body without MatchResults: a whole-request Status, or a body we cannot use."""
    code = status_code(status.get("Code")) if isinstance(status, dict) else None
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
    results: list[Any], requested_ids: Sequence[str], clean: Cleaner
) -> dict[str, ItemOutcome]:
    outcomes: dict[str, ItemOutcome] = {}
    for content_id, routed in answers.route(results, requested_ids).items():
        if isinstance(routed, answers.Answered):
            outcomes[content_id] = _item_outcome(content_id, routed.result, clean)
        else:
            outcomes[content_id] = _unreadable(content_id, routed.why, routed.match_signalled)
    return outcomes


def _item_outcome(content_id: str, result: Mapping[str, Any], clean: Cleaner) -> ItemOutcome:
    """What the item's own result says. Any claim of a match, even in a result that is
    otherwise unreadable or not OK, is kept as ``match_signalled``."""
    signalled = answers.says_match(result)
    status = result.get("Status")
    code = status_code(status.get("Code")) if isinstance(status, dict) else None
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


def _flags(details: object, clean: Cleaner) -> tuple[MatchFlag, ...]:
    raw_flags = details.get("MatchFlags") if isinstance(details, dict) else None
    return tuple(
        MatchFlag(
            source=clean(raw.get("Source")),
            violations=unique(clean(v) for v in _list(raw.get("Violations"))),
            match_ids=unique(
                optional_text(entry.get("Value"), clean) or ""
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
