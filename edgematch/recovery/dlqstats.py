"""Counts of the dead-letter store, for ``dlq stats`` and ``edgematch status``. Pure."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Stats", "tally"]


@dataclass(frozen=True)
class Stats:
    """Counts for ``dlq stats`` and ``edgematch status``. Times are epoch seconds."""

    total: int
    limit: int
    by_reason: dict[str, int]
    by_queue: dict[str, int]
    replaying: int
    refused: int
    last_refused_at: float | None
    oldest_failed_at: float | None
    newest_failed_at: float | None

    @property
    def full(self) -> bool:
        return self.total >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "full": self.full}


def tally(
    documents: Iterable[tuple[bytes, bytes]],
    replays: Mapping[bytes | str, int],
    meta: Mapping[bytes, bytes],
    *,
    limit: int,
) -> Stats:
    """Count stored ``(id, document)`` pairs by reason and queue, in one pass.

    ``replays`` maps an id to the failure count its replay began at (a replay is under way
    while that is still the entry's count); ``meta`` holds the refusal counters. An id seen
    twice is counted once: HSCAN may return an entry twice while Redis rehashes.
    """
    by_reason: Counter[str] = Counter()
    by_queue: Counter[str] = Counter()
    replaying = 0
    oldest: float | None = None
    newest: float | None = None
    seen: set[bytes] = set()
    for key, raw in documents:
        if key in seen:
            continue
        seen.add(key)
        doc = json.loads(raw)
        by_reason[str(doc.get("reason"))] += 1
        by_queue[str(doc.get("queue"))] += 1
        replaying += replays.get(key) == int(doc.get("failures", 1))
        when = float(doc.get("last_failed_at", 0.0))
        oldest = when if oldest is None else min(oldest, when)
        newest = when if newest is None else max(newest, when)
    last_refused = meta.get(b"last_refused_at")
    return Stats(
        total=sum(by_reason.values()),
        limit=limit,
        by_reason=dict(by_reason.most_common()),
        by_queue=dict(by_queue.most_common()),
        replaying=replaying,
        refused=int(meta.get(b"refused", 0)),
        last_refused_at=float(last_refused) if last_refused else None,
        oldest_failed_at=oldest,
        newest_failed_at=newest,
    )
