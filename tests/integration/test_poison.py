"""Delivery counting and the task failure policy (``guarded``) on a private redis-server.

A worker killed mid-task is simulated by a ``BaseException`` that no ``except Exception``
catches: the task never returns, exactly as when SIGKILL ends the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from devtools.devstack import RedisServer
from edgematch import runtime as runtime_module
from edgematch.config.settings import Settings
from edgematch.errors import EdgematchError, TransientError
from edgematch.infra.outages import (
    OUTAGE_BUDGET_S,
    OUTAGE_RETRIES,
    OUTAGE_RETRY_CAP_S,
    OUTAGE_SINCE,
)
from edgematch.infra.redisclient import redis_client
from edgematch.recovery.locks import exclusive
from edgematch.recovery.poison import Deliveries, counter_ttl_s, is_poison
from edgematch.runtime import Runtime
from edgematch.tasks import base

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


class Killed(BaseException):
    """The worker died with the task: nothing after this point runs."""


class RetryRequested(Exception):
    """What the fake task's retry() returns, to be raised."""

    def __init__(self, countdown: float, headers: dict[str, Any] | None = None) -> None:
        super().__init__(countdown)
        self.countdown = countdown
        self.headers = headers


@dataclass
class Request:
    id: str | None = "task-1"
    retries: int = 0
    headers: dict[str, Any] | None = None


@dataclass
class FakeTask:
    name: str = "edgematch.ingest"
    request: Request = field(default_factory=Request)
    retried: list[float] = field(default_factory=list)

    def retry(
        self,
        exc: Exception | None = None,
        countdown: float = 0.0,
        headers: dict[str, Any] | None = None,
    ) -> RetryRequested:
        self.retried.append(countdown)
        return RetryRequested(countdown, headers)


@pytest.fixture
def rt(
    make_settings: MakeSettings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(max_deliveries=3, namespace="poisontest"))
    monkeypatch.setattr(runtime_module, "_current", runtime)
    yield runtime
    runtime.close()


def _run(task: FakeTask, work: Callable[[], Any], replayed_from: str | None = None) -> Any:
    return base.guarded(
        task,
        "ingest",
        work,
        args={"event": {"bucket": "b", "key": "k.bin"}, "lane": "live"},
        correlation_id="corr-1",
        location=("b", "k.bin"),
        replayed_from=replayed_from,
    )


def _die() -> None:
    raise Killed


@pytest.mark.parametrize(
    ("delivery", "limit", "poison"),
    [(1, 3, False), (3, 3, False), (4, 3, True), (2, 1, True), (1, 1, False)],
)
def test_is_poison(delivery: int, limit: int, poison: bool) -> None:
    """A task is poison on the first start beyond the allowed deliveries, not before."""
    assert is_poison(delivery, limit) is poison


def test_counter_outlives_every_redelivery() -> None:
    """The count lives longer than max_deliveries + 1 visibility timeouts."""
    assert counter_ttl_s(3600, 3) > 4 * 3600


def test_deliveries_count_per_retry(redis_client: redis.Redis) -> None:
    """Starts are counted per (task id, retry number), with a TTL; finish drops the count."""
    deliveries = Deliveries(redis_client, "poisontest", ttl_s=100)
    assert [deliveries.begin("t", 0) for _ in range(3)] == [1, 2, 3]
    assert deliveries.begin("t", 1) == 1  # a retry is a deliberate new delivery
    key = "poisontest:deliveries:t"
    assert 0 < redis_client.ttl(key) <= 100
    deliveries.finish("t")
    assert not redis_client.exists(key)


