"""kombu's Redis transport, with acknowledgements that outlive a Redis outage.

kombu's Redis QoS acknowledges a delivery in two steps: it removes the delivery from Redis
(the ``unacked`` hash and index), then forgets it locally, which gives its prefetch credit
back. When Redis is unreachable at that moment, the first step raises, Celery logs
"Couldn't ack" and carries on, and the second step never happens: the delivery counts
against the channel's prefetch limit for as long as the channel lives. The consumer only
replaces its channel when it sees the connection fail, on a fetch (``BRPOP``), and it sends
no fetch without credit. edgematch's workers take one task per pool process
(``worker_disable_prefetch``, a prefetch of one), so a worker whose tasks ended while Redis
restarted — as many as it has processes — never fetched again: queues full, nothing taken,
no error, its heartbeat fresh (one run in three of the chaos suite's Redis restart). One
ended task fewer, and the worker ran on one process fewer until it was restarted.

So here an acknowledgement or rejection that Redis did not take gives its credit back at
once, and what Redis did not take is done again until Redis takes it (:func:`settle`):
every ``SETTLE_INTERVAL_S`` from the consumer's event loop, and after every acknowledgement
Redis does take. Both are idempotent: removing a delivery twice removes nothing, and a
requeue goes through kombu's own restore, which finds nothing once the delivery has been
restored. The list belongs to the process, not to the channel, since the consumer replaces
its channel when it reconnects; it holds what ended during one outage (bounded by
``MAX_UNSETTLED``), and an entry older than the visibility timeout is given up, kombu's own
restore having taken its delivery by then. Until it is settled, a delivery stays in kombu's
unacked hash without a refresh (its message counts as acknowledged, recovery/unacked.py): if
the worker dies first, the beat's sweep finds its task ended and drops it.

The channel also counts the fetches it sends, and :class:`FetchWatch` says when a consumer
that could take a task has stopped asking for one — whatever the cause, a worker in that
state cannot recover by itself, and tasks/lifecycle.py makes it exit for its supervisor to
restart.

``celery_config`` sets :func:`transport_for` the broker URL as Celery's ``broker_transport``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import urlsplit

import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

from edgematch.config.brokerkind import AMQP_SCHEMES

log = structlog.get_logger(__name__)

#: Seconds between two attempts, from the event loop, to settle what Redis did not take.
SETTLE_INTERVAL_S: Final = 1.0
#: Unsettled deliveries kept at most; past it the oldest is given up (left to the sweep).
MAX_UNSETTLED: Final = 10_000
#: A consumer is stalled when this many checks in a row, ``WATCH_INTERVAL_S`` apart, found
#: a pool process free and no fetch sent since the check before (30 s; an idle consumer
#: sends one a second, kombu's ``brpop_timeout``).
STALL_CHECKS: Final = 6
WATCH_INTERVAL_S: Final = 5.0

#: What Redis (through kombu) raises when it did not take a command. kombu also counts
#: ``KeyError`` as a connection error (a stale file descriptor in its poller); an
#: acknowledgement raising one would be a bug, not an outage.
_BROKER_ERRORS: Final = tuple(
    exc
    for exc in kombu_redis.Transport.connection_errors + kombu_redis.Transport.channel_errors
    if exc is not KeyError
)


class _Unsettled:
    """Deliveries whose acknowledgement (``requeue`` False) or requeue (True) Redis did not
    take, oldest first, with when that happened (monotonic seconds). Thread-safe: Celery
    acknowledges from the event loop, a thread pool from its threads."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, tag: str, *, requeue: bool) -> None:
        with self._lock:
            self._items[tag] = (requeue, time.monotonic())
            while len(self._items) > MAX_UNSETTLED:
                self._items.popitem(last=False)

    def oldest_first(self) -> list[tuple[str, bool, float]]:
        with self._lock:
            return [(tag, requeue, since) for tag, (requeue, since) in self._items.items()]

    def discard(self, tag: str) -> None:
        with self._lock:
            self._items.pop(tag, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


unsettled = _Unsettled()


class SettlingQoS(kombu_redis.QoS):
    """kombu's Redis QoS whose acknowledgements give their credit back even when Redis did
    not take them, and are done again once it does.

    Its records of a delivery are written and removed in one round trip without ``MULTI``
    (two commands, not four, twice a task): the index entry is written first and removed
    last, so a write cut between the two leaves at worst an index entry without its
    message, which kombu's restore drops and the sweep (recovery/unacked.py) passes over;
    a removal Redis did not take is done again (:func:`settle`).
    """

    @contextmanager
    def pipe_or_acquire(self, pipe: Any = None, client: Any = None) -> Iterator[Any]:
        if pipe is not None:
            yield pipe  # kombu's restore, inside its own transaction
            return
        channel: Any = self.channel  # kombu's, undeclared in its stubs
        with channel.conn_or_acquire(client) as conn:
            yield conn.pipeline(transaction=False)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        if pipe is not None:
            return super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[misc]
        with self.pipe_or_acquire() as plain:
            return plain.hdel(self.unacked_key, delivery_tag).zrem(
                self.unacked_index_key, delivery_tag
            )

    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except _BROKER_ERRORS as exc:
            self._defer(delivery_tag, requeue=False, exc=exc)
            return
        if len(unsettled):
            settle(self)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except _BROKER_ERRORS as exc:
            self._defer(delivery_tag, requeue=requeue, exc=exc)

    def _defer(self, delivery_tag: str, *, requeue: bool, exc: BaseException) -> None:
        # What kombu does once Redis has answered: forget the delivery, give its credit back.
        virtual.QoS.ack(self, delivery_tag)
        unsettled.add(delivery_tag, requeue=requeue)
        log.warning(
            "broker_settle_deferred",
            delivery_tag=delivery_tag,
            action="requeue" if requeue else "ack",
            error=type(exc).__name__,
            unsettled=len(unsettled),
        )


def settle(qos: SettlingQoS) -> int:
    """Do again, oldest first, what Redis did not take, through ``qos``'s channel, until
    Redis refuses again. Returns how many are left. Never raises a broker error."""
    pending = unsettled.oldest_first()
    if not pending:
        return 0
    now = time.monotonic()
    done = 0
    for tag, requeue, since in pending:
        if now - since > qos.visibility_timeout:
            # kombu's restore has put the delivery back on its queue, or will now.
            unsettled.discard(tag)
            log.warning("broker_settle_given_up", delivery_tag=tag)
            continue
        try:
            if requeue:
                qos.restore_by_tag(tag, leftmost=True)
            else:
                qos._remove_from_indices(tag).execute()
        except _BROKER_ERRORS:
            break  # still unreachable: the next attempt starts again from the oldest
        unsettled.discard(tag)
        done += 1
    left = len(unsettled)
    if done:
        log.info("broker_settled", settled=done, unsettled=left)
    return left


class FetchingChannel(kombu_redis.Channel):
    """Settles its acknowledgements (:class:`SettlingQoS`), counts the fetches (``BRPOP``)
    it sends, and keeps one Redis client for its connection pool.

    kombu builds a new ``redis.Redis`` (its response callbacks copied, the pool's
    arguments read) for every publish and every acknowledgement; a client holds no
    connection of its own (each command takes one from the pool), so one serves them all,
    from any thread. A new pool (after a fork, or once kombu disconnected the old one) gets
    a new client.
    """

    QoS = SettlingQoS
    #: Fetches sent by this channel since it was opened.
    fetches = 0
    _sync_client: Any = None
    _sync_client_pool: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        if self._sync_client is None or self._sync_client_pool is not pool:
            self._sync_client = self._create_client()  # type: ignore[attr-defined]
            self._sync_client_pool = pool
        yield self._sync_client

    def _brpop_start(self, timeout: float | None = None) -> None:
        self.fetches += 1
        # kombu's own, undeclared in its type stubs: it sends the fetch.
        super()._brpop_start(timeout)  # type: ignore[misc]


class RedisChannel(FetchingChannel):
    """kombu's Redis channel, settling its acknowledgements and counting its fetches."""


class SentinelRedisChannel(FetchingChannel, kombu_redis.SentinelChannel):
    """The same, for a Redis behind Sentinel."""


class _SettlingTransport(kombu_redis.Transport):
    """Settles what Redis did not take every ``SETTLE_INTERVAL_S`` from the event loop."""

    _settle_tref: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        if self._settle_tref is not None:
            self._settle_tref.cancel()
        self._settle_tref = loop.call_repeatedly(SETTLE_INTERVAL_S, self._settle)

    def _settle(self) -> None:
        for channel in list(self.channels or ()):
            if not channel.closed and isinstance(channel.qos, SettlingQoS):
                settle(channel.qos)
                return


class Transport(_SettlingTransport):
    """Celery's ``broker_transport`` for ``redis://`` and ``rediss://`` URLs."""

    Channel = RedisChannel


class SentinelTransport(_SettlingTransport, kombu_redis.SentinelTransport):
    """Celery's ``broker_transport`` for ``sentinel://`` URLs."""

    Channel = SentinelRedisChannel


def transport_for(broker_url: str) -> str | None:
    """The transport class, as Celery's ``broker_transport``, for ``broker_url``; None for
    RabbitMQ (kombu's own py-amqp transport). Pure."""
    scheme = urlsplit(broker_url).scheme
    if scheme in AMQP_SCHEMES:
        return None
    name = "SentinelTransport" if scheme == "sentinel" else "Transport"
    return f"{__name__}:{name}"


class FetchWatch:
    """Says when a consumer that could take a task has stopped asking the broker for one.

    Fed every ``WATCH_INTERVAL_S`` with the count of fetches its channel has sent and
    whether a pool process is free; stalled once ``checks`` observations in a row found a
    process free and no fetch since the observation before. A consumer waiting on a slow
    or half-open connection sends a fetch again once kombu drops it (its BRPOP check, about
    20 s), and one whose event loop is blocked makes no observations meanwhile. Pure.
    """

    def __init__(self, checks: int = STALL_CHECKS) -> None:
        self.checks = checks
        self._fetches: int | None = None
        self._quiet = 0

    def observe(self, fetches: int, *, free: bool) -> bool:
        """True when the consumer is stalled."""
        quiet = free and fetches == self._fetches
        self._quiet = self._quiet + 1 if quiet else 0
        self._fetches = fetches
        return self._quiet >= self.checks
