"""The match cache: a hash that matched once is a match again, without an API call.

When a ``match`` result is recorded, the SHA-256 of its hash bytes (never the bytes) is
remembered with the match details for ``EDGEMATCH_MATCH_CACHE_TTL_S``. Ingest looks every
new hash up before it joins the batch buffer: a re-upload of matched content gets its
``match`` result at once — quarantined and reported like any match — and spends no API
quota.

The result cache for clean verdicts is optional and off by default
(``EDGEMATCH_CLEAN_CACHE_TTL_S=0``): a clean verdict can change when the lists grow. When it
is on, a ``clean`` result from the API is remembered under its own key for that long after
the scan, and a byte-identical hash within that time gets ``clean`` without an API call.
Matches always win: remembering a match deletes the clean entry of the same digest, a clean
verdict is not remembered while a match is, and the match entry is looked at first. A clean
result that itself came from the cache is never remembered again, so re-serving a verdict
never extends its life; ``unscannable`` is never cached.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import redis

from edgematch.infra.keys import Keys
from edgematch.infra.redisclient import lua_script
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import CLEAN, MATCH, Result

#: The reason a clean result from the cache carries (no hash bytes, no digest).
CLEAN_CACHE_REASON = "result_cache: this hash was clean within EDGEMATCH_CLEAN_CACHE_TTL_S"


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


@dataclass(frozen=True)
class CachedClean:
    """The API's recent ``clean`` answer for a hash, and when it was given."""

    scanned_at: float
    tracking_id: str | None
    request_id: str | None

    def result_for(self, item: Item) -> Result:
        """The ``clean`` result for ``item``, published without asking the API again."""
        result = Result.for_item(
            item,
            verdict=CLEAN,
            tracking_id=self.tracking_id,
            request_id=self.request_id,
            reason=CLEAN_CACHE_REASON,
        )
        return replace(result, from_cache=True)


class MatchCache:
    """Remember and look up verdicts by the hash's SHA-256. Redis errors are TransientError.

    ``ttl_s`` is how long a match is remembered; ``clean_ttl_s`` how long a clean verdict
    is (0: clean verdicts are neither remembered nor looked up).
    """

    def __init__(
        self, client: redis.Redis, namespace: str, *, ttl_s: int, clean_ttl_s: int = 0
    ) -> None:
        self._r = client
        self._k = Keys(namespace)
        self._ttl_s = ttl_s
        self._clean_ttl_s = clean_ttl_s
        self._remember_clean = lua_script(client, "clean_cache_remember")

    def remember(self, result: Result) -> bool:
        """Cache a match (refreshing its TTL) or, when on, a fresh clean verdict.

        True when an entry was written; False for anything not cached: ``unscannable``, a
        clean verdict with the result cache off, one that came from the cache, one older
        than ``clean_ttl_s`` already, or one for a hash whose match is remembered.
        """
        if not result.hash_sha256:
            return False
        if result.verdict == MATCH:
            self._remember_match(result, result.hash_sha256)
            return True
        if result.verdict == CLEAN and self._clean_ttl_s > 0 and not result.from_cache:
            return self._remember_clean_verdict(result, result.hash_sha256)
        return False

    def _remember_match(self, result: Result, digest: str) -> None:
        doc = {
            "match_ids": list(result.match_ids),
            "sources": list(result.sources),
            "violations": list(result.violations),
            "tracking_id": result.tracking_id,
            "request_id": result.request_id,
        }
        pipe = self._r.pipeline()  # MULTI: no clean entry survives beside the match
        pipe.set(
            self._k.match_cache(digest), json.dumps(doc, separators=(",", ":")), ex=self._ttl_s
        )
        pipe.delete(self._k.clean_cache(digest))
        pipe.execute()

    def _remember_clean_verdict(self, result: Result, digest: str) -> bool:
        # The entry lives clean_ttl_s from the scan, not from this delivery of its result.
        age_s = max(0.0, time.time() - result.scanned_at)
        left_ms = int((self._clean_ttl_s - age_s) * 1000)
        if left_ms <= 0:
            return False
        doc = {
            "scanned_at": result.scanned_at,
            "tracking_id": result.tracking_id,
            "request_id": result.request_id,
        }
        written = self._remember_clean(
            keys=[self._k.match_cache(digest), self._k.clean_cache(digest)],
            args=[json.dumps(doc, separators=(",", ":")), left_ms],
        )
        return bool(written)

    def lookup(self, hash_sha256: str) -> CachedMatch | None:
        """The cached match for this digest, or None."""
        raw = self._r.get(self._k.match_cache(hash_sha256))
        return None if raw is None else _match(raw)

    def find(self, hash_sha256: str) -> CachedMatch | CachedClean | None:
        """The cached verdict for this digest: its match first, then (when on) clean."""
        if self._clean_ttl_s <= 0:
            return self.lookup(hash_sha256)
        raw_match, raw_clean = self._r.mget(
            [self._k.match_cache(hash_sha256), self._k.clean_cache(hash_sha256)]
        )
        return self._verdict(raw_match, raw_clean)

    def find_many(self, digests: list[str]) -> list[CachedMatch | CachedClean | None]:
        """:meth:`find` for each digest, in one ``MGET`` (an ingest batch's items)."""
        if not digests:
            return []
        keys = [self._k.match_cache(d) for d in digests]
        if self._clean_ttl_s > 0:
            keys += [self._k.clean_cache(d) for d in digests]
        raw = self._r.mget(keys)
        cleans = raw[len(digests) :] if self._clean_ttl_s > 0 else [None] * len(digests)
        return [self._verdict(m, c) for m, c in zip(raw[: len(digests)], cleans, strict=True)]

    def _verdict(
        self, raw_match: bytes | str | None, raw_clean: bytes | str | None
    ) -> CachedMatch | CachedClean | None:
        if raw_match is not None:
            return _match(raw_match)
        if raw_clean is None:
            return None
        doc = json.loads(raw_clean)
        scanned_at = float(doc.get("scanned_at") or 0.0)
        # A TTL lowered since the entry was written applies at once.
        if time.time() - scanned_at >= self._clean_ttl_s:
            return None
        return CachedClean(
            scanned_at=scanned_at,
            tracking_id=doc.get("tracking_id"),
            request_id=doc.get("request_id"),
        )


def _match(raw: bytes | str) -> CachedMatch:
    doc = json.loads(raw)
    return CachedMatch(
        match_ids=tuple(doc.get("match_ids") or ()),
        sources=tuple(doc.get("sources") or ()),
        violations=tuple(doc.get("violations") or ()),
        tracking_id=doc.get("tracking_id"),
        request_id=doc.get("request_id"),
    )
