"""The dead-letter store: every item or message that cannot finish, with its reason.

Entries live in Redis (a hash of JSON documents plus an index sorted by time), are kept
until replayed or purged, and never hold secrets or hash bytes: arguments are stored as
the locations and ids needed to replay, nothing more. The store has a size bound; when it
is full, ``add`` raises instead of dropping an entry silently.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import redis

from edgematch.worker.errors import TransientError
from edgematch.worker.keys import Keys


class DeadLetterStoreFull(TransientError):
    """The store reached its bound; the caller must not acknowledge what it holds."""

    reason = "dead_letters_full"


@dataclass(frozen=True)
class DeadLetter:
    """One thing that gave up. ``args`` are what replay needs, never secrets or bytes."""

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

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        return cls(**json.loads(raw))


class DeadLetters:
    """Add, find and count dead letters. Adding the same ``dedupe_id`` twice keeps one."""

    def __init__(self, client: redis.Redis, namespace: str, *, max_entries: int = 100_000) -> None:
        self._r = client
        self._k = Keys(namespace)
        self.max_entries = max_entries

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
        dedupe_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> DeadLetter:
        """Record a failure. With ``dedupe_id``, a repeat updates the entry in place."""
        now = time.time()
        entry_id = dedupe_id or uuid.uuid4().hex
        try:
            previous = self._r.hget(self._k.dead_letters, entry_id)
            if previous is None and self._r.zcard(self._k.dead_letter_index) >= self.max_entries:
                raise DeadLetterStoreFull(
                    f"dead-letter store is full ({self.max_entries} entries): replay or purge"
                )
            first = DeadLetter.from_json(previous).first_failed_at if previous else now
            entry = DeadLetter(
                id=entry_id,
                task=task,
                queue=queue,
                reason=reason,
                message=message[:500],
                args=dict(args),
                attempts=attempts,
                first_failed_at=first,
                last_failed_at=now,
                correlation_id=correlation_id,
                bucket=bucket,
                key=key,
                extra=dict(extra or {}),
            )
            pipe = self._r.pipeline()
            pipe.hset(self._k.dead_letters, entry_id, entry.to_json())
            pipe.zadd(self._k.dead_letter_index, {entry_id: int(now * 1000)})
            pipe.execute()
        except redis.RedisError as exc:
            raise TransientError(f"redis unavailable: {type(exc).__name__}") from exc
        return entry

    def get(self, entry_id: str) -> DeadLetter | None:
        raw = self._r.hget(self._k.dead_letters, entry_id)
        return DeadLetter.from_json(raw) if raw else None

    def list(self, limit: int = 1000) -> list[DeadLetter]:
        ids = cast("list[bytes]", self._r.zrange(self._k.dead_letter_index, 0, limit - 1))
        if not ids:
            return []
        docs = self._r.hmget(self._k.dead_letters, ids)
        return [DeadLetter.from_json(doc) for doc in docs if doc]

    def count(self) -> int:
        return int(self._r.zcard(self._k.dead_letter_index))

    def remove(self, entry_id: str) -> bool:
        pipe = self._r.pipeline()
        pipe.hdel(self._k.dead_letters, entry_id)
        pipe.zrem(self._k.dead_letter_index, entry_id)
        return bool(pipe.execute()[0])
