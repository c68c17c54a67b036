"""Acknowledgements during a broker outage, against a real redis-server that stops and
comes back (AOF on, as deploy/redis/redis.conf runs it).

A consumer holding as many deliveries as its prefetch limit acknowledges them while Redis
is down: with the worker's transport (config/broker.py) it may fetch again at once, and
once Redis is back the deliveries leave kombu's unacked hash and index. With kombu's own
transport the same acknowledgements keep the consumer's credit for good — the stall of a
worker whose tasks ended during a Redis restart.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.worker import state as worker_state
from kombu import Connection, Consumer, Queue

from devtools.devstack import RedisServer
from edgematch.config import broker
from edgematch.config.broker import STALL_CHECKS
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.names import unacked_index_key, unacked_key
from edgematch.tasks.lifecycle import EXIT_STALLED, ConsumerWatch

pytestmark = pytest.mark.integration

QUEUE = "edgematch.ingest"
#: The prefetch limit of a worker of two processes (worker_disable_prefetch).
PREFETCH = 2


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server of this test alone, which the test stops and starts."""
    srv = RedisServer(appendonly=True).start()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def _nothing_left_unsettled() -> Iterator[None]:
    """The list of unsettled deliveries is the process's: each test starts with it empty."""
    yield
    for tag, _, _ in broker.unsettled.oldest_first():
        broker.unsettled.discard(tag)


def _worker_connection(server: RedisServer) -> Any:
    """The broker connection a worker makes, from its Celery configuration."""
    settings = Settings.from_env(
        {"EDGEMATCH_BROKER_URL": server.url, "EDGEMATCH_SUBSCRIPTION_KEY": "test-key-0123"}
    )
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(settings))
    return app.connection_for_read()


def _admin(server: RedisServer) -> redis.Redis:
    # A plain client on purpose: it looks at what kombu left in the server.
    return redis.Redis(port=server.port, socket_timeout=5)


def _take(conn: Any, count: int) -> tuple[Any, list[Any]]:
    """Publish ``count`` messages and take them all on one channel, as a worker's consumer
    with a prefetch limit of ``count`` does. Returns the channel and the messages."""
    queue = Queue(QUEUE, routing_key=QUEUE)
    with conn.Producer() as producer:
        for n in range(count):
            producer.publish({"n": n}, routing_key=QUEUE, declare=[queue], serializer="json")
    channel = conn.channel()
    channel.basic_qos(0, count, False)
    taken: list[Any] = []
    consumer = Consumer(
        channel, [queue], callbacks=[lambda _, message: taken.append(message)], accept=["json"]
    )
    consumer.consume()
    for _ in range(20):
        if len(taken) == count:
            break
        conn.drain_events(timeout=1)
    assert len(taken) == count
    return channel, taken


def test_acks_redis_refused_give_their_credit_back_and_are_settled_once_it_returns(
    server: RedisServer,
) -> None:
    """Redis down: the acks do not raise, the consumer may fetch again; Redis back: both
    deliveries leave kombu's unacked hash and index, and nothing is queued again."""
    ns = Settings().namespace
    with _worker_connection(server) as conn:
        channel, taken = _take(conn, PREFETCH)
        assert not channel.qos.can_consume()
        admin = _admin(server)
        assert admin.hlen(unacked_key(ns)) == PREFETCH

        server.stop()
        for message in taken:
            message.ack()
        assert channel.qos.can_consume()
        assert len(broker.unsettled) == PREFETCH

        server.start()
        assert broker.settle(channel.qos) == 0
        assert admin.hlen(unacked_key(ns)) == 0
        assert admin.zcard(unacked_index_key(ns)) == 0
        assert admin.llen(QUEUE) == 0
        admin.close()


