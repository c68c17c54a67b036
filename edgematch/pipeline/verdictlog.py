"""The verdict log: every recorded result, kept in the object store, not in Redis.

Where it is: ``s3://<EDGEMATCH_VERDICT_LOG_BUCKET>/verdicts/date=YYYY-MM-DD/hour=HH/``,
gzip JSON Lines (:mod:`edgematch.infra.logstore`), one line a result: the result document
(``edgematch.result/v1``) with ``recorded_at``, ``current`` (whether it became its hash
file's recorded result) and ``decision`` (why). A line is in the partition of the hour its
hash was *scanned* (``scanned_at``, UTC), so every copy of one result lands in the same
partition, and an object's name starts with the time its lines were taken for writing,
which is never before any of them was recorded. DuckDB and Athena read it as it is
(``hive_partitioning``; docs/operations.md has the queries).

How a result gets there, and why none can be recorded yet missing from it:

1. The results consumer records a result and, in the same Redis script, appends its line
   to a staging list (``record_result.lua``): recorded ⇔ staged, whatever is killed when.
   Only an item's first recording is staged; a repeat is not.
2. A flush (:meth:`VerdictLog.flush`) takes up to ``MAX_LINES`` staged lines into a batch
   under a lease (``vlog_take.lua``), writes them — one object per scan hour — and only then
   deletes the batch. A flusher killed, or a write refused, leaves the batch leased: when
   the lease runs out the next flush takes the same batch again and writes the same
   objects (same keys, same bytes). Lines leave Redis only once the store holds them.
3. Flushes run at most once per ``EDGEMATCH_VERDICT_LOG_FLUSH_S`` for the whole pool
   (:meth:`VerdictLog.flush_if_due`, a key with that TTL): from the beat's schedule and,
   should the beat be away, from the results consumer itself. So the store sees about one
   PUT per interval, whatever the rate: about 500 results an object at 10 requests/s.

Staged lines are in-flight work, like a queued task: in Redis with AOF, for one interval.
Should the store refuse writes for long, the staging list stops at
``EDGEMATCH_VERDICT_LOG_MAX_STAGED`` and results are retried rather than recorded.

A line can be written twice only in rare cases (a result redelivered after its "recorded
once" marker expired); readers count each ``item_id`` once, within its hour partition.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Final

import redis

from edgematch.errors import EdgematchError
from edgematch.infra import metrics
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.logstore import LogObjects
from edgematch.infra.redisclient import lua_script
from edgematch.pipeline.logpaths import object_key, scanned_hour

log = get_logger(__name__)

#: Most lines one batch (and so one object) takes.
MAX_LINES: Final = 5000
#: How long a batch being written stays leased: several attempts of one PUT.
LEASE_S: Final = 60.0


# -- the staging area and the flush -----------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """Lines taken for writing: its id, when it was first taken (ms), the lines."""

    id: str
    taken_ms: int
    lines: tuple[str, ...]

    @classmethod
    def parse(cls, batch_id: str, raw: str) -> Batch:
        taken, _, body = raw.partition("\n")
        return cls(batch_id, int(taken), tuple(line for line in body.split("\n") if line))

    def by_hour(self) -> dict[datetime, list[str]]:
        """The lines grouped by the hour they were scanned in, in order."""
        groups: dict[datetime, list[str]] = {}
        for line in self.lines:
            groups.setdefault(scanned_hour(line, fallback_ms=self.taken_ms), []).append(line)
        return groups


@dataclass(frozen=True)
class Flushed:
    """What one flush wrote: objects, lines; ``failed`` when a write was refused (the batch
    is written again once its lease runs out)."""

    objects: int = 0
    lines: int = 0
    failed: bool = False


@dataclass(frozen=True)
class Backlog:
    """What waits for the log: lines staged, batches taken and not yet written (each up to
    ``MAX_LINES``), and how long ago the oldest staged line was recorded (0 when none)."""

    staged: int
    batches: int
    oldest_age_s: float


class VerdictLog:
    """The staging area in Redis and its flush to the objects ``objects()`` makes on first
    use (None when no bucket is set: then a flush writes nothing and the lines wait). Only
    a flush needs the object store: the staging area's state is read from Redis alone."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        objects: Callable[[], LogObjects] | None,
        *,
        flush_s: float,
        max_lines: int = MAX_LINES,
        lease_s: float = LEASE_S,
    ) -> None:
        self._r = client
        self.keys = Keys(namespace)
        self._make_objects = objects
        self.flush_s = flush_s
        self._max_lines = max_lines
        self._lease_ms = int(lease_s * 1000)
        self._take = lua_script(client, "vlog_take")

    @cached_property
    def objects(self) -> LogObjects | None:
        """The log's objects (an S3 client is made on first use); None without a bucket."""
        return self._make_objects() if self._make_objects is not None else None

    def flush_if_due(self, *, budget_s: float) -> Flushed | None:
        """Flush when no flush started in the last ``flush_s`` anywhere in the pool (and
        start the next interval); None when it was not due."""
        if self._make_objects is None:
            return None
        if not self._r.set(self.keys.log_due, "1", nx=True, px=int(self.flush_s * 1000)):
            return None
        return self.flush(budget_s=budget_s)

    def flush(self, *, budget_s: float) -> Flushed:
        """Write staged lines to the store, a batch at a time, for up to ``budget_s``.

        A write the store refuses is logged and left leased (it is written again once the
        lease runs out); the flush then stops. Redis errors are raised.
        """
        if self.objects is None:
            return Flushed()
        deadline = time.monotonic() + budget_s
        objects = lines = 0
        for batch in self._batches(deadline):
            try:
                written = self._write(batch)
            except EdgematchError as exc:
                metrics.VERDICT_LOG_WRITES.labels("failed").inc()
                log.warning(
                    "verdict_log_write_failed",
                    batch=batch.id,
                    lines=len(batch.lines),
                    error=str(exc),
                    retry_in_s=self._lease_ms / 1000,
                )
                return Flushed(objects, lines, failed=True)
            self._done(batch.id)
            objects += written
            lines += len(batch.lines)
        return Flushed(objects, lines)

    def backlog(self, *, now: float | None = None) -> Backlog:
        """How much waits for the log, for status and metrics."""
        pipe = self._r.pipeline(transaction=False)
        pipe.llen(self.keys.log_staged)
        pipe.zcard(self.keys.log_leases)
        pipe.lindex(self.keys.log_staged, 0)
        staged, batches, oldest = pipe.execute()
        age = 0.0
        if oldest is not None:
            try:
                recorded_at = float(json.loads(oldest).get("recorded_at") or 0.0)
            except (ValueError, AttributeError, TypeError):
                recorded_at = 0.0
            if recorded_at > 0:
                age = max(0.0, (time.time() if now is None else now) - recorded_at)
        return Backlog(int(staged), int(batches), age)

    def _batches(self, deadline: float) -> Iterator[Batch]:
        while time.monotonic() < deadline:
            k = self.keys
            reply: Any = self._take(
                keys=[k.log_staged, k.log_batches, k.log_leases],
                args=[uuid.uuid4().hex, self._max_lines, self._lease_ms],
            )
            if not reply:
                return
            batch_id, raw = (part.decode() if isinstance(part, bytes) else part for part in reply)
            yield Batch.parse(batch_id, raw)

    def _write(self, batch: Batch) -> int:
        assert self.objects is not None
        written = 0
        for hour, lines in batch.by_hour().items():
            key = object_key(self.objects.prefix, hour, batch.taken_ms, batch.id)
            size = self.objects.put(key, lines)
            written += 1
            metrics.VERDICT_LOG_WRITES.labels("written").inc()
            metrics.VERDICT_LOG_LINES.inc(len(lines))
            log.info("verdict_log_written", key=key, lines=len(lines), bytes=size)
        return written

    def _done(self, batch_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.hdel(self.keys.log_batches, batch_id)
        pipe.zrem(self.keys.log_leases, batch_id)
        pipe.execute()
