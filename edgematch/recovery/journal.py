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
(recovery/guard.py). The beat's sweep does two things:

- :meth:`Journal.hand_back`, every sweep: the deliveries a dead worker held (kombu's
  unacked entries its consumer stopped refreshing, recovery/unacked.py) go back to the
  head of their queue within ``unacked.STALE_S`` of the death, not after the visibility
  timeout; a delivery whose task has already ended is dropped instead, so it never runs
  again.
- :meth:`Journal.recover`, every ``SWEEP_EVERY_S`` (or a third of the grace): every entry
  older than the grace period that is *alive* nowhere — not waiting in its queue and not
  held by a worker — is published again under the same task id.

Every step is idempotent, so the rare task that runs twice (a worker thought dead that
was only frozen) changes nothing twice. Pump, sweep and verdict-log flush tasks are not
journaled: the batch buffer and the log's staging area are their state, and the beat
starts them again.

Queues and kombu's keys are read on the broker's Redis, the entries on edgematch's.

All of this is for the Redis broker only. On RabbitMQ (config/brokerkind.py) a message is
unacknowledged from the moment it is sent to a consumer, requeued the moment that
consumer's connection drops, and a publish returns once the broker has it (publisher
confirms): nothing is lost between taking and recording, so nothing is journaled, and
nothing is handed back. There every method here does nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import redis

from edgematch.config.brokerkind import REDIS, Capabilities
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.names import (
    LEGACY_TASK_PUMP,
    QUEUE_STEPS,
    TASK_FLUSH_VERDICTS,
    TASK_MATCH,
    TASK_SWEEP,
)
from edgematch.recovery.unacked import Unacked, queue_of, task_id_of

log = get_logger(__name__)

#: Seconds an entry may be missing from its queue before it is counted lost: covers the
#: moments between writing the entry and publishing, and between BRPOP and kombu's record.
GRACE_S: Final = 20.0
#: Seconds between two looks for lost tasks (the beat's sweep runs every second).
SWEEP_EVERY_S: Final = 10.0
#: Entries looked at per sweep; the rest wait for the next one.
BATCH: Final = 500
#: A queue longer than this is not read whole: its order alone says what waits in it.
SCAN_LIMIT: Final = 10_000
#: Tasks never journaled: the batch buffer (or the verdict log's staging area) is their state.
UNJOURNALED: Final = frozenset({TASK_MATCH, LEGACY_TASK_PUMP, TASK_SWEEP, TASK_FLUSH_VERDICTS})

#: Publishes ``(task name, kwargs, task id)`` to the broker.
Publish = Callable[[str, Mapping[str, Any], str], None]


@dataclass(frozen=True)
class Recovery:
    """What one sweep did: entries looked at, and the task ids it published again."""

    checked: int
    republished: tuple[str, ...]


@dataclass(frozen=True)
class HandBack:
    """Deliveries of dead workers: put back on their queue, or dropped (task ended)."""

    restored: tuple[str, ...]
    dropped: tuple[str, ...]


