"""Recording a result: decided, recorded, tagged on the object and handed on.

A result is published by the match step to the ``results`` queue. Its consumer,
:func:`consume`, records it in Redis for the hot window (``EDGEMATCH_RESULT_TTL_S``) and, in
the same atomic step, stages it for the verdict log in the object store
(:mod:`edgematch.pipeline.resultstore`, :mod:`edgematch.pipeline.verdictlog`), where every
result stays; it writes the verdict as a tag on the content version it scanned (merged into
the existing tags, never wiping them), and hands it on (to quarantine and reporting: the
caller says how). ``edgematch result`` reads the hot window, then the log.

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

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from edgematch.errors import TransientError
from edgematch.infra import metrics
from edgematch.pipeline.results import ALLOWLISTED, CLEAN, HandOn, Result
from edgematch.pipeline.resultstore import ResultStore
from edgematch.pipeline.verdicts import ON_CALL_LANES, Decision, Facts, decide, needs_hash_check

if TYPE_CHECKING:
    from edgematch.pipeline.allowlist import Allowlist
    from edgematch.pipeline.tagging import VerdictTags

#: Times a decision is made again when another writer recorded a result meanwhile.
COMMIT_TRIES: Final = 3


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
    result: Result,
    *,
    store: ResultStore,
    tags: VerdictTags,
    log: Any,
    hand_on: HandOn,
    allowlist: Allowlist | None = None,
) -> bool:
    """Record, tag and hand on one result under the rule of verdicts.py. Idempotent.

    A ``match`` is first screened by ``allowlist`` (allowlist.py): all its match ids
    allowlisted, it is recorded, tagged and handed on as ``allowlisted``. A list that
    cannot be read raises, and the result is not recorded (its task retries). ``hand_on``
    is called with the result once it is recorded and tagged. Returns False for a repeat
    of a result recorded before.
    """
    if allowlist is not None:
        result = allowlist.screen(result)
    if tags.tags_verdict(result.verdict):
        with tags.lock(result.content_bucket, result.content_key):
            fresh, decision = _commit(result, store=store, tags=tags)
            tag = write_tag(result, tags=tags, log=log) if decision.tag else None
    else:
        # Not tagged (EDGEMATCH_TAG_CLEAN off): no tag to guard, and the record is a
        # compare-and-set of its own.
        fresh, decision = _commit(result, store=store, tags=tags, tagged=False)
        tag = None
    # Downstream consumers run on repeats and on superseded results too: a crash after
    # recording must not leave a match unquarantined, and an older version that matched
    # is quarantined and reported on its own. They are idempotent on their own.
    hand_on(result)
    if not fresh:
        log.info("result_repeat", verdict=result.verdict)
        return False
    measure(result)
    log_recorded(result, decision, tag=tag, log=log)
    return True


def log_recorded(result: Result, decision: Decision, *, tag: str | None, log: Any) -> None:
    """The ``result_recorded`` event of a result's first recording."""
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


def _commit(
    result: Result, *, store: ResultStore, tags: VerdictTags, tagged: bool = True
) -> tuple[bool, Decision]:
    """Decide what ``result`` may change and record it (under the caller's tag lock);
    decide again when another writer recorded a result meanwhile. Returns whether this
    was the item's first recording, and the decision. ``tagged``: False when the result
    is not written as a tag (its decision then never says to tag).

    Raises TransientError when the recorded result kept changing.
    """
    new = Facts.of(result.to_dict())
    late = is_late(result, hot_window_s=store.ttl_s, now=time.time())
    for _ in range(COMMIT_TRIES):
        previous = store.current(result.bucket, result.key)
        recorded = Facts.of(previous) if previous is not None else None
        decision = decide_for(result, new, recorded, tags=tags, late=late, tagged=tagged)
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


def decide_for(
    result: Result,
    new: Facts,
    recorded: Facts | None,
    *,
    tags: VerdictTags,
    late: bool,
    tagged: bool = True,
) -> Decision:
    """The rule of verdicts.py, given what it needs to know from S3."""
    hash_current = None
    if needs_hash_check(new, recorded, late=late):
        hash_current = tags.is_current_write(
            result.bucket, result.key, version_id=result.version_id, etag=result.etag
        )
    # A verdict that lets content be read is written only on a version known to be the
    # scanned one: with an ambiguous attribution (attribution.py) it tags nothing, and the
    # content keeps what it holds (`pending` under the publication gate). Fail closed.
    opens = result.verdict in (CLEAN, ALLOWLISTED) and bool(result.content_ambiguity)
    reachable = (
        tagged
        and not opens
        and new.content_version is not None
        and tags.reachable(
            result.content_bucket,
            result.content_key,
            version_id=result.content_version_id,
            etag=result.content_etag,
        )
    )
    return decide(new, recorded, hash_current=hash_current, content_reachable=reachable)


def write_tag(result: Result, *, tags: VerdictTags, log: Any) -> str | None:
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


def measure(result: Result) -> None:
    """Count a newly recorded result, and the time since its upload."""
    metrics.HASHES_SCANNED.labels(result.verdict, result.lane).inc()
    if result.verdict == ALLOWLISTED:
        metrics.ALLOWLISTED.inc()  # a match a person cleared: not counted as one
    elif result.is_match:
        metrics.MATCHES.inc()
    started = _event_epoch(result.event_time) or result.enqueued_at
    if started:
        metrics.END_TO_END.labels(result.lane).observe(max(0.0, time.time() - started))
