"""Which dead letters a command acts on: by queue, reason, time and state. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgematch.recovery.dlqentry import DeadLetter

__all__ = ["Filter"]


@dataclass(frozen=True)
class Filter:
    """Which entries a command acts on. Pure. Times are epoch seconds; None: no bound.

    ``queue`` matches the full queue name (``edgematch.ingest``, ``sqs``) or its step
    (``ingest``); ``since`` keeps entries whose last failure is at or after it, ``before``
    those whose last failure is earlier.
    """

    queue: str | None = None
    reason: str | None = None
    since: float | None = None
    before: float | None = None
    state: str | None = None

    def matches(self, entry: DeadLetter) -> bool:
        if self.queue is not None and self.queue not in (
            entry.queue,
            entry.queue.rsplit(".", 1)[-1],
        ):
            return False
        if self.reason is not None and entry.reason != self.reason:
            return False
        if self.since is not None and entry.last_failed_at < self.since:
            return False
        if self.before is not None and entry.last_failed_at >= self.before:
            return False
        return self.state is None or entry.state == self.state

    def may_match(self, doc: Mapping[str, Any]) -> bool:
        """A cheap look at a stored document: False when it cannot match. Pure."""
        if self.reason is not None and doc.get("reason") != self.reason:
            return False
        queue = str(doc.get("queue", ""))
        return self.queue is None or self.queue in (queue, queue.rsplit(".", 1)[-1])

    def score_bounds(self) -> tuple[str, str]:
        """(min, max) for ZRANGEBYSCORE over the index (scores are ms)."""
        low = "-inf" if self.since is None else str(int(self.since * 1000))
        high = "+inf" if self.before is None else f"({int(self.before * 1000)}"
        return low, high
