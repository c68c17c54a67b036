"""The task journal: no task that carries work is lost when a worker is killed.

Celery's Redis transport takes a message with BRPOP and only afterwards records it as
unacknowledged (kombu's ``QoS.append``: a separate ZADD + HSET). A worker killed between
the two — SIGKILL, the OOM killer, a node lost — takes the message with it: it is in
neither the queue nor kombu's unacked hash, so no visibility timeout brings it back
(celery/celery#7950, celery/kombu#305). For edgematch that would be an upload never
scanned, a result never recorded, a match never quarantined or reported.

So every task that carries work is written here *before* it is published, under its task
id: ``<ns>:journal`` (task id → name, kwargs, queue) and ``<ns>:journal:at`` (task id →
when it was written). The task's end — done, dead-lettered, split — removes it
(``steps._guarded``). The beat's sweep (:meth:`Journal.recover`, every
``SWEEP_EVERY_S``) republishes, under the same task id, every entry older than the grace
period that is *alive* nowhere: not waiting in its queue and not held by a worker
(kombu's unacked hash, which also holds tasks waiting for a retry countdown).

Every step is idempotent, so the rare republished task that was alive after all (a
message kombu restored to the back of a long queue) only runs twice. Pump and sweep
tasks are not journaled: the batch buffer is their state, and the sweep restarts pumps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

import redis

from edgematch.worker.keys import Keys

#: Seconds an entry may be missing from its queue before it is counted lost: covers the
#: moments between writing the entry and publishing, and between BRPOP and kombu's record.
GRACE_S: Final = 30.0
#: Seconds between two looks for lost tasks (the beat's sweep runs every second).
SWEEP_EVERY_S: Final = 10.0
#: Entries looked at per sweep; the rest wait for the next one.
BATCH: Final = 500
#: A queue longer than this is not read whole: its order alone says what waits in it.
SCAN_LIMIT: Final = 10_000

#: Publishes ``(task name, kwargs, task id)`` to the broker.
Publish = Callable[[str, Mapping[str, Any], str], None]


@dataclass(frozen=True)
class Recovery:
    """What one sweep did: entries looked at, and the task ids it published again."""

    checked: int
    republished: tuple[str, ...]


def _task_id(raw: bytes | str) -> str | None:
    """The Celery task id in a kombu message as the Redis transport stores it."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if isinstance(doc, list):  # the unacked hash: [message, exchange, routing key]
        doc = doc[0] if doc else {}
    headers = doc.get("headers") if isinstance(doc, dict) else None
    task_id = headers.get("id") if isinstance(headers, dict) else None
    return str(task_id) if task_id else None


class Journal:
    """Write, close and recover journal entries. Redis errors are ``TransientError``."""

    def __init__(self, client: redis.Redis, namespace: str, *, grace_s: float = GRACE_S) -> None:
        self._r = client
        self._k = Keys(namespace)
        self._ns = namespace
        self._grace_s = grace_s

    @property
    def _entries(self) -> str:
        return f"{self._ns}:journal"

    @property
    def _at(self) -> str:
        return f"{self._ns}:journal:at"

    def add(self, task_id: str, name: str, kwargs: Mapping[str, Any], queue: str) -> None:
        """Record a task about to be published (call before publishing it)."""
        doc = json.dumps({"task": name, "kwargs": kwargs, "queue": queue}, separators=(",", ":"))
        pipe = self._r.pipeline()
        pipe.hset(self._entries, task_id, doc)
        pipe.zadd(self._at, {task_id: time.time()})
        pipe.execute()

    def done(self, task_id: str) -> None:
        """The task has ended (done, dead-lettered, split): nothing to recover."""
        pipe = self._r.pipeline()
        pipe.hdel(self._entries, task_id)
        pipe.zrem(self._at, task_id)
        pipe.execute()

    def pending(self) -> int:
        """Entries not closed yet (tasks queued, running, waiting to retry, or lost)."""
        return int(self._r.zcard(self._at))

    def due(self) -> bool:
        """Whether this process should sweep now: at most once per ``SWEEP_EVERY_S`` (or
        a third of the grace period, when shorter) across the whole pool."""
        every_s = min(SWEEP_EVERY_S, self._grace_s / 3)
        key = f"{self._ns}:journal:swept"
        return bool(self._r.set(key, "1", nx=True, px=max(1, int(every_s * 1000))))

    def recover(self, publish: Publish) -> Recovery:
        """Republish the entries older than the grace period that are alive nowhere."""
        return self._recover(publish)

    def _recover(self, publish: Publish) -> Recovery:
        cutoff = time.time() - self._grace_s
        rows = cast(
            "list[tuple[bytes, float]]",
            self._r.zrangebyscore(self._at, "-inf", cutoff, start=0, num=BATCH, withscores=True),
        )
        old = [(_text(task_id), float(at)) for task_id, at in rows]
        if not old:
            return Recovery(0, ())
        ids = [task_id for task_id, _ in old]
        docs = dict(zip(ids, self._r.hmget(self._entries, ids), strict=True))
        held = self._held()
        by_queue: dict[str, list[tuple[str, float, dict[str, Any]]]] = {}
        for task_id, at in old:
            raw = docs.get(task_id)
            if raw is None:  # closed meanwhile
                continue
            if task_id in held:
                continue
            doc = json.loads(raw)
            by_queue.setdefault(str(doc["queue"]), []).append((task_id, at, doc))
        republished: list[str] = []
        for queue, entries in by_queue.items():
            waiting = self._waiting(queue)
            if waiting is None:
                continue
            for task_id, _, doc in entries:
                if task_id in waiting:
                    continue
                # Stamped first: a publish that fails is tried again after another grace.
                self._r.zadd(self._at, {task_id: time.time()})
                publish(str(doc["task"]), doc["kwargs"], task_id)
                republished.append(task_id)
        return Recovery(len(old), tuple(republished))

    def _held(self) -> set[str]:
        """Task ids in kombu's unacked hash: taken by a worker (running, or waiting out a
        retry countdown), or abandoned by a dead one that kombu will restore."""
        held: set[str] = set()
        for _, raw in self._r.hscan_iter(f"{self._ns}:kombu:unacked", count=500):
            task_id = _task_id(raw)
            if task_id:
                held.add(task_id)
        return held

    def _waiting(self, queue: str) -> set[str] | None:
        """Task ids waiting in ``queue`` (a Redis list: pushed left, taken right); None
        when that cannot be told, and everything must be taken to wait."""
        length = int(self._r.llen(queue))
        if length == 0:
            return set()
        span = self._r.lrange(queue, 0, SCAN_LIMIT - 1)
        waiting = {t for t in (_task_id(raw) for raw in span) if t}
        if length > SCAN_LIMIT:
            # Not read whole: count as waiting whatever is no older than the oldest message
            # read (the list is in publish order, oldest on the right).
            oldest = self._r.lindex(queue, -1)
            oldest_id = _task_id(oldest) if oldest is not None else None
            at = self._r.zscore(self._at, oldest_id) if oldest_id else None
            if at is None:
                return None
            newer = cast(
                "list[bytes]",
                self._r.zrangebyscore(self._at, at, "+inf", start=0, num=SCAN_LIMIT),
            )
            waiting |= {_text(t) for t in newer}
        return waiting


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
