"""Unit tests for edgematch.infra.outages (pure): a Redis or broker outage spends no attempts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.errors import TransientError
from edgematch.infra.backoff import compute_backoff
from edgematch.infra.outages import (
    OUTAGE_BUDGET_S,
    OUTAGE_RETRIES,
    OUTAGE_RETRY_CAP_S,
    OUTAGE_SINCE,
    attempt,
    free_retry,
    ride_out,
    streak_over,
)
from edgematch.infra.redisclient import BrokerUnavailable, RedisUnavailable

BASE_S, CAP_S, MAX_ATTEMPTS = 1.0, 300.0, 8  # the defaults (config/settings.py)


def _ride(outage_s: float, *, start: float = 1_000_000.0) -> tuple[int, dict[str, object]]:
    """Fail with an outage, retry as told, until ``outage_s`` has passed; return the
    retries Celery counted and the headers the last retry carries."""
    now, retries = start, 0
    headers: dict[str, object] = {}
    while now - start < outage_s:
        free = free_retry(headers, now=now, base_s=BASE_S, cap_s=CAP_S)
        assert free is not None, f"outage retries stopped being free after {now - start} s"
        retries, headers, now = retries + 1, free.headers, now + free.countdown_s
    return retries, headers


def test_a_two_minute_outage_spends_no_attempt() -> None:
    """Retried through two minutes of outage (many more retries than the 8 attempts),
    the next delivery is still the task's first attempt."""
    retries, headers = _ride(120.0)
    assert retries > MAX_ATTEMPTS
    assert attempt(retries, headers) == 1


def test_free_retries_wait_at_most_the_outage_cap() -> None:
    """However long the outage, a free retry waits at most OUTAGE_RETRY_CAP_S (30 s), not
    the task backoff's cap of five minutes."""
    headers: dict[str, object] = {}
    for n in range(1, 40):
        free = free_retry(headers, now=1000.0 + n, base_s=BASE_S, cap_s=CAP_S)
        assert free is not None
        assert free.countdown_s <= OUTAGE_RETRY_CAP_S
        headers = free.headers
    assert headers[OUTAGE_RETRIES] == 39


def test_the_free_retries_end_after_the_budget() -> None:
    """An outage-class failure that lasts OUTAGE_BUDGET_S (a command failing alone) counts
    again, so the task still reaches its dead letter."""
    start = 5000.0
    first = free_retry({}, now=start, base_s=BASE_S, cap_s=CAP_S)
    assert first is not None and first.headers[OUTAGE_SINCE] == start
    assert free_retry(first.headers, now=start + OUTAGE_BUDGET_S - 1, base_s=1, cap_s=9) is not None
    assert free_retry(first.headers, now=start + OUTAGE_BUDGET_S, base_s=1, cap_s=9) is None


def test_a_failure_of_the_tasks_own_ends_the_streak_but_keeps_the_free_retries() -> None:
    """After a failure that was not an outage, the next outage starts a fresh budget, and
    the free retries so far still do not count."""
    retries, headers = _ride(60.0)
    after = streak_over(headers)
    assert OUTAGE_SINCE not in after and after[OUTAGE_RETRIES] == retries
    # The task's own failure was counted by Celery: retries + 1, one attempt spent.
    assert attempt(retries + 1, after) == 2
    later = free_retry(after, now=9_999_999.0, base_s=BASE_S, cap_s=CAP_S)
    assert later is not None and later.headers[OUTAGE_SINCE] == 9_999_999.0


def test_without_headers_every_retry_counts() -> None:
    """A message without our headers (a first delivery, a journal republish) counts as
    before: the attempt is retries + 1."""
    assert attempt(0, None) == 1
    assert attempt(6, {}) == 7
    assert attempt(3, {"unrelated": "x"}) == 4


@given(
    retries=st.integers(min_value=0, max_value=10_000),
    free=st.one_of(
        st.none(), st.integers(min_value=-5, max_value=20_000), st.text(), st.booleans()
    ),
)
def test_attempt_is_never_below_one_whatever_the_headers(retries: int, free: object) -> None:
    """Headers are data from the broker: a missing, negative or malformed count never makes
    the attempt less than 1 nor more than retries + 1."""
    value = attempt(retries, {OUTAGE_RETRIES: free})
    assert 1 <= value <= retries + 1


def test_a_since_in_the_future_starts_the_budget_now() -> None:
    """A clock skewed between hosts cannot make the budget last forever."""
    free = free_retry({OUTAGE_SINCE: 9e18}, now=100.0, base_s=BASE_S, cap_s=CAP_S)
    assert free is not None and free.headers[OUTAGE_SINCE] == 100.0


def test_free_retry_backoff_is_the_task_backoff_capped() -> None:
    """The n-th free retry waits like the n-th ordinary one, capped lower."""
    headers: dict[str, object] = {OUTAGE_RETRIES: 2}
    free = free_retry(headers, now=0.0, base_s=BASE_S, cap_s=CAP_S)
    assert free is not None
    ceiling = compute_backoff(3, base_s=BASE_S, cap_s=OUTAGE_RETRY_CAP_S, jitter=0.0)
    assert ceiling / 2 <= free.countdown_s <= ceiling


class _Clock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def warning(self, event: str, **_: object) -> None:
        self.events.append(event)


def test_ride_out_runs_the_work_again_until_the_outage_is_over() -> None:
    """An outage shorter than the ride-out costs waits, not a failure; it is logged once."""
    clock, log = _Clock(), _Log()
    failures = [RedisUnavailable("down"), BrokerUnavailable("down"), RedisUnavailable("down")]

    def work() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    done = ride_out(
        work, for_s=20, log=log, event="x_waits", sleep=clock.sleep, clock=lambda: clock.now
    )
    assert done == "done"
    assert clock.slept == [0.25, 0.5, 1.0]
    assert log.events == ["x_waits"]


def test_ride_out_gives_up_after_its_time_and_lets_other_errors_through() -> None:
    """A longer outage raises after about ``for_s``; any other error is not waited on."""
    clock, log = _Clock(), _Log()

    def down() -> None:
        raise RedisUnavailable("still down")

    with pytest.raises(RedisUnavailable):
        ride_out(down, for_s=20, log=log, event="x", sleep=clock.sleep, clock=lambda: clock.now)
    assert 18 <= clock.now <= 20 and max(clock.slept) == 2.0

    def broken() -> None:
        raise TransientError("S3 answered SlowDown")

    with pytest.raises(TransientError, match="SlowDown"):
        ride_out(broken, for_s=20, log=log, event="x", sleep=clock.sleep, clock=lambda: clock.now)
