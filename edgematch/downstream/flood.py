"""The flood guard: a match id that suddenly matches far too many objects is suspect.

Hash lists contain mistakes: an entry that matches innocent content matches it wherever it
is uploaded. When one match id has matched more than ``EDGEMATCH_FLOOD_MATCHES`` distinct
content objects within the last ``EDGEMATCH_FLOOD_WINDOW_S``, every further match of it is
still quarantined (fail closed) but its report is held in ``pending_review`` whatever
``EDGEMATCH_REVIEW`` says, so that a person looks before anything is submitted.

Redis state, bounded whatever happens: per match id one sorted set of the objects it
matched (their 22-character location digest) scored by time, trimmed on every write to the
window and to its newest ``EDGEMATCH_FLOOD_MATCHES + 1`` members, expiring one window after
its last write; and one sorted set of the match ids that flooded (``flooded``), trimmed to
the window and to ``MAX_FLOODED`` members. About 100 bytes a member: 5 KB for a match id at
the default of 50, and nothing for a match id that has not matched for a window.

Counting is idempotent: the same object matched again (a redelivery, a re-upload of the
same key) is one member. Raises RedisUnavailable (transient) when Redis cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import redis

from edgematch.infra.keys import Keys, location_digest

#: Flooded match ids remembered (and shown by ``edgematch status`` and the metric) at most.
MAX_FLOODED: Final = 100


@dataclass(frozen=True)
class Flooded:
    """A match id that matched more than the limit of distinct objects within the window."""

    match_id: str
    at: float  # Unix seconds of its latest match past the limit


def is_flood(distinct: int, limit: int) -> bool:
    """Whether ``distinct`` objects matched within the window is more than ``limit``. Pure."""
    return distinct > limit


def hold_reason(flooded: Iterable[str], limit: int, window_s: int) -> str | None:
    """The history reason of a report held because of ``flooded`` match ids; None if none.
    Pure."""
    ids = sorted(set(flooded))
    if not ids:
        return None
    return (
        f"flood guard: match id {', '.join(ids)} matched more than {limit} distinct objects "
        f"within {window_s} s; held for review"
    )


class FloodGuard:
    """Counts the distinct objects each match id matched in a sliding window, in Redis."""

    def __init__(self, client: redis.Redis, namespace: str, *, limit: int, window_s: int) -> None:
        self._r = client
        self._k = Keys(namespace)
        self.limit = limit
        self.window_s = window_s

    def count(self, match_ids: Iterable[str], bucket: str, key: str, *, now: float) -> list[str]:
        """Count the object ``bucket``/``key`` for each match id; return those now flooded.

        One MULTI/EXEC a match id: add, drop what left the window, keep the newest
        ``limit + 1``, count, expire after a window.
        """
        member = location_digest(bucket, key)
        ids = sorted(set(match_ids))
        pipe = self._r.pipeline(transaction=True)
        for match_id in ids:
            name = self._k.flood(match_id)
            pipe.zadd(name, {member: now})
            pipe.zremrangebyscore(name, "-inf", now - self.window_s)
            pipe.zremrangebyrank(name, 0, -(self.limit + 2))
            pipe.zcard(name)
            pipe.expire(name, self.window_s)
        replies = pipe.execute()
        flooded = [
            m for m, n in zip(ids, replies[3::5], strict=True) if is_flood(int(n), self.limit)
        ]
        if flooded:
            self._flag(flooded, now)
        return flooded

    def _flag(self, match_ids: list[str], now: float) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.zadd(self._k.flooded, {m: now for m in match_ids})
        pipe.zremrangebyscore(self._k.flooded, "-inf", now - self.window_s)
        pipe.zremrangebyrank(self._k.flooded, 0, -(MAX_FLOODED + 1))
        pipe.expire(self._k.flooded, self.window_s)
        pipe.execute()

    def flooded(self, *, now: float) -> list[Flooded]:
        """The match ids that flooded within the window, the latest first."""
        raw = self._r.zrevrangebyscore(
            self._k.flooded, "+inf", now - self.window_s, withscores=True
        )
        return [Flooded(_text(pair[0]), float(pair[1])) for pair in raw]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
