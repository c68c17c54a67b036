"""How many tasks wait in edgematch's Celery queues, from the broker's own counts.

On Redis a queue is a list: its length (``LLEN``) is what waits, and what workers hold is
kombu's unacked hash. On RabbitMQ a queue counts its messages itself: a passive
``queue.declare`` answers with the messages ready for delivery (``message_count``, not
those a consumer holds) and the consumers, without creating anything. A queue not declared
yet (no worker has started) waits with nothing.

Backpressure, ``edgematch status``, the metrics and the pump's look at the other queues
read here, and the readiness probe asks :func:`answers` whether RabbitMQ takes a connection.
Errors are translated at this boundary: Redis's by its client (redisclient.py), RabbitMQ's
here, as ``BrokerUnavailable`` (a ``TransientError``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import amqp.exceptions
from kombu import Connection
from kombu.exceptions import OperationalError

from edgematch.config.brokerkind import Capabilities
from edgematch.infra.redisclient import BrokerUnavailable, Redis

#: Seconds to connect to RabbitMQ for a count, and for its answer.
CONNECT_TIMEOUT_S = 5.0

_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    amqp.exceptions.AMQPError,
    OperationalError,
)


def answers(broker_url: str, *, ssl: dict[str, Any] | None, timeout_s: float) -> None:
    """Connect to RabbitMQ at ``broker_url`` once (TCP, TLS, the AMQP handshake and login,
    each bounded by ``timeout_s``; no retry) and close again. Raises BrokerUnavailable."""
    conn = Connection(broker_url, ssl=ssl or False, connect_timeout=timeout_s)
    try:
        conn.ensure_connection(max_retries=0)
    except _ERRORS as exc:
        raise BrokerUnavailable(f"broker unavailable: {type(exc).__name__}") from exc
    finally:
        with contextlib.suppress(*_ERRORS):
            conn.release()


class QueueDepths:
    """Read the broker's queue lengths. Thread-safe; one connection per process (RabbitMQ)."""

    def __init__(
        self,
        broker: Capabilities,
        *,
        redis: Redis,
        broker_url: str,
        ssl: dict[str, Any] | None = None,
    ) -> None:
        """``redis``: the broker's Redis (read on a Redis broker only)."""
        self.broker = broker
        self._r = redis
        self._url = broker_url
        self._ssl = ssl
        self._conn: Connection | None = None
        self._channel: Any = None
        self._lock = threading.Lock()

    def waiting(self, queues: Sequence[str]) -> list[int]:
        """Tasks ready for a worker in each of ``queues``, in order. Raises TransientError."""
        if not queues:
            return []
        if self.broker.redis:
            pipe = self._r.pipeline(transaction=False)
            for name in queues:
                pipe.llen(name)
            return [int(n) for n in pipe.execute()]
        return [ready for ready, _ in self._declare(queues)]

    def consumers(self, queues: Sequence[str]) -> list[int] | None:
        """Consumers of each of ``queues`` (RabbitMQ); None on Redis, which does not count
        them. Raises TransientError."""
        if self.broker.redis:
            return None
        return [consumers for _, consumers in self._declare(queues)]

    def _declare(self, queues: Sequence[str]) -> list[tuple[int, int]]:
        with self._lock:
            try:
                return [self._count(name) for name in queues]
            except _ERRORS as exc:
                self._drop()
                raise BrokerUnavailable(f"broker unavailable: {type(exc).__name__}") from exc

    def _count(self, name: str) -> tuple[int, int]:
        channel = self._open()
        try:
            ok = channel.queue_declare(queue=name, passive=True)
        except amqp.exceptions.NotFound:
            # The broker closed the channel with the refusal: the next count opens another.
            self._channel = None
            return 0, 0
        return int(ok.message_count), int(ok.consumer_count)

    def _open(self) -> Any:
        if self._conn is None:
            self._conn = Connection(
                self._url, ssl=self._ssl or False, connect_timeout=CONNECT_TIMEOUT_S
            )
            self._conn.connect()
        if self._channel is None:
            self._channel = self._conn.channel()
        return self._channel

    def _drop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(*_ERRORS):
                conn.release()

    def close(self) -> None:
        with self._lock:
            self._drop()
