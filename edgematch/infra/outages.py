"""Riding out a Redis or broker outage without spending a task's attempts.

First inside the task: :func:`ride_out` runs the work again while it fails only because
Redis or the broker is unavailable, for up to ``RIDE_OUT_S`` — a restart, or a Sentinel
failover (5 s and a moment with ``deploy/redis/sentinel.conf``), is over by then. Handing
the retry to the broker instead would need the broker, which in the default single-Redis
setup is the Redis that is away: Celery then drops the retry and the message waits in
kombu's unacknowledged set for the visibility timeout (an hour).

Then through the broker, with the decisions below (pure). A task that fails because Redis
or the broker cannot be reached (``RedisUnavailable``, ``BrokerUnavailable``) has nothing
wrong with it, and an outage can last a minute or two: ``EDGEMATCH_MAX_ATTEMPTS`` (8,
with backoff from 1 s) would be spent in about that time, turning work into
``retries_exhausted`` dead letters.
So such a retry is *free*: Celery still counts it in ``request.retries`` (deliveries are
counted per retry, recovery/poison.py), and the message's headers count it again
(``OUTAGE_RETRIES``), so that the failure policy's attempt is
``retries + 1 - outage retries``.

Free, but not for ever: a task whose outage-class failure goes on for ``OUTAGE_BUDGET_S``
(``OUTAGE_SINCE`` is the first failure of the current run of them) is one that fails
alone — a command that always times out, say — and its retries count again, so it ends in
the dead letters like any other. Free retries wait at most ``OUTAGE_RETRY_CAP_S``: an
outage of the shared Redis ends for every task at once, and a task should not then sit
out a five-minute backoff for nothing.

Every time here is in seconds; ``now`` is ``time.time()`` (the headers travel between
hosts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from edgematch.infra.backoff import compute_backoff
from edgematch.infra.redisclient import BrokerUnavailable, RedisUnavailable

T = TypeVar("T")

__all__ = [
    "OUTAGE_BUDGET_S",
    "OUTAGE_RETRIES",
    "OUTAGE_RETRY_CAP_S",
    "OUTAGE_SINCE",
    "RIDE_OUT_S",
    "FreeRetry",
    "attempt",
    "free_retry",
    "ride_out",
    "streak_over",
]

#: Message header: retries an outage caused (not counted against the attempts).
OUTAGE_RETRIES: Final = "edgematch_outage_retries"
#: Message header: when the current run of outage failures began (epoch seconds).
OUTAGE_SINCE: Final = "edgematch_outage_since"
#: How long a task's outage retries stay free: far longer than a restart or a failover,
#: short enough that a task failing alone still reaches its dead letter the same day.
OUTAGE_BUDGET_S: Final = 1800.0
#: The longest wait between two free retries.
OUTAGE_RETRY_CAP_S: Final = 30.0
#: How long a task waits inside itself for Redis or the broker to come back.
RIDE_OUT_S: Final = 20.0
#: What counts as an outage: Redis or the broker unavailable, nothing wrong with the work.
OUTAGES: Final = (RedisUnavailable, BrokerUnavailable)


@dataclass(frozen=True)
class FreeRetry:
    """Retry after ``countdown_s`` with these ``headers`` on the message."""

    countdown_s: float
    headers: dict[str, Any]


def _number(headers: Mapping[str, Any], name: str) -> float | None:
    value = headers.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None  # absent, or not ours to trust: treated as absent
    return float(value)


def attempt(retries: int, headers: Mapping[str, Any] | None) -> int:
    """The attempt this delivery is, counting only failures that were the task's own:
    ``retries + 1`` less the free retries the headers record (at least 1)."""
    free = int(_number(headers or {}, OUTAGE_RETRIES) or 0)
    return max(1, retries + 1 - max(0, free))


def free_retry(
    headers: Mapping[str, Any] | None, *, now: float, base_s: float, cap_s: float
) -> FreeRetry | None:
    """The free retry for an outage failure now, or None once the outage has gone on
    for ``OUTAGE_BUDGET_S`` (the failure then counts like any transient one).

    ``base_s``/``cap_s`` are the task backoff's; the wait is capped at
    ``OUTAGE_RETRY_CAP_S`` as well. Raises ValueError as ``compute_backoff`` does.
    """
    old = dict(headers or {})
    since = _number(old, OUTAGE_SINCE)
    if since is None or since > now:
        since = now
    if now - since >= OUTAGE_BUDGET_S:
        return None
    free = int(_number(old, OUTAGE_RETRIES) or 0) + 1
    delay = compute_backoff(free, base_s=base_s, cap_s=min(cap_s, OUTAGE_RETRY_CAP_S))
    return FreeRetry(countdown_s=delay, headers={**old, OUTAGE_RETRIES: free, OUTAGE_SINCE: since})


def streak_over(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers for a retry after a failure that was not an outage: the free retries
    so far stay free, and the next outage starts its own budget."""
    kept = dict(headers or {})
    kept.pop(OUTAGE_SINCE, None)
    return kept


def ride_out(
    work: Callable[[], T],
    *,
    for_s: float,
    log: Any,
    event: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``work()``, run again while it raises an outage error, for up to ``for_s`` seconds
    (waits 0.25 s, doubling to 2 s); then the error goes through. ``event`` is logged
    once with the error when the first wait begins.

    ``work`` must be safe to run again from the start: every step is idempotent.
    """
    until = clock() + for_s
    delay_s, waited = 0.25, False
    while True:
        try:
            return work()
        except OUTAGES as exc:
            if clock() + delay_s > until:
                raise
            if not waited:
                log.warning(event, error=str(exc), for_s=for_s)
                waited = True
            sleep(delay_s)
            delay_s = min(2 * delay_s, 2.0)
