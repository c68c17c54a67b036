"""The ingest step: one object-created event in, one item in the batch buffer out.

Idempotent on the object version (bucket, key, version id or ETag): a second delivery of
the same event adds nothing, so it never costs a second API call. Oversized and empty hash
files are refused before download. An object that can never be scanned gets an
``unscannable`` result (so its content is tagged) and a dead letter, and is marked as
accepted so that a redelivery does not fail again forever.

Two things for what follows a match: the content version the hash file stands for is
noted on the item (pinned by the hash file, else attributed by evidence, with every
candidate when that is ambiguous: pipeline/attribution.py; quarantine acts on those
versions only), and a hash whose SHA-256 is in the match cache gets its ``match`` result
at once, without joining the buffer or spending API quota. With
``EDGEMATCH_CLEAN_CACHE_TTL_S`` > 0 (off by default) a hash found clean within that time
gets its ``clean`` result the same way; a match always wins.

Raises ``TransientError`` for what is worth retrying (S3 throttling, Redis unreachable).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from edgematch.errors import (
    ConfigurationError,
    ObjectMissing,
    PermanentError,
)
from edgematch.infra.logs import get_logger
from edgematch.infra.storage import ObjectInfo, content_location
from edgematch.names import DEAD_LETTER_INGEST_PREFIX, STEP_INGEST, TASK_INGEST
from edgematch.photodna.matchcache import CachedClean, CachedMatch
from edgematch.pipeline.attribution import content_version
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import MATCH, UNSCANNABLE, Result
from edgematch.pipeline.tagging import verdict_tags
from edgematch.pipeline.verdicts import Facts, version_of
from edgematch.runtime import Runtime

log = get_logger(__name__)

PENDING = "pending"
ADDED, DUPLICATE, REFUSED, CACHED = "added", "duplicate", "refused", "cached"
#: Answered from the result cache for clean verdicts (EDGEMATCH_CLEAN_CACHE_TTL_S).
CACHED_CLEAN = "cached_clean"


class Defer(Protocol):
    """Keeps an item to push with the rest of its batch (pipeline/pushes.py): called with
    the item, its version as read and as the event named it; returns the event's outcome."""

    def __call__(self, item: Item, identity: str, alias: str) -> str: ...

    def seen_before(self) -> bool | None:
        """The cheap look's answer, made for the whole batch at once; None: look here."""

    def finds_cached(self) -> bool:
        """Whether the batch looks its items up in the match cache (and the result cache
        for clean verdicts) itself, and serves the ones found (:func:`serve_cached`)."""


def event_to_args(obj: ObjectCreated) -> dict[str, Any]:
    """The JSON arguments of an ingest task for ``obj``."""
    return {
        "bucket": obj.bucket,
        "key": obj.key,
        "version_id": obj.version_id,
        "etag": obj.etag,
        "size": obj.size,
        "event_time": obj.event_time,
        "event_name": obj.event_name,
        "sequencer": obj.sequencer,
        "source": obj.source,
    }


def args_to_event(args: dict[str, Any]) -> ObjectCreated:
    return ObjectCreated(
        bucket=args["bucket"],
        key=args["key"],
        version_id=args.get("version_id"),
        etag=args.get("etag"),
        size=args.get("size"),
        event_time=args.get("event_time"),
        event_name=args.get("event_name") or "ObjectCreated",
        sequencer=args.get("sequencer"),
        source=args.get("source") or "s3",
    )