def test_task_killed_three_times_is_poison(rt: Runtime) -> None:
    """Three starts that die, then the fourth is dead-lettered as poison without running."""
    task = FakeTask()
    for _ in range(3):
        with pytest.raises(Killed):
            _run(task, _die)
    ran: list[int] = []
    assert _run(task, lambda: ran.append(1)) == "dead_lettered"
    assert ran == []
    (entry,) = rt.dead_letters.list()
    assert (entry.reason, entry.attempts, entry.id) == ("poison", 3, "task:task-1")
    assert entry.args == {"event": {"bucket": "b", "key": "k.bin"}, "lane": "live"}
    assert (entry.bucket, entry.key, entry.correlation_id) == ("b", "k.bin", "corr-1")
    assert not rt.redis.exists("poisontest:deliveries:task-1")


def test_finished_task_is_never_poison(rt: Runtime) -> None:
    """A task that completes drops its count: later deliveries of the same id start afresh."""
    task = FakeTask()
    for _ in range(5):
        assert _run(task, lambda: "added") == "added"
    assert rt.dead_letters.count() == 0


def test_replay_success_resolves_its_entry(rt: Runtime) -> None:
    """A replaying task that completes removes the entry it replays."""
    entry = rt.dead_letters.add(
        task="edgematch.ingest", queue="q", reason="retries_exhausted", message="m", args={}
    )
    rt.dead_letters.mark_replaying(entry.id, "task-1")
    assert _run(FakeTask(), lambda: "added", replayed_from=entry.id) == "added"
    assert rt.dead_letters.get(entry.id) is None


def test_replay_failure_updates_its_entry(rt: Runtime) -> None:
    """A replaying task that fails again updates the same entry instead of adding one."""
    entry = rt.dead_letters.add(
        task="edgematch.ingest", queue="q", reason="retries_exhausted", message="m", args={}
    )
    rt.dead_letters.mark_replaying(entry.id, "task-1")

    def fail() -> None:
        raise EdgematchError("still broken")

    assert _run(FakeTask(), fail, replayed_from=entry.id) == "dead_lettered"
    (again,) = rt.dead_letters.list()
    assert (again.id, again.failures, again.state, again.message) == (
        entry.id,
        2,
        "failed",
        "still broken",
    )


