"""One dead letter: what gave up, why, and what a replay needs. A plain value.

The stored document (:meth:`DeadLetter.to_json`) holds the failure only; the replay state
(``state``, ``replays`` …) is kept beside it in the store and joined on reading
(:meth:`DeadLetter.with_replay`), compared by failure count: a replay is under way only
while no failure was recorded since it began.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["FAILED", "MESSAGE_CHARS", "REPLAYING", "DeadLetter"]

FAILED, REPLAYING = "failed", "replaying"
#: Longest message kept, in characters.
MESSAGE_CHARS = 500
# Fields that describe a replay under way: read from the replay record, never stored.
_REPLAY_FIELDS = ("state", "replays", "replay_task_id", "replayed_at")


@dataclass(frozen=True)
class DeadLetter:
    """One thing that gave up. ``args`` are what replay needs, never secrets or bytes.

    Times are epoch seconds. ``attempts`` counts tries of the work itself (API requests,
    task runs); ``failures`` counts how often this entry was recorded.
    """

    id: str
    task: str
    queue: str
    reason: str
    message: str
    args: Mapping[str, Any]
    attempts: int = 0
    first_failed_at: float = 0.0
    last_failed_at: float = 0.0
    correlation_id: str | None = None
    bucket: str | None = None
    key: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    version_id: str | None = None
    failures: int = 1
    state: str = FAILED
    replays: int = 0
    replay_task_id: str | None = None
    replayed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field, replay state included (for ``dlq show`` and ``dlq list --json``)."""
        return asdict(self)

    def to_json(self) -> str:
        """The stored document: the failure only, without the replay state."""
        doc = {k: v for k, v in asdict(self).items() if k not in _REPLAY_FIELDS}
        return json.dumps(doc, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        """Parse a stored document; unknown fields (a newer writer's) are ignored."""
        return cls.from_doc(json.loads(raw))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DeadLetter:
        """Build from a parsed stored document, ignoring unknown fields."""
        return cls(**{k: v for k, v in doc.items() if k in _FIELDS})

    def with_replay(self, record: Mapping[str, Any] | None) -> DeadLetter:
        """This entry seen through its replay record (None: never replayed)."""
        if record is None:
            return self
        under_way = int(record.get("failures", -1)) == self.failures
        return replace(
            self,
            state=REPLAYING if under_way else FAILED,
            replays=int(record.get("replays", 0)),
            replay_task_id=record.get("task_id"),
            replayed_at=record.get("at"),
        )


_FIELDS = frozenset(f.name for f in dataclasses.fields(DeadLetter))