class Journal:
    """Write, close and recover journal entries. Redis errors are ``TransientError``."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        grace_s: float = GRACE_S,
        broker: redis.Redis | None = None,
        capabilities: Capabilities = REDIS,
    ) -> None:
        """``broker``: the broker's Redis, when it is not ``client``'s. ``capabilities``:
        the broker's; without ``journal`` (RabbitMQ) nothing is journaled or recovered."""
        self.enabled = capabilities.journal
        self._hands_back = capabilities.hand_back
        self._r = client
        self._b = broker if broker is not None else client
        self._k = Keys(namespace)
        self._ns = namespace
        self._grace_s = grace_s
        self._unacked = Unacked(self._b, namespace)
        self._queues = frozenset(self._k.queue(step) for step in QUEUE_STEPS)

    @property
    def _entries(self) -> str:
        return f"{self._ns}:journal"

    @property
    def _at(self) -> str:
        return f"{self._ns}:journal:at"

    def add(self, task_id: str, name: str, kwargs: Mapping[str, Any], queue: str) -> None:
        """Record a task about to be published (call before publishing it)."""
        if not self.enabled:
            return
        doc = json.dumps({"task": name, "kwargs": kwargs, "queue": queue}, separators=(",", ":"))
        # One round trip, no MULTI (two commands, not four): the time first, so that a
        # write cut between the two leaves only a time without its entry, which the sweep
        # drops (:meth:`recover`); an entry without its time would never be looked at.
        pipe = self._r.pipeline(transaction=False)
        pipe.zadd(self._at, {task_id: time.time()})
        pipe.hset(self._entries, task_id, doc)
        pipe.execute()

    def done(self, task_id: str, *, also_delete: Sequence[str] = ()) -> None:
        """The task has ended (done, dead-lettered, split): nothing to recover. Deletes the
        keys ``also_delete`` (the task's delivery count) in the same round trip."""
        if not self.enabled and not also_delete:
            return
        # No MULTI, for the same reason as in :meth:`add`: the entry goes first.
        pipe = self._r.pipeline(transaction=False)
        if self.enabled:
            pipe.hdel(self._entries, task_id)
            pipe.zrem(self._at, task_id)
        if also_delete:
            pipe.delete(*also_delete)
        pipe.execute()

    def pending(self) -> int:
        """Entries not closed yet (tasks queued, running, waiting to retry, or lost)."""
        if not self.enabled:
            return 0
        return int(self._r.zcard(self._at))

    def due(self) -> bool:
        """Whether this process should look for lost tasks now: at most once per
        ``SWEEP_EVERY_S`` (or a third of the grace period, when shorter) across the pool."""
        if not self.enabled:
            return False
        every_s = min(SWEEP_EVERY_S, self._grace_s / 3)
        key = f"{self._ns}:journal:swept"
        return bool(self._r.set(key, "1", nx=True, px=max(1, int(every_s * 1000))))

    def hand_back(self) -> HandBack:
        """Put the deliveries whose worker died back on their queue (recovery/unacked.py).

        A delivery whose task has ended (no journal entry: done, dead-lettered or split
        before its worker died, unacknowledged) is dropped instead: running it again would
        change nothing. Each delivery is handed back once, however many sweeps run at once.
        """
        if not self._hands_back:
            return HandBack((), ())
        cutoff, stale = self._unacked.stale()
        if not stale:
            return HandBack((), ())
        ids = [d.task_id for d in stale if d.task_id]
        found = cast("list[bytes | None]", self._r.hmget(self._entries, ids)) if ids else []
        open_ids = {task_id for task_id, doc in zip(ids, found, strict=True) if doc is not None}
        restored: list[str] = []
        dropped: list[str] = []
        for delivery in stale:
            queue = queue_of(delivery, self._queues)
            if queue is None:
                # Not one of ours: kombu restores it after the visibility timeout. Debug:
                # it is looked at again every sweep until then.
                log.debug(
                    "delivery_not_ours", delivery_tag=delivery.tag, queue=delivery.routing_key
                )
                continue
            ended = (
                delivery.task is not None
                and delivery.task not in UNJOURNALED
                and delivery.task_id not in open_ids
            )
            if self._unacked.hand_back(delivery, cutoff, None if ended else queue):
                (dropped if ended else restored).append(delivery.task_id or delivery.tag)
        return HandBack(tuple(restored), tuple(dropped))

    def recover(self, publish: Publish) -> Recovery:
        """Republish the entries older than the grace period that are alive nowhere."""
        return self._recover(publish)

    def _recover(self, publish: Publish) -> Recovery:
        if not self.enabled:
            return Recovery(0, ())
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
        by_queue: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        orphans = [task_id for task_id, _ in old if docs.get(task_id) is None]
        if orphans:
            # Closed meanwhile, or a write cut between its two commands: no entry, no task.
            self._r.zrem(self._at, *orphans)
        for task_id, _ in old:
            raw = docs.get(task_id)
            if raw is None:
                continue
            doc = json.loads(raw)
            by_queue.setdefault(str(doc["queue"]), []).append((task_id, doc))
        # Workers' deliveries are read before and after the queues: a message that moves
        # from a queue to a worker, or back (a requeue, a hand-back), in between is seen
        # in one of the reads, never in neither.
        held = self._unacked.task_ids()
        waiting: dict[str, set[str] | None] = {q: self._waiting(q) for q in by_queue}
        held |= self._unacked.task_ids()
        republished: list[str] = []
        for queue, entries in by_queue.items():
            in_queue = waiting[queue]
            if in_queue is None:
                continue
            for task_id, doc in entries:
                if task_id in in_queue or task_id in held:
                    continue
                # Stamped first: a publish that fails is tried again after another grace.
                self._r.zadd(self._at, {task_id: time.time()})
                publish(str(doc["task"]), doc["kwargs"], task_id)
                republished.append(task_id)
        return Recovery(len(old), tuple(republished))

    def _waiting(self, queue: str) -> set[str] | None:
        """Task ids waiting in ``queue`` (a Redis list: pushed left, taken right); None
        when that cannot be told, and everything must be taken to wait."""
        length = int(self._b.llen(queue))
        if length == 0:
            return set()
        span = self._b.lrange(queue, 0, SCAN_LIMIT - 1)
        waiting = {t for t in (task_id_of(raw) for raw in span) if t}
        if length > SCAN_LIMIT:
            # Not read whole: count as waiting whatever is no older than the oldest message
            # read (the list is in publish order, oldest on the right).
            oldest = self._b.lindex(queue, -1)
            oldest_id = task_id_of(oldest) if oldest is not None else None
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
