"""How long to wait after a 429: ``Retry-After`` and API Management's message. Pure.

Units: seconds (``float``). A garbled or hostile value never freezes the pool: every
answer is bounded to ``[0, RETRY_AFTER_CAP_S]``.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
import time
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "RETRY_AFTER_CAP_S",
    "RETRY_SCAN_BYTES",
    "parse_retry_after",
]

#: Seconds to wait after a 429 that names no delay at all.
DEFAULT_RETRY_AFTER_S: Final = 1.0
#: Upper bound, in seconds, on a delay the server asks for: a garbled or hostile value
#: must not freeze the whole pool for days.
RETRY_AFTER_CAP_S: Final = 3600.0
#: Only the head of an error body is searched for "Try again in N seconds", in bytes.
RETRY_SCAN_BYTES: Final = 4096
_RETRY_IN = re.compile(r"try again in\s+(\d+(?:\.\d+)?)\s*sec", re.IGNORECASE)


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
    match = _RETRY_IN.search(body[:RETRY_SCAN_BYTES].decode("utf-8", errors="replace"))
    if match is not None:
        return _bounded(float(match.group(1)))
    return DEFAULT_RETRY_AFTER_S


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
