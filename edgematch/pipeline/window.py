"""The pool's rate-limit window: its size from a configured rate, and its use right now.

The limit itself is kept in Redis by the buffer's Lua scripts (a sliding log of request
times on Redis's clock); these are the pure parts around it, tested without Redis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["WindowUse", "capped_asked_s", "limiter_window"]


@dataclass(frozen=True)
class WindowUse:
    """The pool's use of the rate limit right now.

    ``cooldown_asked_s`` is what the last capped 429 asked for (0 when none is): the pool
    then waits out ``cooldown_s`` and sends one probe before it resumes.
    """

    used: int
    capacity: int
    window_s: float
    cooldown_s: float
    breaker_open: bool
    cooldown_asked_s: float = 0.0


def limiter_window(rate_per_s: float, margin: float) -> tuple[int, int]:
    """Translate a rate into (requests per window, window in ms) for a sliding log.

    A sliding log of ``n`` requests per window ``w`` keeps every one-second window at or
    under the rate only when ``w`` is at least a second and ``n`` at most the rate. So a
    rate of 1 or more allows ``floor(rate)`` requests per second (7.5/s runs at 7/s), and a
    rate under 1 allows one request per ``1/rate`` seconds. The window is widened by
    ``margin`` to absorb the jitter between taking a slot and the request reaching the API.
    Raises ValueError for a rate that is not positive and finite, or a bad margin.
    """
    if not math.isfinite(rate_per_s) or rate_per_s <= 0:
        raise ValueError("rate must be a positive number")
    if not 0 <= margin < 1:
        raise ValueError("margin must be in [0, 1)")
    if rate_per_s < 1 / 86_400:
        raise ValueError("rate is too small: less than one request a day")
    # Exact decimal arithmetic: a float window rounded down by a hair would admit more than
    # the rate, and one rounded up by a hair would cost a millisecond for nothing.
    if rate_per_s >= 1:
        per_window, seconds = math.floor(rate_per_s), Fraction(1)
    else:
        per_window, seconds = 1, 1 / Fraction(repr(rate_per_s))
    return per_window, math.ceil(seconds * 1000 * (1 + Fraction(repr(margin))))


def capped_asked_s(raw: bytes | str | None) -> float:
    """What a capped cooldown's marker says the server asked for, in seconds (0: none)."""
    if raw is None:
        return 0.0
    try:
        return max(0.0, float(json.loads(raw)["asked_ms"]) / 1000)
    except (ValueError, TypeError, KeyError):
        return 0.0
