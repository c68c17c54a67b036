"""The match cache: a hash that matched once is a match again, without an API call.

When a ``match`` result is recorded, the SHA-256 of its hash bytes (never the bytes) is
remembered with the match details for ``EDGEMATCH_MATCH_CACHE_TTL_S``. Ingest looks every
new hash up before it joins the batch buffer: a re-upload of matched content gets its
``match`` result at once — quarantined and reported like any match — and spends no API
quota. Only matches are cached: a clean verdict can change when the lists grow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import redis

from edgematch.worker.errors import TransientError
from edgematch.worker.items import Item
from edgematch.worker.keys import Keys
from edgematch.worker.results import MATCH, Result


@dataclass(frozen=True)
class CachedMatch:
    """The details of the API's first answer for a hash that matched."""

    match_ids: tuple[str, ...]
    sources: tuple[str, ...]
    violations: tuple[str, ...]
    tracking_id: str | None
    request_id: str | None

    def result_for(self, item: Item) -> Result:
        """The ``match`` result for ``item``, published without asking the API again."""
        result = Result.for_item(
            item,
            verdict=MATCH,
            is_match=True,
            match_ids=self.match_ids,
            sources=self.sources,
            violations=self.violations,
            tracking_id=self.tracking_id,
            request_id=self.request_id,
            reason="match_cache: this hash matched before",
        )
        return replace(result, from_cache=True)


class MatchCache:
    """Remember and look up matched hashes by SHA-256. Redis errors are TransientError."""

    def __init__(self, client: redis.Redis, namespace: str, *, ttl_s: int) -> None:
        self._r = client
        self._k = Keys(namespace)
        self._ttl_s = ttl_s

    def remember(self, result: Result) -> bool:
        """Cache a match's details (refreshing the TTL); False for anything else."""
        if result.verdict != MATCH or not result.hash_sha256:
            return False
        doc = {
            "match_ids": list(result.match_ids),
            "sources": list(result.sources),
            "violations": list(result.violations),
            "tracking_id": result.tracking_id,
            "request_id": result.request_id,
        }
        try:
            self._r.set(
                self._k.match_cache(result.hash_sha256),
                json.dumps(doc, separators=(",", ":")),
                ex=self._ttl_s,
            )
        except redis.RedisError as exc:
            raise TransientError(f"redis unavailable: {type(exc).__name__}") from exc
        return True

    def lookup(self, hash_sha256: str) -> CachedMatch | None:
        """The cached match for this digest, or None."""
        try:
            raw = self._r.get(self._k.match_cache(hash_sha256))
        except redis.RedisError as exc:
            raise TransientError(f"redis unavailable: {type(exc).__name__}") from exc
        if raw is None:
            return None
        doc = json.loads(raw)
        return CachedMatch(
            match_ids=tuple(doc.get("match_ids") or ()),
            sources=tuple(doc.get("sources") or ()),
            violations=tuple(doc.get("violations") or ()),
            tracking_id=doc.get("tracking_id"),
            request_id=doc.get("request_id"),
        )
