"""edgematch.pipeline.webhook.enqueuer: admission under the mark, group commit, refusals.

The publishing thread runs against plain functions here (no Redis, no broker); the real
ones are in tests/integration/test_webhook_http.py and tests/e2e/test_webhook_intake.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.infra.redisclient import BrokerUnavailable, RedisUnavailable
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.webhook.admission import admitted
from edgematch.pipeline.webhook.enqueuer import ENQUEUED, Enqueuer, Outcome, Work

MARK = 100


def obj(n: int) -> ObjectCreated:
    return ObjectCreated(
        bucket="uploads",
        key=f"k{n}.bin",
        version_id=None,
        etag="e",
        size=924,
        event_time=None,
        event_name="ObjectCreated:Put",
        sequencer=None,
        source="minio",
    )


def work(n: int, size: int = 1) -> Work:
    return [(obj(n * 100 + i), f"c{n}-{i}") for i in range(size)]


@pytest.mark.parametrize(
    ("backlog", "sizes", "fit"),
    [
        (0, [1] * 12, 12),  # twelve requests of one object: two tasks
        (0, [1] * 101, 100),  # ten full tasks reach the mark
        (90, [1, 1], 2),
        (90, [5, 5, 1], 2),
        (91, [1], 0),  # a task would pass the mark
        (0, [3, 3, 3, 1], 4),  # together they make one task of ten
        (80, [10, 10, 1], 2),
        (0, [101], 0),  # a request larger than the room is refused whole
        (100, [1], 0),
        (0, [], 0),
    ],
)
def test_admitted_counts_tasks_as_the_live_lane_does(
    backlog: int, sizes: list[int], fit: int
) -> None:
    """Requests fit in order while their tasks (of up to ten objects) keep under the mark."""
    assert admitted(backlog, MARK, sizes) == fit


@given(
    backlog=st.integers(0, 200),
    sizes=st.lists(st.integers(1, 25), max_size=30),
)
def test_admission_never_passes_the_mark(backlog: int, sizes: list[int]) -> None:
    """What is admitted never takes the backlog over the mark, and a refusal is earned."""
    fit = admitted(backlog, MARK, sizes)
    objects = sum(sizes[:fit])
    tasks = -(-objects // 10)
    assert backlog + tasks * 10 <= MARK or fit == 0
    if fit < len(sizes):
        more = -(-(objects + sizes[fit]) // 10)
        assert backlog + more * 10 > MARK


class Broker:
    """What the thread publishes to, and the backlog it reports; can fail on demand."""

    def __init__(self) -> None:
        self.published: list[list[str]] = []
        self.backlog = 0
        self.fail_backlog: Exception | None = None
        self.fail_publish: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()

    def enqueue(self, items: Work) -> None:
        self.inside.set()
        self.gate.wait(10)
        if self.fail_publish is not None:
            raise self.fail_publish
        self.published.append([cid for _, cid in items])
        self.backlog += 10 * -(-len(items) // 10)

    def read(self) -> int:
        if self.fail_backlog is not None:
            raise self.fail_backlog
        return self.backlog


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def enqueuer(broker: Broker) -> Iterator[Enqueuer]:
    running = Enqueuer(enqueue=broker.enqueue, read_backlog=broker.read, high_water=MARK).start()
    yield running
    running.stop()


def outcomes(futures: Sequence[object]) -> list[Outcome]:
    return [f.result(timeout=10) for f in futures]  # type: ignore[attr-defined]


def test_work_is_published_before_it_is_accepted(broker: Broker, enqueuer: Enqueuer) -> None:
    """The future resolves after the publish returned, with every correlation id in it."""
    assert enqueuer.submit(work(1, 3)).result(timeout=10) == ENQUEUED
    assert broker.published == [["c1-0", "c1-1", "c1-2"]]
    assert enqueuer.backends_ok


def test_waiting_requests_share_one_publish(broker: Broker, enqueuer: Enqueuer) -> None:
    """Requests that arrive while a publish runs go out together in the next one."""
    broker.gate.clear()
    first = enqueuer.submit(work(0))
    assert broker.inside.wait(10)
    waiting = [enqueuer.submit(work(n)) for n in range(1, 6)]
    broker.gate.set()
    assert outcomes([first, *waiting]) == [ENQUEUED] * 6
    assert sorted(len(p) for p in broker.published) == [1, 5]


def test_past_the_mark_requests_are_refused(broker: Broker, enqueuer: Enqueuer) -> None:
    """At the high-water mark nothing is published and the answer says why."""
    broker.backlog = MARK - 10
    assert enqueuer.submit(work(1)).result(timeout=10) == ENQUEUED
    assert enqueuer.submit(work(2)).result(timeout=10) == Outcome(False, "high_water")
    assert len(broker.published) == 1


@pytest.mark.parametrize("where", ["backlog", "publish"])
def test_redis_or_broker_away_refuses_without_losing_the_thread(
    broker: Broker, enqueuer: Enqueuer, where: str
) -> None:
    """Unreachable Redis or broker: refused as unavailable; accepted again once back."""
    if where == "backlog":
        broker.fail_backlog = RedisUnavailable("redis unavailable: ConnectionError")
    else:
        broker.fail_publish = BrokerUnavailable("broker unavailable: OperationalError")
    assert enqueuer.submit(work(1)).result(timeout=10) == Outcome(False, "unavailable")
    assert not broker.published
    broker.fail_backlog = broker.fail_publish = None
    assert enqueuer.submit(work(2)).result(timeout=10) == ENQUEUED
    assert enqueuer.alive()


def test_a_bug_refuses_and_is_not_taken_for_an_outage(broker: Broker, enqueuer: Enqueuer) -> None:
    """An unexpected error refuses the request (the sender keeps it); the thread goes on."""
    broker.fail_publish = KeyError("a bug")
    assert enqueuer.submit(work(1)).result(timeout=10) == Outcome(False, "unavailable")
    broker.fail_publish = None
    assert enqueuer.submit(work(2)).result(timeout=10) == ENQUEUED


def test_a_request_that_stopped_waiting_is_not_published(
    broker: Broker, enqueuer: Enqueuer
) -> None:
    """A cancelled future (the request timed out and was answered 503) publishes nothing."""
    broker.gate.clear()
    first = enqueuer.submit(work(0))
    assert broker.inside.wait(10)
    gone = enqueuer.submit(work(1))
    assert gone.cancel()
    broker.gate.set()
    assert first.result(timeout=10) == ENQUEUED
    assert enqueuer.submit(work(2)).result(timeout=10) == ENQUEUED
    assert ["c1-0"] not in broker.published


def test_pending_requests_are_bounded(broker: Broker) -> None:
    """Past max_pending a request is refused at once, as busy."""
    broker.gate.clear()
    small = Enqueuer(
        enqueue=broker.enqueue, read_backlog=broker.read, high_water=MARK, max_pending=2
    ).start()
    try:
        first = small.submit(work(0))
        assert broker.inside.wait(10)
        # The thread holds the first in its publish; two wait; the next is refused.
        futures = [small.submit(work(n)) for n in range(1, 4)]
        refused = [f for f in futures if f.done()]
        assert [f.result() for f in refused] == [Outcome(False, "busy")]
        broker.gate.set()
        assert first.result(timeout=10) == ENQUEUED
    finally:
        broker.gate.set()
        small.stop()


def test_stop_refuses_what_is_still_pending(broker: Broker) -> None:
    """After stop(), pending and new requests are answered unavailable, never left waiting."""
    stopped = Enqueuer(enqueue=broker.enqueue, read_backlog=broker.read, high_water=MARK)
    pending = stopped.submit(work(1))  # never started
    stopped.stop(timeout_s=0.1)
    assert pending.result(timeout=1) == Outcome(False, "unavailable")
    assert stopped.submit(work(2)).result(timeout=1) == Outcome(False, "unavailable")