def test_full_store_retries_the_task(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the dead letter cannot be written the task is retried later, not acknowledged."""
    monkeypatch.setattr(rt.dead_letters, "max_entries", 0)
    task = FakeTask()

    def fail() -> None:
        raise EdgematchError("broken")

    with pytest.raises(RetryRequested) as info:
        _run(task, fail)
    assert info.value.countdown == rt.settings.backoff_cap_s
    assert rt.dead_letters.count() == 0


def test_transient_error_retries_then_exhausts(rt: Runtime) -> None:
    """A transient error retries below max_attempts and is dead-lettered at it."""
    task = FakeTask()

    def flaky() -> None:
        raise TransientError("S3 answered SlowDown")

    with pytest.raises(RetryRequested):
        _run(task, flaky)
    task.request.retries = rt.settings.max_attempts - 1
    assert _run(task, flaky) == "dead_lettered"
    (entry,) = rt.dead_letters.list()
    assert (entry.reason, entry.attempts) == ("retries_exhausted", rt.settings.max_attempts)


def test_a_task_that_ends_closes_its_journal_entry(rt: Runtime) -> None:
    """Done or dead-lettered, a task's journal entry is closed; killed, it stays open
    (so that the sweep can publish it again if the broker lost it)."""
    for task_id, work in (("done", lambda: None), ("failed", _fail)):
        rt.journal.add(task_id, "edgematch.ingest", {}, "poisontest.ingest")
        _run(FakeTask(request=Request(id=task_id)), work)
    rt.journal.add("killed", "edgematch.ingest", {}, "poisontest.ingest")
    with pytest.raises(Killed):
        _run(FakeTask(request=Request(id="killed")), _die)
    assert rt.journal.pending() == 1
    assert rt.redis.zscore("poisontest:journal:at", "killed") is not None


def _fail() -> None:
    raise ValueError("a bug")


LOCK = "poisontest:lock:quarantine:x"


def test_a_task_meeting_a_held_lock_retries_when_it_runs_out(rt: Runtime) -> None:
    """The retry countdown is the lock's remaining TTL when that is longer than the backoff."""
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with exclusive(rt.redis, LOCK, ttl_s=20.0, what="q"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        task = FakeTask()

        def work() -> None:
            with exclusive(rt.redis, LOCK, ttl_s=20.0, what="quarantine of x"):
                pass

        with pytest.raises(RetryRequested):
            _run(task, work)
        # backoff at the first attempt is at most base 1 s; the lock has ~20 s left.
        assert 15.0 < task.retried[0] <= 20.0
    finally:
        release.set()
        holder.join()
    assert rt.dead_letters.count() == 0


def _redis_down() -> None:
    # A real client of a port nothing listens on: the error Redis being away produces.
    redis_client("redis://127.0.0.1:9/0").get("anything")


def test_a_redis_outage_spends_no_attempt(rt: Runtime) -> None:
    """A task that failed only because Redis was away, retried past max_attempts, is not
    dead-lettered: it retries again, soon, counting the retry as free."""
    since = time.time() - 120  # a two-minute outage so far
    n = rt.settings.max_attempts + 2
    task = FakeTask(request=Request(retries=n, headers={OUTAGE_RETRIES: n, OUTAGE_SINCE: since}))
    with pytest.raises(RetryRequested) as info:
        _run(task, _redis_down)
    assert info.value.countdown <= OUTAGE_RETRY_CAP_S
    assert info.value.headers == {OUTAGE_RETRIES: n + 1, OUTAGE_SINCE: since}
    assert rt.dead_letters.count() == 0


def test_the_tasks_own_failures_still_count_after_an_outage(rt: Runtime) -> None:
    """Free retries do not make a task immortal: its own failures, counted apart from
    them, reach max_attempts and the dead letter."""
    free = 5
    task = FakeTask(request=Request(retries=free, headers={OUTAGE_RETRIES: free}))

    def flaky() -> None:
        raise TransientError("S3 answered SlowDown")

    with pytest.raises(RetryRequested) as info:
        _run(task, flaky)  # attempt 1 of its own
    assert info.value.headers == {OUTAGE_RETRIES: free}
    task.request.retries = free + rt.settings.max_attempts - 1
    assert _run(task, flaky) == "dead_lettered"
    (entry,) = rt.dead_letters.list()
    assert (entry.reason, entry.attempts) == ("retries_exhausted", rt.settings.max_attempts)


def test_an_outage_longer_than_the_budget_counts_again(rt: Runtime) -> None:
    """Past OUTAGE_BUDGET_S of outage-class failures, they count like any transient one
    (a command that fails alone must still end in the dead letters)."""
    since = time.time() - OUTAGE_BUDGET_S - 1
    n = rt.settings.max_attempts + 40
    task = FakeTask(request=Request(retries=n, headers={OUTAGE_RETRIES: 41, OUTAGE_SINCE: since}))
    assert _run(task, _redis_down) == "dead_lettered"
    (entry,) = rt.dead_letters.list()
    assert entry.reason == "retries_exhausted" and "redis unavailable" in entry.message


def test_a_short_redis_outage_is_waited_out_inside_the_task(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis away for 2 s (a restart): the task waits inside itself and completes, with no
    retry handed to the broker — in the single-Redis setup, the Redis that is away."""
    server = RedisServer().start()
    rt = Runtime(make_settings(redis_url=server.url, namespace="ridetest"))
    monkeypatch.setattr(runtime_module, "_current", rt)
    back = threading.Timer(2.0, server.start)
    try:
        rt.redis.ping()
        server.stop()
        back.start()
        task = FakeTask()
        started = time.monotonic()
        assert _run(task, lambda: int(rt.redis.incr("ridetest:work"))) == 1
        assert task.retried == []
        assert 2.0 <= time.monotonic() - started < OUTAGE_RETRY_CAP_S
    finally:
        back.join()
        rt.close()
        server.close()
