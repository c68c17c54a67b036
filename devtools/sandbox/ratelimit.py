"""The sandbox's rate limit: a sliding-window log, as Azure API Management enforces it.

A request is admitted when fewer than ``capacity`` accepted requests arrived in the last
``window_s`` seconds; refused requests are not logged, so a client hammering through 429s
does not push its own next slot further away. Windows are half-open: an accepted request
at time ``t`` stops counting at exactly ``t + window_s``.

For ``rate >= 1`` the window is one second and the capacity ``floor(rate)``; for
``0 < rate < 1`` the capacity is one request per ``1 / rate`` seconds, so no one-second
window ever holds more than ``rate`` requests rounded up. ``rate <= 0`` is unlimited.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Decision",
    "SlidingWindowLimiter",
    "max_in_window",
    "retry_after_header",
    "window_for_rate",
]


def window_for_rate(rate: float) -> tuple[int, float] | None:
    """Return ``(capacity, window_s)`` for a rate in requests per second, None if unlimited."""
    if rate <= 0 or math.isinf(rate):
        return None
    if math.isnan(rate):
        raise ValueError("rate must be a number")
    if rate >= 1:
        return math.floor(rate), 1.0
    return 1, 1.0 / rate


def retry_after_header(wait_s: float) -> int:
    """Seconds for a ``Retry-After`` header: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait_s))


@dataclass(frozen=True)
class Decision:
    """The limiter's answer: admitted, or refused with the exact wait until a slot frees."""

    admitted: bool
    wait_s: float = 0.0

    @property
    def retry_after(self) -> int:
        return retry_after_header(self.wait_s)


class SlidingWindowLimiter:
    """Admit at most ``capacity`` requests per ``window_s`` seconds. Thread-safe."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._log: deque[float] = deque()
        self._limits = window_for_rate(rate)
        self._rate = rate

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate; the log of already accepted requests is kept and still counts."""
        limits = window_for_rate(rate)
        with self._lock:
            self._rate, self._limits = rate, limits
            if limits is None:
                self._log.clear()

    def try_acquire(self, now: float | None = None) -> Decision:
        """Admit and log one request at ``now`` (default: the clock), or say how long to wait."""
        with self._lock:
            if now is None:
                now = self._clock()
            if self._limits is None:
                return Decision(admitted=True)
            capacity, window_s = self._limits
            log = self._log
            while log and now - log[0] >= window_s:
                log.popleft()
            if len(log) < capacity:
                log.append(now)
                return Decision(admitted=True)
            # After a runtime rate decrease the log may hold more than ``capacity`` entries;
            # the request fits once all but ``capacity - 1`` of them have expired.
            freeing = log[len(log) - capacity]
            # Written as window minus age, which stays in (0, window_s] under rounding.
            return Decision(admitted=False, wait_s=window_s - (now - freeing))


def max_in_window(timestamps: Sequence[float], window_s: float = 1.0) -> int:
    """The most timestamps that fall in any half-open window ``(t - window_s, t]``.

    ``timestamps`` must be sorted. The busiest window can always be taken to end on one of
    the timestamps, so a two-pointer sweep over them is exact.
    """
    best = 0
    start = 0
    for end, t in enumerate(timestamps):
        while t - timestamps[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best
