"""Times on the command line: dates, durations and ages, parsed and printed. Pure.

``--since`` and ``--older-than`` take either a moment (``2024-05-01``,
``2024-05-01T12:30``, ``2024-05-01T12:30:00+02:00``, ``…Z``; a moment without a zone is
UTC) or a duration back from now (``90s``, ``15m``, ``6h``, ``7d``, ``2w``, ``1h30m``).
Every parser raises ValueError with a message fit for the command line.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """``"1h30m"`` → 5400.0 seconds. Units s, m, h, d, w; a bare number is refused."""
    compact = text.strip().lower().replace(" ", "")
    if not _DURATION.match(compact):
        raise ValueError(f"expected a duration such as 90s, 15m, 6h, 7d or 1h30m, got {text!r}")
    return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))


def parse_moment(text: str, *, now: float) -> float:
    """A date, a date and time, or a duration back from ``now``, as epoch seconds."""
    stripped = text.strip()
    if _DURATION.match(stripped.lower().replace(" ", "")):
        return now - parse_duration(stripped)
    try:
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected a date (2024-05-01), a date and time (2024-05-01T12:30Z) or a "
            f"duration back from now (6h, 7d), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_duration(seconds: float | None) -> str:
    """``192`` → ``"3m12s"``; two units at most; ``"?"`` for unknown or infinite."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86_400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86_400}d{whole % 86_400 // 3600:02d}h"


def format_moment(epoch: float | None) -> str:
    """Epoch seconds as ISO 8601 UTC to the second (``2024-05-01T12:30:00Z``); ``-`` for None."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
