"""The allowlist: list entries a person found to match innocent content, and its one rule.

Hash lists contain mistakes. When a reviewer rejects a match and finds the list entry
wrong, on-call puts its match id (or the hash file's SHA-256, for one picture) on the
allowlist (``edgematch allow add``). A ``match`` result whose match ids are **all** on
the list, or whose hash is, is then recorded as ``allowlisted`` — its own verdict, counted
and tagged as such, neither quarantined nor reported. A match with one id not on the list
stays a ``match``.

The rule is applied at one place, when a result is recorded (recording.consume), so every
match takes it, whether from the API or from the match cache. It fails closed: when the
list cannot be read (Redis away) the result is not recorded and its task retries — never
allowlisted, never ``clean``.

Redis holds the list (HASH ``<ns>:allowlist``, field ``<kind>:<value>``, the entry as
JSON, no TTL). Every change is first written as an append-only record to the object store
by the caller (``edgematch allow``, see ops/allowing.py), so who changed what, when and
why survives Redis, and the list can be rebuilt from it (``edgematch allow restore``).

Raised: ``ValueError`` for a malformed entry (the CLI refuses it first), Redis errors as
edgematch errors.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from edgematch.infra.keys import Keys
from edgematch.pipeline.results import ALLOWLISTED, MATCH, Result

MATCH_ID, SHA256 = "match-id", "sha256"
KINDS: Final = (MATCH_ID, SHA256)
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_MAX_MATCH_ID_CHARS: Final = 256


def normalised(kind: str, value: str) -> str:
    """``value`` as the list keeps it (a digest in lower case). Pure.

    ValueError for an unknown kind, an empty match id, or a digest that is not 64 hex
    digits.
    """
    if kind == SHA256:
        digest = value.strip().lower()
        if not _HEX64.fullmatch(digest):
            raise ValueError("a SHA-256 is 64 hexadecimal digits")
        return digest
    if kind == MATCH_ID:
        match_id = value.strip()
        if not match_id or len(match_id) > _MAX_MATCH_ID_CHARS or not match_id.isprintable():
            raise ValueError(f"a match id is 1 to {_MAX_MATCH_ID_CHARS} printable characters")
        return match_id
    raise ValueError(f"unknown allowlist kind {kind!r}")


def field_of(kind: str, value: str) -> str:
    """The list's name for an entry: ``match-id:<id>`` or ``sha256:<hex>``. Pure."""
    return f"{kind}:{value}"


@dataclass(frozen=True)
class Entry:
    """One entry: what is allowlisted, who put it there, why, and when (Unix seconds)."""

    kind: str
    value: str
    reviewer: str
    reason: str
    at: float = field(default_factory=time.time)

    @property
    def field(self) -> str:
        return field_of(self.kind, self.value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Entry:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def fields_of(result: Result) -> list[str]:
    """The list entries that could clear ``result``: its match ids and its hash. Pure."""
    names = [field_of(MATCH_ID, m) for m in result.match_ids]
    if result.hash_sha256:
        names.append(field_of(SHA256, result.hash_sha256))
    return names


def screened(result: Result, listed: Collection[str]) -> Result:
    """``result`` as recorded given the entries ``listed`` (fields). Pure.

    A ``match`` becomes ``allowlisted`` when its hash is listed, or when it names match
    ids and every one is listed; anything else is returned as it is.
    """
    if result.verdict != MATCH:
        return result
    if result.hash_sha256 and field_of(SHA256, result.hash_sha256) in listed:
        why = "allowlisted: the hash file's SHA-256 is on the allowlist"
    elif result.match_ids and all(field_of(MATCH_ID, m) in listed for m in result.match_ids):
        why = "allowlisted: every match id is on the allowlist"
    else:
        return result
    return dataclasses.replace(result, verdict=ALLOWLISTED, reason=why)


class Allowlist:
    """The allowlist in Redis: read by every results consumer, changed by on-call."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._r = client
        self.key = Keys(namespace).allowlist

    def screen(self, result: Result) -> Result:
        """``result`` with the rule applied (see :func:`screened`). One HMGET for a match,
        nothing for another verdict. A Redis error is raised: the caller retries."""
        if result.verdict != MATCH:
            return result
        names = fields_of(result)
        if not names:
            return result
        values = self._r.hmget(self.key, names)
        return screened(result, {n for n, v in zip(names, values, strict=True) if v is not None})

    def get(self, kind: str, value: str) -> Entry | None:
        raw = self._r.hget(self.key, field_of(kind, value))
        return Entry.from_dict(json.loads(raw)) if raw else None

    def put(self, entry: Entry) -> None:
        """Add (or replace) ``entry``. Idempotent."""
        self._r.hset(self.key, entry.field, json.dumps(entry.to_dict(), separators=(",", ":")))

    def delete(self, kind: str, value: str) -> bool:
        """Remove an entry; False when it was not there."""
        return bool(self._r.hdel(self.key, field_of(kind, value)))

    def entries(self) -> list[Entry]:
        """Every entry, oldest first."""
        raw: dict[bytes, bytes] = self._r.hgetall(self.key)  # type: ignore[assignment]
        found = [Entry.from_dict(json.loads(v)) for v in raw.values()]
        return sorted(found, key=lambda e: (e.at, e.field))

    def replace_all(self, entries: Iterable[Entry]) -> int:
        """Make the list exactly ``entries`` (one transaction); how many it holds now."""
        mapping = {e.field: json.dumps(e.to_dict(), separators=(",", ":")) for e in entries}
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(self.key)
        for name, value in mapping.items():
            pipe.hset(self.key, name, value)
        pipe.execute()
        return len(mapping)