def ingest(
    rt: Runtime,
    obj: ObjectCreated,
    *,
    correlation_id: str,
    lane: str,
    publish: Callable[[Result], None],
    start_pump: Callable[[str], None] | None,
    defer: Defer | None = None,
) -> str:
    """Fetch, validate and buffer the hash file ``obj`` names.

    Returns ADDED, DUPLICATE, REFUSED, or CACHED / CACHED_CLEAN when the verdict came from
    the match cache or the result cache for clean verdicts. ``start_pump`` None: the
    caller starts a pump if one is needed (:func:`kick`), once for a whole batch of events.
    ``defer``: the item is pushed with the rest of its batch, and this returns what
    ``defer`` does (its batch may have made the cheap look for all its events at once).
    """
    s = rt.settings
    # A cheap look before any S3 call; the atomic check is the push below.
    seen_before = defer.seen_before() if defer is not None else None
    if seen_before is None:
        seen_before = bool(rt.redis.exists(rt.buffer.keys.seen(obj.identity)))
    if seen_before:
        log.info("ingest_duplicate", bucket=obj.bucket, key=obj.key, version_id=obj.version_id)
        return DUPLICATE
    if obj.size is not None and obj.size > s.max_hash_bytes:
        message = f"hash file is {obj.size} bytes, over the limit of {s.max_hash_bytes}"
        return _refuse(rt, obj, correlation_id, lane, publish, reason="bad_input", message=message)
    try:
        info, data, content = _read(rt, obj)
        # Pinned by the hash file, else attributed by evidence; a listing refused for good
        # is VersionUnknown: unscannable, never a guess (attribution.py).
        version = content_version(rt.store, info, *content)
    except PermanentError as exc:
        return _refuse(
            rt,
            obj,
            correlation_id,
            lane,
            publish,
            reason=exc.reason,
            message=str(exc),
            # Gone, or replaced since the event: which content it stood for is unknown,
            # and its result must not touch a newer upload's (verdicts.py).
            content_known=not isinstance(exc, ObjectMissing),
        )
    item = Item.new(
        bucket=obj.bucket,
        key=obj.key,
        version_id=info.version_id or obj.version_id,
        etag=info.etag or obj.etag,
        content_bucket=content[0],
        content_key=content[1],
        data=data,
        correlation_id=correlation_id,
        lane=lane,
        event_time=obj.event_time,
        content_version_id=version.version_id,
        content_etag=version.etag,
        content_candidates=version.candidates,
        content_ambiguity=version.ambiguity,
    )
    if s.gate:
        _hold_for_scan(rt, item)
    return _buffer(rt, obj, item, publish=publish, start_pump=start_pump, defer=defer)


def _read(rt: Runtime, obj: ObjectCreated) -> tuple[ObjectInfo, bytes, tuple[str, str]]:
    """The hash file's object info and bytes, and the (bucket, key) of its content.
    Raises PermanentError for a file that can never be scanned."""
    s = rt.settings
    info, data = rt.store.read_hash(
        obj.bucket,
        obj.key,
        version_id=obj.version_id,
        max_bytes=s.max_hash_bytes,
        expected_etag=obj.etag,
        # The event's size lets the store skip its HEAD (one S3 request per hash).
        expected_size=obj.size,
    )
    content = content_location(info, suffix=s.hash_suffix, allowed_buckets=s.allowed_buckets)
    return info, data, content


def _buffer(
    rt: Runtime,
    obj: ObjectCreated,
    item: Item,
    *,
    publish: Callable[[Result], None],
    start_pump: Callable[[str], None] | None,
    defer: Defer | None = None,
) -> str:
    """Answer ``item`` from the match cache, or add it to the batch buffer and start a
    pump when none is draining it (``start_pump`` None: the caller does)."""
    as_read = replace(obj, version_id=item.version_id, etag=item.etag).identity
    if defer is not None and defer.finds_cached():
        # The batch looks its items up in the caches together, before it pushes them.
        return defer(item, as_read, obj.identity)
    cached = rt.match_cache.find(item.hash_sha256)  # the match first: matches always win
    if cached is not None:
        return _publish_cached(rt, item, cached.result_for(item), (as_read, obj.identity), publish)
    if defer is not None:
        return defer(item, as_read, obj.identity)
    if not rt.buffer.push(item, as_read, alias=obj.identity):
        log.info("ingest_duplicate", bucket=obj.bucket, key=obj.key, version_id=obj.version_id)
        return DUPLICATE
    log.info("ingest_buffered", **item.log_fields(), content_key=item.content_key)
    if start_pump is not None:
        kick(rt, start_pump)
    return ADDED


def kick(rt: Runtime, start_pump: Callable[[str], None]) -> None:
    """Start a pump if the buffer needs one more (one script call: kick.lua)."""
    pump_id = rt.buffer.kick()
    if pump_id is not None:
        start_pump(pump_id)


