"""The broker transport a worker connects with, and the rule that says its consumer stalled."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import redis
from celery import Celery
from hypothesis import given
from hypothesis import strategies as st
from kombu import Connection

from edgematch.config.broker import (
    STALL_CHECKS,
    FetchWatch,
    RedisChannel,
    SentinelRedisChannel,
    SettlingQoS,
    transport_for,
)
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings


def _connection(broker_url: str, **settings: str) -> Any:
    env = {"EDGEMATCH_BROKER_URL": broker_url, "EDGEMATCH_SUBSCRIPTION_KEY": "test-key-0123"}
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(Settings.from_env({**env, **settings})))
    return app.connection_for_write()


@pytest.mark.parametrize(
    ("url", "channel"),
    [
        ("redis://:pw@redis.internal:6380/2", RedisChannel),
        ("rediss://:pw@redis.internal:6380/2", RedisChannel),
        ("sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26379", SentinelRedisChannel),
    ],
)
def test_every_redis_broker_url_gets_the_settling_transport(
    url: str, channel: type[RedisChannel | SentinelRedisChannel]
) -> None:
    """redis://, rediss:// and sentinel:// workers use the transport whose acknowledgements
    outlive an outage, reading the URL exactly as kombu's own transport does."""
    extra = {"EDGEMATCH_SENTINEL_MASTER": "edgematch"} if url.startswith("sentinel") else {}
    with _connection(url, **extra) as conn:
        assert conn.transport.Channel is channel
        assert conn.transport.Channel.QoS is SettlingQoS
        assert conn.transport.driver_type == "redis"  # Celery's disable_prefetch needs it
        kombus = Connection(url)  # what kombu's own transport makes of the URL
        assert _where(conn) == _where(kombus)
        assert _where(conn)[2:4] == ("pw", "2")


def _where(conn: Any) -> tuple[Any, ...]:
    return (conn.hostname, conn.port, conn.password, conn.virtual_host, list(conn.alt))


def test_transport_for_names_a_class_kombu_can_load() -> None:
    """The names given to Celery are this module's classes. Pure."""
    assert transport_for("redis://h:6379/0") == "edgematch.config.broker:Transport"
    assert transport_for("rediss://h:6380/0") == "edgematch.config.broker:Transport"
    assert transport_for("sentinel://h:26379") == "edgematch.config.broker:SentinelTransport"


def test_a_consumer_fetching_is_never_stalled() -> None:
    """One fetch between two checks keeps the watch quiet, however long it runs."""
    watch = FetchWatch()
    assert not any(watch.observe(n, free=True) for n in range(1000))


def test_a_busy_consumer_is_never_stalled() -> None:
    """Every process busy: not fetching is what it should do."""
    watch = FetchWatch()
    assert not any(watch.observe(7, free=False) for _ in range(1000))


def test_a_free_consumer_that_stopped_fetching_is_stalled_after_the_checks() -> None:
    """A process free and the same count ``STALL_CHECKS`` times after the first look."""
    watch = FetchWatch()
    seen = [watch.observe(42, free=True) for _ in range(STALL_CHECKS + 1)]
    assert seen == [False] * STALL_CHECKS + [True]


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=60))
def test_stalled_only_after_enough_quiet_checks_in_a_row(steps: list[tuple[int, bool]]) -> None:
    """Property: the watch says stalled exactly when the last ``STALL_CHECKS`` observations
    each found a process free and the count unchanged since the one before."""
    watch = FetchWatch()
    fetches = 0
    history: list[tuple[int, bool]] = []
    for more, free in steps:
        fetches += more
        history.append((fetches, free))
        said = watch.observe(fetches, free=free)
        recent = history[-(STALL_CHECKS + 1) :]
        quiet = len(recent) == STALL_CHECKS + 1 and all(
            free_now and count == before
            for (before, _), (count, free_now) in itertools.pairwise(recent)
        )
        assert said == quiet


def _bare_channel() -> Any:
    """A Redis channel over a pool that has connected nowhere (no Redis needed)."""
    channel: Any = RedisChannel.__new__(RedisChannel)
    channel._pool = redis.ConnectionPool(host="redis.invalid")
    channel.Client = redis.Redis  # what kombu's __init__ sets, after connecting
    return channel


def test_channel_keeps_one_client_per_pool() -> None:
    """Publishes and acknowledgements through one channel share one Redis client over its
    pool; a new pool (after a fork or a disconnect) gets a new client over the new pool."""
    channel = _bare_channel()
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as again:
        assert first is again
        assert first.connection_pool is channel._pool
    channel._pool = redis.ConnectionPool(host="redis.invalid")
    with channel.conn_or_acquire() as after:
        assert after is not first
        assert after.connection_pool is channel._pool


def test_channel_yields_a_client_it_is_given() -> None:
    """A client passed in (kombu's own transactions) is used as it is."""
    channel = _bare_channel()
    given_client = redis.Redis(connection_pool=redis.ConnectionPool(host="redis.invalid"))
    with channel.conn_or_acquire(given_client) as client:
        assert client is given_client