def test_a_requeue_redis_refused_is_done_once_it_returns(server: RedisServer) -> None:
    """A rejection with requeue while Redis is down puts the message back at the head of
    its queue once Redis is back, and only once."""
    ns = Settings().namespace
    with _worker_connection(server) as conn:
        channel, taken = _take(conn, 1)
        server.stop()
        taken[0].reject(requeue=True)
        assert channel.qos.can_consume()

        server.start()
        assert broker.settle(channel.qos) == 0
        assert broker.settle(channel.qos) == 0
        admin = _admin(server)
        assert admin.llen(QUEUE) == 1
        assert admin.hlen(unacked_key(ns)) == 0
        admin.close()


def test_a_later_ack_settles_what_redis_refused_before(server: RedisServer) -> None:
    """Without waiting for the event loop's timer: the first ack Redis takes after an
    outage also settles those it refused."""
    ns = Settings().namespace
    with _worker_connection(server) as conn:
        _, taken = _take(conn, PREFETCH)
        server.stop()
        taken[0].ack()
        server.start()
        taken[1].ack()
        assert len(broker.unsettled) == 0
        admin = _admin(server)
        assert admin.hlen(unacked_key(ns)) == 0
        admin.close()


def test_kombus_own_transport_keeps_the_credit_of_an_ack_redis_refused(
    server: RedisServer,
) -> None:
    """The library behaviour config/broker.py works around: with kombu's own Redis
    transport, an ack that fails leaves its delivery counted against the prefetch limit,
    and a consumer whose every delivery failed so never fetches again. (If this starts to
    fail, kombu has fixed it and the settling transport may go.)"""
    with Connection(server.url) as conn:
        channel, taken = _take(conn, PREFETCH)
        server.stop()
        for message in taken:
            with pytest.raises(conn.connection_errors):
                message.ack()
        server.start()
        assert not channel.qos.can_consume()


def _consumer(channel: Any, processes: int) -> SimpleNamespace:
    """Celery's consumer as ConsumerWatch reads it: its task channel, its pool's size."""
    return SimpleNamespace(
        task_consumer=SimpleNamespace(channel=channel),
        controller=SimpleNamespace(max_concurrency=None),
        pool=SimpleNamespace(num_processes=processes),
        timer=None,
    )


@pytest.fixture
def should_stop(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Celery's shutdown request, which the watch sets, is this test's alone."""
    monkeypatch.setattr(worker_state, "should_stop", None)
    yield


def test_a_consumer_that_stops_fetching_with_a_process_free_stops_its_worker(
    server: RedisServer, should_stop: None
) -> None:
    """A consumer with a pool process free whose channel sends no fetch for STALL_CHECKS
    checks asks Celery for a warm shutdown with EXIT_STALLED; while it fetches, never.
    The channel and its fetches are real; the consumer around it is a stand-in, since the
    transport no longer produces the stall it is the last resort for."""
    with _worker_connection(server) as conn:
        queue = Queue(QUEUE, routing_key=QUEUE)
        channel = conn.channel()
        Consumer(channel, [queue], accept=["json"]).consume()
        consumer = _consumer(channel, processes=2)
        watch = ConsumerWatch(consumer)

        for _ in range(STALL_CHECKS + 2):  # idle, so fetching: a BRPOP a second
            sent = channel.fetches
            deadline = time.monotonic() + 10
            while channel.fetches == sent and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    conn.drain_events(timeout=0.2)
            watch.check(consumer)
        assert worker_state.should_stop is None
        assert channel.fetches >= STALL_CHECKS + 2

        for _ in range(STALL_CHECKS - 1):  # no fetch any more, both processes free
            watch.check(consumer)
        assert worker_state.should_stop is None
        watch.check(consumer)
        assert worker_state.should_stop == EXIT_STALLED


def test_a_busy_consumer_that_does_not_fetch_is_left_alone(
    server: RedisServer, should_stop: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pool process holds a task: not fetching is right, however long it lasts."""
    monkeypatch.setattr(worker_state, "reserved_requests", {"a", "b"})
    with _worker_connection(server) as conn:
        channel = conn.channel()
        consumer = _consumer(channel, processes=2)
        watch = ConsumerWatch(consumer)
        for _ in range(5 * STALL_CHECKS):
            watch.check(consumer)
        assert worker_state.should_stop is None
