"""Poison messages: tasks that kill the worker running them, again and again.

A worker killed in the middle of a task (SIGKILL, the OOM killer, a crash in a C library)
never reaches ``on_failure``: the broker hands the task to the next worker, which dies the
same way. So deliveries are counted where no crash can skip the count — in Redis, when a
task begins — and a task begun more than ``EDGEMATCH_MAX_DELIVERIES`` times is
dead-lettered with reason ``poison`` instead of being run once more.

``task.retry`` keeps the task id but is a deliberate new delivery, so the count is kept per
(task id, retry number) in one hash per task id. The hash is deleted when the task ends
either way, and carries a TTL in case it never does.

Raises :class:`TransientError` when Redis cannot be reached.
"""

from __future__ import annotations

import contextlib

import redis

from edgematch.infra.keys import Keys
from edgematch.infra.redisclient import RedisUnavailable

POISON = "poison"


def is_poison(delivery: int, max_deliveries: int) -> bool:
    """True when this is one start too many: the ``delivery``-th begin of the same attempt.

    Pure. ``delivery`` counts from 1; ``max_deliveries`` of 3 runs a task at most 3 times.
    """
    return delivery > max_deliveries


def counter_ttl_s(visibility_timeout_s: int, max_deliveries: int) -> int:
    """How long a delivery count must live, in seconds.

    A task lost with its whole worker comes back after at most one visibility timeout; the
    count must survive every one of those redeliveries, and one more.
    """
    return visibility_timeout_s * (max_deliveries + 1) + 60


class Deliveries:
    """The per-task delivery counters in Redis."""

    def __init__(self, client: redis.Redis, namespace: str, *, ttl_s: int) -> None:
        self._r = client
        self._k = Keys(namespace)
        self._ttl_s = ttl_s

    def begin(self, task_id: str, retry: int) -> int:
        """Count one more start of attempt ``retry`` of ``task_id``; return which one (from 1)."""
        key = self.key(task_id)
        # No MULTI: the TTL is set again on every start, so a write cut between the two
        # commands is mended by the next delivery, and the task's end deletes the count.
        pipe = self._r.pipeline(transaction=False)
        pipe.hincrby(key, str(retry), 1)
        pipe.expire(key, self._ttl_s)
        count, _ = pipe.execute()
        return int(count)

    def key(self, task_id: str) -> str:
        """The Redis key of ``task_id``'s counts (deleted with its journal entry)."""
        return self._k.deliveries(task_id)

    def finish(self, task_id: str) -> None:
        """The task ended (done, dead-lettered or given up): drop its count. Best effort:
        the TTL removes a count this call could not."""
        with contextlib.suppress(RedisUnavailable):
            self._r.delete(self._k.deliveries(task_id))
