"""Verdict tags on content objects: one writer at a time, on the scanned version only.

Three steps write the ``EDGEMATCH_RESULT_TAG`` of a content object: the results consumer
(``clean``, ``unscannable``, ``match``), quarantine's tag mode (``quarantined``) and the
publication gate (``pending``). S3 replaces a tag set whole and has no conditional write,
so each of them reads, merges and writes — and two of them at once could each undo the
other. They take a short Redis lock per content object (:meth:`VerdictTags.lock`) around
the read, the decision and the write, and never put a weaker verdict over a stronger one
(:func:`edgematch.pipeline.verdicts.may_replace`).

What the lock cannot cover is a write by someone else: an upload that replaces an
unversioned object between our check of its ETag (:meth:`VerdictTags.reachable`) and our
tag write gets our tag — a window of one S3 round trip, after which that upload's own
event tags it again. Versioned buckets have no such window: the tag goes on a version id.

Raised: ``LockHeld`` (transient) when another writer holds the lock past ``TAG_LOCK_WAIT_S``;
S3 and Redis errors as edgematch errors (see storage.py, locks.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import redis

from edgematch.errors import ObjectMissing
from edgematch.infra.keys import Keys
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.verdicts import CLEAN, may_replace
from edgematch.recovery.locks import LockHeld, exclusive, exclusive_many

if TYPE_CHECKING:
    from edgematch.runtime import Runtime

#: How long a tag writer waits for another one to finish (each holds the lock for a
#: few S3 round trips), before it gives up and its task retries.
TAG_LOCK_WAIT_S: Final = 5.0


class VerdictTags:
    """The verdict tag of content objects, written under a lock, never weakened."""

    def __init__(
        self,
        objects: ObjectStore,
        client: redis.Redis,
        namespace: str,
        *,
        tag_key: str,
        lock_ttl_s: float,
        tag_clean: bool = True,
    ) -> None:
        self._objects = objects
        self._tag_clean = tag_clean
        self._r = client
        self._k = Keys(namespace)
        self.tag_key = tag_key
        self._lock_ttl_s = lock_ttl_s

    def tags_verdict(self, verdict: str) -> bool:
        """Whether a result with ``verdict`` is written as a tag: every verdict but
        ``clean`` always, ``clean`` unless ``EDGEMATCH_TAG_CLEAN`` is off (and the
        publication gate, which must replace ``pending``, is off too)."""
        return verdict != CLEAN or self._tag_clean

    @contextmanager
    def lock(self, bucket: str, key: str, *, wait_s: float = TAG_LOCK_WAIT_S) -> Iterator[None]:
        """Be the only edgematch writer of this object's verdict tag for the block, waiting
        ``wait_s`` for another writer to finish (LockHeld after that)."""
        with exclusive(
            self._r,
            self._k.tag_lock(bucket, key),
            ttl_s=self._lock_ttl_s,
            what=f"tagging of s3://{bucket}/{key}",
            wait_s=wait_s,
        ):
            yield

    @contextmanager
    def lock_many(
        self, objects: Sequence[tuple[str, str]], *, wait_s: float = TAG_LOCK_WAIT_S
    ) -> Iterator[list[LockHeld | None]]:
        """:meth:`lock` of several distinct objects (bucket, key) at once, taken in one round
        trip: yields, in order, None for each object whose lock is held here for the block
        and ``LockHeld`` for each one another writer kept past ``wait_s``."""
        names = [self._k.tag_lock(bucket, key) for bucket, key in objects]
        what = {
            name: f"tagging of s3://{bucket}/{key}"
            for name, (bucket, key) in zip(names, objects, strict=True)
        }
        with exclusive_many(
            self._r, names, ttl_s=self._lock_ttl_s, what=what, wait_s=wait_s
        ) as held:
            yield [held[name] for name in names]

    def reachable(self, bucket: str, key: str, *, version_id: str | None, etag: str | None) -> bool:
        """Whether a tag write reaches exactly this content version.

        A version id names it for good. Without one (unversioned), only while the current
        object still has its ETag: one HEAD with If-Match. Unknown (neither): no.
        """
        if version_id:
            return True
        if not etag:
            return False
        try:
            self._objects.head(bucket, key, if_match=etag)
        except ObjectMissing:
            return False
        return True

    def is_current_write(
        self, bucket: str, key: str, *, version_id: str | None, etag: str | None
    ) -> bool | None:
        """Whether the object's current write is this one (by version id, else ETag);
        None when the object is gone altogether."""
        try:
            info = self._objects.head(bucket, key)
        except ObjectMissing:
            return None
        if version_id:
            return info.version_id == version_id
        return bool(etag) and info.etag == etag

    def write(
        self,
        bucket: str,
        key: str,
        value: str,
        *,
        version_id: str | None,
        lane: str = "live",
        force: bool = False,
    ) -> str | None:
        """Put ``value`` in the tag (merged with the object's other tags) unless the tag
        holds a stronger verdict (``force``: whatever it holds; ``lane``: the lane of the
        scan, see verdicts.may_replace). Call it under :meth:`lock`. Returns the tag's
        value now; None when the object is gone."""

        def stronger(existing: Mapping[str, str]) -> bool:
            return not force and not may_replace(existing.get(self.tag_key), value, lane=lane)

        try:
            now = self._objects.merge_tags(
                bucket, key, {self.tag_key: value}, version_id=version_id, unless=stronger
            )
        except ObjectMissing:
            return None
        return now.get(self.tag_key)


def verdict_tags(rt: Runtime) -> VerdictTags:
    """The verdict tags of ``rt``'s S3 client and Redis, as its settings name them."""
    return VerdictTags(
        rt.store,
        rt.redis,
        rt.settings.namespace,
        tag_key=rt.settings.result_tag,
        lock_ttl_s=rt.settings.lock_ttl_s,
        # The gate's `pending` must give way to the verdict, `clean` included.
        tag_clean=rt.settings.tag_clean or rt.settings.gate,
    )
