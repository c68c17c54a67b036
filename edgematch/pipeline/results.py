"""Results: one versioned JSON document per scanned item, recorded and tagged on the object.

A result is published by the match step to the ``results`` queue. Its consumer records it
in Redis for the hot window (``EDGEMATCH_RESULT_TTL_S``) and, in the same atomic step,
stages it for the verdict log in the object store (:mod:`edgematch.pipeline.verdictlog`),
where every result stays; it writes the verdict as a tag on the content version it scanned
(merged into the existing tags, never wiping them), and hands it on (to quarantine and
reporting: the caller says how, see :func:`consume`). ``edgematch result`` reads the hot
window, then the log.

Results arrive late, repeated and out of order; what each may change is one rule,
:mod:`edgematch.pipeline.verdicts`: a result replaces the recorded one only for the same or
the current hash write, tags only the version it scanned, and never weakens a stronger
verdict. The decision and the write are made under the content object's tag lock
(tagging.py), and the recorded result is written by a compare-and-set script, so two
results at once cannot undo each other. Recording is idempotent: the same result
delivered twice changes nothing the second time, and is staged for the log once.

Once a hash file's recorded result has left the hot window, a result that comes late (from
an upload older than the window, or on a replay or backfill lane) asks S3 whether its write
is the current one before it is recorded, as it would have if the record were still there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import redis

from edgematch.errors import TransientError
from edgematch.infra import metrics
from edgematch.infra.keys import Keys, location_digest
from edgematch.infra.redisclient import lua_script
from edgematch.pipeline import verdicts
from edgematch.pipeline.items import Item
from edgematch.pipeline.verdicts import ON_CALL_LANES, Decision, Facts, decide, needs_hash_check

if TYPE_CHECKING:
    from edgematch.pipeline.tagging import VerdictTags

SCHEMA = "edgematch.result/v1"
CLEAN, MATCH, UNSCANNABLE = verdicts.CLEAN, verdicts.MATCH, verdicts.UNSCANNABLE
#: Times a decision is made again when another writer recorded a result meanwhile.
_COMMIT_TRIES: Final = 3
#: What the record script answers when the verdict log is too far behind to stage more.
_LOG_BEHIND: Final = -2


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


#: What takes every recorded result on from here (quarantine, reporting …).
HandOn = Callable[[Result], None]


class LogBehind(TransientError):
    """The verdict log holds ``EDGEMATCH_VERDICT_LOG_MAX_STAGED`` results not yet written to
    the object store: no more are recorded until it catches up (the task retries)."""


class ResultStore:
    """Where results are recorded (and staged for the verdict log) and found again.

    ``ttl_s`` is the hot window; ``max_staged`` how many results may wait for the log.
    """

    def __init__(
        self, client: redis.Redis, namespace: str, *, ttl_s: int, max_staged: int = 100_000
    ) -> None:
        self._r = client
        self._k = Keys(namespace)
        self.ttl_s = ttl_s
        self._max_staged = max_staged
        self._commit = lua_script(client, "record_result")

    def current(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The result of the hash object bucket/key recorded within the hot window, if any."""
        raw = self._r.get(self._k.result(bucket, key))
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def commit(
        self, result: Result, *, record: bool, expected_item: str | None, decision: str = ""
    ) -> bool | None:
        """Note ``result`` as seen and, with ``record``, make it the recorded result of its
        hash object — only if the recorded result is still the one of ``expected_item``.
        The item's first recording is staged for the verdict log in the same step, with
        ``record`` (``current``) and ``decision`` (why) on its line.

        Returns True for the item's first recording, False for a repeat, None when another
        result was recorded since the caller read it (decide again). Raises LogBehind when
        the log cannot take it yet.
        """
        doc = result.to_dict()
        doc["recorded_at"] = time.time()
        line = {**doc, "current": record, "decision": decision}
        outcome = int(
            self._commit(
                keys=[
                    self._k.result(result.bucket, result.key),
                    self._k.content_result(result.content_bucket, result.content_key),
                    self._k.result_item(result.item_id),
                    self._k.log_staged,
                ],
                args=[
                    result.item_id,
                    expected_item or "",
                    "1" if record else "0",
                    json.dumps(doc, separators=(",", ":")),
                    location_digest(result.bucket, result.key),
                    self.ttl_s,
                    json.dumps(line, separators=(",", ":")),
                    self._max_staged,
                ],
            )
        )
        if outcome == _LOG_BEHIND:
            raise LogBehind(
                f"the verdict log has {self._max_staged} results not yet written to the "
                "object store (EDGEMATCH_VERDICT_LOG_MAX_STAGED); recording waits for it"
            )
        return None if outcome < 0 else bool(outcome)

    def get(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The result for a hash object, or for a content object (looked up through it),
        within the hot window — or kept under an earlier release's keys until they expire."""
        raw = self._r.get(self._k.result(bucket, key))
        if raw is None:
            pointer = self._r.get(self._k.content_result(bucket, key))
            if pointer is not None:
                digest = pointer.decode() if isinstance(pointer, bytes) else str(pointer)
                raw = self._r.get(self._k.result_by_digest(digest))
        if raw is None:
            raw = self._legacy(bucket, key)
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def _legacy(self, bucket: str, key: str) -> Any:
        raw = self._r.get(self._k.legacy_result(bucket, key))
        if raw is not None:
            return raw
        pointer = self._r.get(self._k.legacy_content_result(bucket, key))
        if pointer is None:
            return None
        text = pointer.decode() if isinstance(pointer, bytes) else str(pointer)
        hash_bucket, _, hash_key = text.partition("/")
        return self._r.get(self._k.legacy_result(hash_bucket, hash_key))


def _event_epoch(event_time: str | None) -> float | None:
    """The upload event's time (ISO 8601, as S3 writes it) in epoch seconds, if readable."""
    if not event_time:
        return None
    try:
        return datetime.fromisoformat(event_time.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_late(result: Result, *, hot_window_s: float, now: float) -> bool:
    """Whether another write's result may have left the hot window since ``result``'s object
    was uploaded: it was uploaded half the window ago or more, or it is on a lane an
    on-call person started (a replay, a backfill). Pure.

    A newer write of the same key was uploaded after this one, so its result was recorded
    less than the upload's age ago: while that age is under the window, the record is there.
    """
    if result.lane in ON_CALL_LANES:
        return True
    uploaded = _event_epoch(result.event_time) or result.enqueued_at
    return bool(uploaded) and now - uploaded >= hot_window_s / 2


def consume(
    result: Result, *, store: ResultStore, tags: VerdictTags, log: Any, hand_on: HandOn
) -> bool:
    """Record, tag and hand on one result under the rule of verdicts.py. Idempotent.

    ``hand_on`` is called with the result once it is recorded and tagged. Returns False
    for a repeat of a result recorded before.
    """
    with tags.lock(result.content_bucket, result.content_key):
        fresh, decision = _commit(result, store=store, tags=tags)
        tag = _tag(result, tags=tags, log=log) if decision.tag else None
    # Downstream consumers run on repeats and on superseded results too: a crash after
    # recording must not leave a match unquarantined, and an older version that matched
    # is quarantined and reported on its own. They are idempotent on their own.
    hand_on(result)
    if not fresh:
        log.info("result_repeat", verdict=result.verdict)
        return False
    _measure(result)
    log.info(
        "result_recorded",
        item_id=result.item_id,
        verdict=result.verdict,
        bucket=result.bucket,
        key=result.key,
        content_key=result.content_key,
        match_ids=list(result.match_ids),
        attempts=result.attempts,
        tracking_id=result.tracking_id,
        # Whether it is now the result of its hash file, and what the content's tag is.
        current=decision.record,
        decision=decision.why,
        tag=tag,
    )
    return True


def _commit(result: Result, *, store: ResultStore, tags: VerdictTags) -> tuple[bool, Decision]:
    """Decide what ``result`` may change and record it (under the caller's tag lock);
    decide again when another writer recorded a result meanwhile. Returns whether this
    was the item's first recording, and the decision.

    Raises TransientError when the recorded result kept changing.
    """
    new = Facts.of(result.to_dict())
    late = is_late(result, hot_window_s=store.ttl_s, now=time.time())
    for _ in range(_COMMIT_TRIES):
        previous = store.current(result.bucket, result.key)
        recorded = Facts.of(previous) if previous is not None else None
        decision = _decide(result, new, recorded, tags=tags, late=late)
        fresh = store.commit(
            result,
            record=decision.record,
            expected_item=recorded.item_id if recorded else None,
            decision=decision.why,
        )
        if fresh is not None:
            return fresh, decision
    raise TransientError(
        f"the result of s3://{result.bucket}/{result.key} kept changing while recorded"
    )


def _decide(
    result: Result, new: Facts, recorded: Facts | None, *, tags: VerdictTags, late: bool
) -> Decision:
    """The rule of verdicts.py, given what it needs to know from S3."""
    hash_current = None
    if needs_hash_check(new, recorded, late=late):
        hash_current = tags.is_current_write(
            result.bucket, result.key, version_id=result.version_id, etag=result.etag
        )
    reachable = new.content_version is not None and tags.reachable(
        result.content_bucket,
        result.content_key,
        version_id=result.content_version_id,
        etag=result.content_etag,
    )
    return decide(new, recorded, hash_current=hash_current, content_reachable=reachable)


def _tag(result: Result, *, tags: VerdictTags, log: Any) -> str | None:
    """Write the verdict tag on the scanned content version; None when it is gone."""
    tag = tags.write(
        result.content_bucket,
        result.content_key,
        result.verdict,
        version_id=result.content_version_id,
        lane=result.lane,
    )
    if tag is None:
        # Deleted before we could tag it: nothing is left to serve.
        log.warning("content_missing", bucket=result.content_bucket, key=result.content_key)
    return tag


def _measure(result: Result) -> None:
    """Count a newly recorded result, and the time since its upload."""
    metrics.HASHES_SCANNED.labels(result.verdict, result.lane).inc()
    if result.is_match:
        metrics.MATCHES.inc()
    started = _event_epoch(result.event_time) or result.enqueued_at
    if started:
        metrics.END_TO_END.labels(result.lane).observe(max(0.0, time.time() - started))
