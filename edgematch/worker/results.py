"""Results: one versioned JSON document per scanned item, recorded and tagged on the object.

A result is published by the match step to the ``results`` queue. Its consumer records it
in Redis (looked up with ``edgematch result s3://bucket/key``), writes the verdict as a tag
on the content object (merged into the existing tags, never wiping them), and hands
matches to the downstream consumers registered with :func:`register_downstream`.
Recording is idempotent: the same result delivered twice changes nothing the second time.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import redis

from edgematch.worker import metrics
from edgematch.worker.errors import ObjectMissing
from edgematch.worker.items import Item
from edgematch.worker.keys import Keys

SCHEMA = "edgematch.result/v1"
CLEAN, MATCH, UNSCANNABLE = "clean", "match", "unscannable"


@dataclass(frozen=True)
class Result:
    """The verdict on one hash file, in the shape every downstream consumer reads."""

    item_id: str
    verdict: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    content_bucket: str
    content_key: str
    is_match: bool
    correlation_id: str
    attempts: int
    lane: str = "live"
    match_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    violations: tuple[str, ...] = ()
    tracking_id: str | None = None
    request_id: str | None = None
    status_code: int | None = None
    status_description: str | None = None
    reason: str | None = None
    event_time: str | None = None
    enqueued_at: float = 0.0
    scanned_at: float = field(default_factory=time.time)
    schema: str = SCHEMA
    # Added after v1 shipped; defaults keep older documents readable.
    #: The content object's version (or ETag) as of ingest: what quarantine acts on.
    content_version_id: str | None = None
    content_etag: str | None = None
    #: SHA-256 of the hash bytes (not the bytes): the match cache's key.
    hash_sha256: str | None = None
    #: True when the verdict came from the match cache, without an API call.
    from_cache: bool = False

    @classmethod
    def for_item(
        cls,
        item: Item,
        *,
        verdict: str,
        is_match: bool = False,
        match_ids: tuple[str, ...] = (),
        sources: tuple[str, ...] = (),
        violations: tuple[str, ...] = (),
        tracking_id: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        status_description: str | None = None,
        reason: str | None = None,
    ) -> Result:
        return cls(
            item_id=item.id,
            verdict=verdict,
            bucket=item.bucket,
            key=item.key,
            version_id=item.version_id,
            etag=item.etag,
            content_bucket=item.content_bucket,
            content_key=item.content_key,
            is_match=is_match,
            correlation_id=item.correlation_id,
            attempts=item.attempts,
            lane=item.lane,
            match_ids=match_ids,
            sources=sources,
            violations=violations,
            tracking_id=tracking_id,
            request_id=request_id,
            status_code=status_code,
            status_description=status_description,
            reason=reason,
            event_time=item.event_time,
            enqueued_at=item.enqueued_at,
            content_version_id=item.content_version_id,
            content_etag=item.content_etag,
            hash_sha256=item.hash_sha256 if item.hash_b64 else None,
        )

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for name in ("match_ids", "sources", "violations"):
            doc[name] = list(doc[name])
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Result:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unknown result schema {doc.get('schema')!r}")
        # Fields a newer release added are ignored, so old and new workers can overlap.
        known = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in doc.items() if name in known}
        for name in ("match_ids", "sources", "violations"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


Downstream = Callable[[Result], None]
_downstream: list[Downstream] = []


def register_downstream(consumer: Downstream) -> None:
    """Add a consumer called with every newly recorded result (quarantine, reporting …)."""
    if consumer not in _downstream:
        _downstream.append(consumer)


class ResultStore:
    """Where results are recorded and found again."""

    def __init__(self, client: redis.Redis, namespace: str, *, ttl_s: int) -> None:
        self._r = client
        self._k = Keys(namespace)
        self._ttl_s = ttl_s

    def record(self, result: Result) -> bool:
        """Record ``result``; False when the same item's result was recorded already."""
        doc = result.to_dict()
        doc["recorded_at"] = time.time()
        body = json.dumps(doc, separators=(",", ":"))
        key = self._k.result(result.bucket, result.key)
        previous = self._r.get(key)
        if previous is not None and json.loads(previous).get("item_id") == result.item_id:
            return False
        pipe = self._r.pipeline()
        pipe.set(key, body, ex=self._ttl_s)
        pipe.set(
            self._k.content_result(result.content_bucket, result.content_key),
            f"{result.bucket}/{result.key}",
            ex=self._ttl_s,
        )
        pipe.execute()
        return True

    def get(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The result for a hash object, or for a content object (looked up through it)."""
        raw = self._r.get(self._k.result(bucket, key))
        if raw is None:
            pointer = self._r.get(self._k.content_result(bucket, key))
            if pointer is None:
                return None
            text = pointer.decode() if isinstance(pointer, bytes) else str(pointer)
            hash_bucket, _, hash_key = text.partition("/")
            raw = self._r.get(self._k.result(hash_bucket, hash_key))
            if raw is None:
                return None
        doc: dict[str, Any] = json.loads(raw)
        return doc


#: Writes tags on (bucket, key), on one version when the version id is not None.
TagWriter = Callable[[str, str, dict[str, str], str | None], None]


def _event_epoch(event_time: str | None) -> float | None:
    """The upload event's time (ISO 8601, as S3 writes it) in epoch seconds, if readable."""
    if not event_time:
        return None
    try:
        return datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def consume(
    result: Result,
    *,
    store: ResultStore,
    write_tags: TagWriter,
    tag_key: str,
    log: Any,
) -> bool:
    """Record, tag and hand on one result. Idempotent. Returns False for a repeat."""
    fresh = store.record(result)
    try:
        # The scanned version, when ingest could name it: a newer upload of the same key
        # gets its own verdict, and a version quarantine moved away is not re-created.
        write_tags(
            result.content_bucket,
            result.content_key,
            {tag_key: result.verdict},
            result.content_version_id,
        )
    except ObjectMissing:
        # The user deleted the content before we could tag it: nothing is left to serve.
        log.warning("content_missing", bucket=result.content_bucket, key=result.content_key)
    # Downstream consumers run on repeats too: a crash after recording must not leave a
    # match unquarantined. They are idempotent on their own.
    for consumer in list(_downstream):
        consumer(result)
    if not fresh:
        log.info("result_repeat", verdict=result.verdict)
        return False
    metrics.HASHES_SCANNED.labels(result.verdict, result.lane).inc()
    if result.is_match:
        metrics.MATCHES.inc()
    started = _event_epoch(result.event_time) or result.enqueued_at
    if started:
        metrics.END_TO_END.labels(result.lane).observe(max(0.0, time.time() - started))
    log.info(
        "result_recorded",
        verdict=result.verdict,
        bucket=result.bucket,
        key=result.key,
        content_key=result.content_key,
        match_ids=list(result.match_ids),
        attempts=result.attempts,
        tracking_id=result.tracking_id,
    )
    return True