def _hold_for_scan(rt: Runtime, item: Item) -> None:
    """The publication gate: tag the content ``pending`` until its verdict replaces the tag.

    The bucket policy in deploy/ denies reading content tagged pending, match,
    quarantined or unscannable, so content is not served before it is scanned, and stays
    unserved when its scan fails (fail closed) until a person decides.

    A content version that already has its verdict (a replay, a rescan) keeps it while it
    is scanned again: ``pending`` never replaces a verdict of the same version (tagging.py).
    Any other version gets ``pending`` whatever its tags say, so an upload that copied an
    older version's tags is held all the same.
    """
    recorded = rt.results.current(item.bucket, item.key)
    scanned = version_of(item.content_version_id, item.content_etag)
    same_version = (
        recorded is not None
        and scanned is not None
        and Facts.of(recorded).content_version == scanned
    )
    tags = verdict_tags(rt)
    with tags.lock(item.content_bucket, item.content_key):
        now = tags.write(
            item.content_bucket,
            item.content_key,
            PENDING,
            version_id=item.content_version_id,
            lane=item.lane,
            force=not same_version,
        )
    if now is None:
        log.info("gate_content_missing", bucket=item.content_bucket, key=item.content_key)


def serve_cached(
    rt: Runtime,
    item: Item,
    cached: CachedMatch | CachedClean,
    identities: tuple[str, ...],
    publish: Callable[[Result], None],
) -> str:
    """Publish the cached verdict of a batch's item (pipeline/pushes.py). Idempotent."""
    return _publish_cached(rt, item, cached.result_for(item), identities, publish)


def _publish_cached(
    rt: Runtime,
    item: Item,
    result: Result,
    identities: tuple[str, ...],
    publish: Callable[[Result], None],
) -> str:
    """Publish a cached match (or clean verdict) in place of an API call. Idempotent."""
    seen = [rt.buffer.keys.seen(identity) for identity in dict.fromkeys(identities)]
    ttl_s = rt.settings.idempotency_ttl_s
    if not rt.redis.set(seen[0], "1", nx=True, ex=ttl_s):
        log.info("ingest_duplicate", bucket=item.bucket, key=item.key)
        return DUPLICATE
    for alias in seen[1:]:
        rt.redis.set(alias, "1", ex=ttl_s)
    try:
        publish(result)
    except Exception:
        # Not published: let the retry (or a redelivery) through again.
        rt.redis.delete(*seen)
        raise
    if result.verdict == MATCH:
        rt.buffer.count("items_from_match_cache")
        log.info("ingest_match_cached", **item.log_fields(), content_key=item.content_key)
        return CACHED
    rt.buffer.count("items_from_clean_cache")
    log.info("ingest_clean_cached", **item.log_fields(), content_key=item.content_key)
    return CACHED_CLEAN


def _refuse(
    rt: Runtime,
    obj: ObjectCreated,
    correlation_id: str,
    lane: str,
    publish: Callable[[Result], None],
    *,
    reason: str,
    message: str,
    content_known: bool = True,
) -> str:
    """Dead-letter ``obj`` and publish its ``unscannable`` result.

    The result names the content version current now (the hash key minus its suffix), so
    the content is tagged ``unscannable`` — unless ``content_known`` is False: the hash
    file was gone or replaced, and its result then tags nothing.
    """
    s = rt.settings
    content_key = obj.key[: -len(s.hash_suffix)] if obj.key.endswith(s.hash_suffix) else obj.key
    content_version_id = content_etag = None
    if content_known:
        try:
            head = rt.store.head(obj.bucket, content_key)
            content_version_id, content_etag = head.version_id, head.etag
        except (PermanentError, ConfigurationError):
            pass  # no content to tag, or none we may read
    item = Item(
        id="refused-"
        + hashlib.sha256(obj.identity.encode("utf-8", "surrogatepass")).hexdigest()[:32],
        bucket=obj.bucket,
        key=obj.key,
        version_id=obj.version_id,
        etag=obj.etag,
        size=obj.size or 0,
        content_bucket=obj.bucket,
        content_key=content_key,
        correlation_id=correlation_id,
        hash_b64="",
        lane=lane,
        event_time=obj.event_time,
        content_version_id=content_version_id,
        content_etag=content_etag,
    )
    rt.dead_letters.add(
        task=TASK_INGEST,
        queue=rt.buffer.keys.queue(STEP_INGEST),
        reason=reason,
        message=message,
        args=event_to_args(obj),
        correlation_id=correlation_id,
        bucket=obj.bucket,
        key=obj.key,
        dedupe_id=f"{DEAD_LETTER_INGEST_PREFIX}{rt.buffer.keys.seen(obj.identity)}",
    )
    publish(Result.for_item(item, verdict=UNSCANNABLE, reason=f"{reason}: {message}"))
    rt.redis.set(rt.buffer.keys.seen(obj.identity), "1", ex=s.idempotency_ttl_s)
    log.warning("ingest_refused", bucket=obj.bucket, key=obj.key, reason=reason, error=message)
    return REFUSED
