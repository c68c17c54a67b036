"""The dead-letter store: every item or message that cannot finish, with its reason.

Entries live in Redis: a hash of JSON documents, an index sorted by the time of the last
failure, and a hash of the replays under way. They are kept until a replay succeeds or
on-call purges them, and never hold secrets or hash bytes: arguments are the locations
and ids needed to replay, nothing more.

An entry's life::

    add ──► failed ──mark_replaying──► replaying ──resolve──► removed
              ▲                            │
              └──── add (failed again) ────┘

Replay state is kept beside the entry, never written into it, and compared by failure
count (``failures``, one more at each ``add`` of the same id): a replay resolves its entry
only if no failure was recorded since it began, whatever the hosts' clocks say.

The store has a size bound (``EDGEMATCH_DEAD_LETTER_LIMIT``). When it is reached, ``add``
logs ``dead_letters_full``, counts the refusal (``dlq stats`` and ``edgematch status``
show it) and raises :class:`DeadLetterStoreFull`, a transient error: the caller keeps its
work (the task retries, the SQS message stays) instead of dropping it silently.

Every method raises :class:`TransientError` when Redis cannot be reached.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, cast

import redis

from edgematch.errors import TransientError
from edgematch.infra import metrics
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import lua_script
from edgematch.recovery.dlqentry import FAILED, MESSAGE_CHARS, REPLAYING, DeadLetter
from edgematch.recovery.dlqfilter import Filter
from edgematch.recovery.dlqstats import Stats, tally

# The entry (dlqentry.py) and the filter (dlqfilter.py) have modules of their own; they are
# re-exported here for the callers that name them through the store.
__all__ = [
    "FAILED",
    "MESSAGE_CHARS",
    "REPLAYING",
    "DeadLetter",
    "DeadLetterStoreFull",
    "DeadLetters",
    "Filter",
    "Stats",
]

log = get_logger(__name__)

_CHUNK = 500


class DeadLetterStoreFull(TransientError):
    """The store reached its bound; the caller must not acknowledge what it holds."""

    reason = "dead_letters_full"


# Aliases: inside DeadLetters, ``list`` names the method.
_Ids = list[str]
_Rows = list[tuple[bytes, float]]
_Entries = list[DeadLetter]


class DeadLetters:
    """Add, find, count, replay-mark and purge dead letters.

    Adding the same ``dedupe_id`` twice keeps one entry (its ``failures`` go up).
    """

    def __init__(self, client: redis.Redis, namespace: str, *, max_entries: int = 100_000) -> None:
        self._r = client
        self._k = Keys(namespace)
        self.max_entries = max_entries
        self._mark = lua_script(client, "dlq_mark")
        self._resolve = lua_script(client, "dlq_resolve")

    # -- recording failures -----------------------------------------------------------
    def add(
        self,
        *,
        task: str,
        queue: str,
        reason: str,
        message: str,
        args: Mapping[str, Any],
        attempts: int = 0,
        correlation_id: str | None = None,
        bucket: str | None = None,
        key: str | None = None,
        version_id: str | None = None,
        dedupe_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """Record a failure. With ``dedupe_id``, a repeat updates the entry in place.

        ``version_id`` defaults to ``args["version_id"]`` when the arguments carry one.
        Raises DeadLetterStoreFull (after logging and counting the refusal) when a new
        entry would pass the bound.
        """
        now = time.time()
        entry_id = dedupe_id or uuid.uuid4().hex
        if version_id is None and isinstance(args.get("version_id"), str):
            version_id = args["version_id"]

        previous_raw = self._r.hget(self._k.dead_letters, entry_id)
        previous = DeadLetter.from_json(previous_raw) if previous_raw else None
        if previous is None and self._r.zcard(self._k.dead_letter_index) >= self.max_entries:
            self._refuse(task=task, reason=reason, correlation_id=correlation_id)
        entry = DeadLetter(
            id=entry_id,
            task=task,
            queue=queue,
            reason=reason,
            message=message[:MESSAGE_CHARS],
            args=dict(args),
            attempts=attempts,
            first_failed_at=previous.first_failed_at if previous else now,
            last_failed_at=now,
            correlation_id=correlation_id,
            bucket=bucket,
            key=key,
            extra=dict(extra or {}),
            version_id=version_id,
            failures=previous.failures + 1 if previous else 1,
        )
        pipe = self._r.pipeline()
        pipe.hset(self._k.dead_letters, entry_id, entry.to_json())
        pipe.zadd(self._k.dead_letter_index, {entry_id: int(now * 1000)})
        pipe.execute()
        metrics.DEAD_LETTERED.labels(reason).inc()
        return entry

    def _refuse(self, *, task: str, reason: str, correlation_id: str | None) -> None:
        pipe = self._r.pipeline()
        pipe.hincrby(self._k.dead_letter_meta, "refused", 1)
        pipe.hset(self._k.dead_letter_meta, "last_refused_at", repr(time.time()))
        pipe.execute()
        log.error(
            "dead_letters_full",
            limit=self.max_entries,
            task=task,
            reason=reason,
            correlation_id=correlation_id,
        )
        raise DeadLetterStoreFull(
            f"dead-letter store is full ({self.max_entries} entries, EDGEMATCH_DEAD_LETTER_LIMIT)"
            ": replay or purge entries"
        )

    # -- reading ------------------------------------------------------------------------
    def get(self, entry_id: str) -> DeadLetter | None:
        """One entry with its replay state, or None."""

        pipe = self._r.pipeline()
        pipe.hget(self._k.dead_letters, entry_id)
        pipe.hget(self._k.dead_letter_replays, entry_id)
        raw, record = pipe.execute()
        if not raw:
            return None
        return DeadLetter.from_json(raw).with_replay(json.loads(record) if record else None)

    def iter(
        self, where: Filter | None = None, *, newest_first: bool = True
    ) -> Iterator[DeadLetter]:
        """Every entry ``where`` matches, read in chunks (memory stays flat).

        Entries added or removed meanwhile may or may not be seen; none is seen twice.
        """
        where = where or Filter()
        for ids in self._id_chunks(where, newest_first=newest_first):
            yield from (e for e in self._load(ids, where) if where.matches(e))

    def list(self, limit: int = 1000, where: Filter | None = None) -> _Entries:
        """Up to ``limit`` matching entries, newest failure first."""
        found: _Entries = []
        for entry in self.iter(where):
            if len(found) >= limit:
                break
            found.append(entry)
        return found

    def count(self) -> int:
        return int(self._r.zcard(self._k.dead_letter_index))

    def stats(self) -> Stats:
        """Counts by reason and by queue, the bound, and refusals since the store filled.

        One pass over the documents (HSCAN, a thousand at a time, no round trip per entry),
        so the cost is parsing each document once: seconds for a full store of 100 000.
        """
        replays = {
            key: int(json.loads(value).get("failures", -1))
            for key, value in self._r.hgetall(self._k.dead_letter_replays).items()
        }
        documents = self._r.hscan_iter(self._k.dead_letters, count=1000)
        meta = cast("dict[bytes, bytes]", self._r.hgetall(self._k.dead_letter_meta))
        return tally(documents, replays, meta, limit=self.max_entries)

    # -- replay -------------------------------------------------------------------------
    def mark_replaying(self, entry_id: str, task_id: str) -> bool | None:
        """Record that task ``task_id`` replays this entry's latest failure.

        Returns True for a fresh replay, False when a replay of the same failure was
        already under way (the caller must not make it scan twice), None when the entry
        is gone. Atomic (``lua/dlq_mark.lua``).
        """
        k = self._k
        fresh = self._mark(
            keys=[k.dead_letters, k.dead_letter_replays], args=[entry_id, task_id, time.time()]
        )
        return None if int(fresh) < 0 else bool(fresh)

    def unmark(self, entry_id: str) -> None:
        """Forget a replay that could not be enqueued: the entry is ``failed`` again."""
        self._r.hdel(self._k.dead_letter_replays, entry_id)

    def resolve(self, entry_id: str) -> str:
        """A replay of ``entry_id`` succeeded: remove the entry unless it failed again since.

        Returns "removed", "kept" (a failure was recorded after the replay began, or none
        was ever begun) or "missing". Idempotent; atomic (``lua/dlq_resolve.lua``).
        """
        k = self._k
        outcome = self._resolve(
            keys=[k.dead_letters, k.dead_letter_index, k.dead_letter_replays], args=[entry_id]
        )
        return {1: "removed", 0: "kept"}.get(int(outcome), "missing")

    # -- removal ----------------------------------------------------------------------------
    def remove(self, entry_id: str) -> bool:
        """Delete one entry. True if it existed."""
        return self.remove_many([entry_id]) == 1

    def remove_many(self, entry_ids: Iterable[str]) -> int:
        """Delete these entries; returns how many existed."""
        ids = [*entry_ids]
        if not ids:
            return 0

        pipe = self._r.pipeline()
        pipe.hdel(self._k.dead_letters, *ids)
        pipe.zrem(self._k.dead_letter_index, *ids)
        pipe.hdel(self._k.dead_letter_replays, *ids)
        return int(pipe.execute()[0])

    def purge(self, where: Filter) -> int:
        """Delete every entry ``where`` matches; returns how many.

        The ids are gathered first (the store is bounded, so they fit) and then deleted in
        chunks: deleting while paging would shift the pages under the reader.
        """
        ids = [entry.id for entry in self.iter(where, newest_first=False)]
        return sum(
            self.remove_many(ids[start : start + _CHUNK]) for start in range(0, len(ids), _CHUNK)
        )

    # -- plumbing -----------------------------------------------------------------------
    def _id_chunks(self, where: Filter, *, newest_first: bool) -> Iterator[_Ids]:
        """Ids in score order, a chunk at a time, paging by score (offsets would shift as
        entries are removed meanwhile and skip some)."""
        low, high = where.score_bounds()
        edge = high if newest_first else low
        skip = 0  # ids already yielded whose score equals ``edge``
        while True:
            rows = self._page(edge, skip, low, high, newest_first)
            if not rows:
                return
            yield [member.decode() for member, _ in rows]
            last = rows[-1][1]
            at_last = sum(1 for _, score in rows if score == last)
            skip = skip + at_last if edge == _score_text(last) else at_last
            edge = _score_text(last)

    def _page(self, edge: str, skip: int, low: str, high: str, newest_first: bool) -> _Rows:
        index = self._k.dead_letter_index
        if newest_first:
            rows = self._r.zrevrangebyscore(
                index, edge, low, start=skip, num=_CHUNK, withscores=True
            )
        else:
            rows = self._r.zrangebyscore(index, edge, high, start=skip, num=_CHUNK, withscores=True)
        return cast("_Rows", rows)

    def _load(self, ids: _Ids, where: Filter) -> _Entries:
        pipe = self._r.pipeline()
        pipe.hmget(self._k.dead_letters, ids)
        pipe.hmget(self._k.dead_letter_replays, ids)
        raws, records = pipe.execute()
        found: _Entries = []
        for raw, record in zip(raws, records, strict=True):
            doc = json.loads(raw) if raw else None
            if doc is not None and where.may_match(doc):
                replay = json.loads(record) if record else None
                found.append(DeadLetter.from_doc(doc).with_replay(replay))
        return found


def _score_text(score: float) -> str:
    return str(int(score))
