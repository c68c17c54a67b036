"""Deliveries a worker holds, kept fresh while it lives and handed back soon after it dies.

kombu's Redis transport records every message it delivers in ``<ns>:kombu:unacked``
(delivery tag → ``[message, exchange, routing key]``) and ``<ns>:kombu:unacked_index``
(delivery tag → when it was delivered), and puts a delivery back on its queue only once
it is older than the visibility timeout (an hour): nothing there tells a running task
from one whose worker was SIGKILLed, OOM-killed or lost with its node. A prefork child's
death is seen by its main process, which requeues the task at once
(``task_reject_on_worker_lost``); the main process's own death is seen by nobody, and
the tasks it held — running in its children, queued for its pool, or waiting out a retry
countdown — would wait that hour.

So the main process, the consumer that took each message, keeps its deliveries' index
times fresh (:class:`DeliveryKeeper`, fed by Celery's ``task_received`` signal, every
``REFRESH_S`` from a thread, on Redis's clock), and the beat's sweep hands back every
delivery left ``STALE_S`` without a refresh (:class:`Unacked`): its consumer is gone.
The hand-back is one Lua step that checks the delivery is still there, unchanged and
still stale, removes it from both of kombu's keys and pushes the message back at the head
of its queue, as kombu's own restore would — so kombu's later restore finds nothing, and
a delivery is handed back once. A refresh stops once a delivery is older than the
visibility timeout: a consumer that lost track of an acknowledgement does not keep it
alive for ever, and kombu's restore stays the outer bound.

Redis broker only (config/brokerkind.py's ``hand_back``): RabbitMQ requeues a consumer's
deliveries the moment its connection drops, and keeps no such hash.

Redis errors are ``RedisUnavailable`` (the client's, ``redisclient.py``), a
``TransientError``, on the sweep side; the keeper logs them and carries on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

import redis

from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable, lua_script
from edgematch.names import unacked_index_key, unacked_key

log = get_logger(__name__)

#: Seconds between two refreshes of a consumer's deliveries.
REFRESH_S: Final = 3.0
#: Seconds without a refresh after which a delivery's consumer is taken for dead: five
#: refreshes missed, and more than a consumer needs between taking a message and its
#: first refresh.
STALE_S: Final = 15.0
#: Delivery tags refreshed by one script call, and stale deliveries looked at per sweep.
CHUNK: Final = 500


@dataclass(frozen=True)
class Delivery:
    """A delivery left stale: its tag, raw entry, and what its message says."""

    tag: str
    raw: str
    task_id: str | None
    task: str | None
    routing_key: str


class DeliveryKeeper:
    """The consumer side: remember each delivery taken, refresh it until acknowledged."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        max_age_s: float,
        refresh_s: float = REFRESH_S,
    ) -> None:
        """``max_age_s``: stop refreshing a delivery held longer (the visibility timeout)."""
        self._r = client
        self._index = unacked_index_key(namespace)
        self._refresh = lua_script(client, "refresh_unacked")
        self._max_age_s = max_age_s
        self._refresh_s = refresh_s
        self._held: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def hold(self, message: Any) -> None:
        """Keep ``message`` (a kombu message this consumer took) fresh until it is
        acknowledged, rejected or requeued. Cheap: no Redis call."""
        tag = getattr(message, "delivery_tag", None)
        if tag is None:
            return
        with self._lock:
            self._held[str(tag)] = (message, time.monotonic())

    def held(self) -> list[str]:
        """Tags still held, forgetting those settled, those of a channel that closed (the
        broker connection was lost: kombu gives them back, or the sweep does once they go
        stale) and those held past ``max_age_s``."""
        now = time.monotonic()
        with self._lock:
            for tag, (message, since) in list(self._held.items()):
                if (
                    getattr(message, "acknowledged", False)
                    or getattr(getattr(message, "channel", None), "closed", False)
                    or now - since > self._max_age_s
                ):
                    del self._held[tag]
            return list(self._held)

    def refresh_once(self) -> bool:
        """Stamp every held delivery with Redis's time now. False when Redis failed."""
        tags = self.held()
        try:
            for start in range(0, len(tags), CHUNK):
                self._refresh(keys=[self._index], args=tags[start : start + CHUNK])
        except RedisUnavailable as exc:
            # Not a translation: logged once per outage, and tried again on the next tick.
            if not self._failing:
                log.warning("deliveries_not_refreshed", held=len(tags), error=str(exc))
                self._failing = True
            return False
        self._failing = False
        return True

    def start(self) -> DeliveryKeeper:
        """Refresh every ``refresh_s`` from a daemon thread until ``stop()``; returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._loop, name="edgematch-deliveries", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh_once()


class Unacked:
    """The sweep side: find deliveries whose consumer stopped refreshing, hand them back."""

    def __init__(self, client: redis.Redis, namespace: str, *, stale_s: float = STALE_S) -> None:
        self._r = client
        self._hash = unacked_key(namespace)
        self._index = unacked_index_key(namespace)
        self._stale_s = stale_s
        self._hand_back = lua_script(client, "hand_back")

    def task_ids(self) -> set[str]:
        """The task ids of every delivery not acknowledged yet, fresh or stale."""
        return {
            task_id
            for _, raw in self._r.hscan_iter(self._hash, count=CHUNK)
            if (task_id := task_id_of(raw))
        }

    def stale(self) -> tuple[float, list[Delivery]]:
        """``(cutoff, deliveries)``: those not refreshed since ``cutoff`` (Redis's clock,
        seconds), at most ``CHUNK`` of them, oldest first."""
        sec, usec = self._r.time()
        cutoff = int(sec) + int(usec) / 1e6 - self._stale_s
        tags = [
            _text(tag)
            for tag in cast(
                "list[bytes]",
                self._r.zrangebyscore(self._index, "-inf", cutoff, start=0, num=CHUNK),
            )
        ]
        raws = cast("list[bytes | None]", self._r.hmget(self._hash, tags)) if tags else []
        return cutoff, list(_deliveries(tags, raws))

    def hand_back(self, delivery: Delivery, cutoff: float, queue: str | None) -> bool:
        """Remove a stale delivery from kombu's keys and, given a ``queue``, push its
        message back at the head of that queue (marked redelivered, as kombu does).
        Atomic; False when it was acknowledged, restored or refreshed meanwhile."""
        payload = _redelivered(delivery.raw) if queue is not None else ""
        done = self._hand_back(
            keys=[self._hash, self._index, queue or self._hash],
            args=[delivery.tag, delivery.raw, repr(cutoff), payload],
        )
        return bool(done)


def task_id_of(raw: bytes | str) -> str | None:
    """The Celery task id in a kombu message (a queue's entry or an unacked one). Pure."""
    message = _message(raw)
    headers = message.get("headers") if message else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else None


def _message(raw: bytes | str) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if isinstance(doc, list):  # the unacked hash: [message, exchange, routing key]
        doc = doc[0] if doc else {}
    return doc if isinstance(doc, dict) else None


def _deliveries(tags: list[str], raws: list[bytes | None]) -> Iterator[Delivery]:
    for tag, raw in zip(tags, raws, strict=True):
        if raw is None:  # acknowledged between the two reads
            continue
        text = _text(raw)
        try:
            entry = json.loads(text)
            message, routing_key = entry[0], str(entry[2])
        except (ValueError, LookupError, TypeError):
            # Left to kombu's restore; looked at again every sweep until then.
            log.debug("unacked_unreadable", delivery_tag=tag)
            continue
        headers = message.get("headers") if isinstance(message, dict) else None
        headers = headers if isinstance(headers, dict) else {}
        task_id, task = headers.get("id"), headers.get("task")
        yield Delivery(
            tag=tag,
            raw=text,
            task_id=str(task_id) if task_id else None,
            task=str(task) if task else None,
            routing_key=routing_key,
        )


def _redelivered(raw: str) -> str:
    """The message of an unacked entry, marked redelivered as kombu's restore marks it."""
    message = json.loads(raw)[0]
    headers = message.get("headers")
    if isinstance(headers, dict):
        headers["redelivered"] = True
    info = (message.get("properties") or {}).get("delivery_info")
    if isinstance(info, dict):
        info["redelivered"] = True
    return json.dumps(message)


def queue_of(delivery: Delivery, queues: Collection[str]) -> str | None:
    """The queue a delivery came from: its routing key, when that names one of ours (every
    task is routed to the queue of its own name). None: leave it to kombu. Pure."""
    return delivery.routing_key if delivery.routing_key in queues else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
