"""Recording the results of one batch together: :mod:`edgematch.pipeline.recording`'s rule
for each of them, in a few Redis round trips a batch instead of a few an item.

For a batch (the answers of one API request): the tag locks of all its content objects in
one round trip (tagging.lock_many), the recorded results of all its hash objects in one
MGET, every item's compare-and-set and verdict log line in one script call
(``record_results.lua``), the tag writes side by side, and the locks released with one
command. What each item may change, and every guarantee, is the one-item path's
(recording.consume): decided by verdicts.py under the item's tag lock, never weakening a
stronger verdict, idempotent on redelivery, staged for the verdict log exactly when first
recorded.

Each item succeeds or fails alone: a lock another writer keeps, an S3 error, a verdict log
with room for only part of the batch, an allowlist that cannot be read — each fails only
its own item, returned as its exception for the caller to retry (then dead letter) on its
own; the others are recorded. An item retried that way finds what was done as a repeat.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from edgematch.errors import TransientError
from edgematch.infra.fanout import fan_out
from edgematch.pipeline.recording import (
    COMMIT_TRIES,
    decide_for,
    is_late,
    log_recorded,
    measure,
    write_tag,
)
from edgematch.pipeline.results import HandOn, Result
from edgematch.pipeline.resultstore import Commit, LogBehind, ResultStore
from edgematch.pipeline.verdicts import Decision, Facts

if TYPE_CHECKING:
    from edgematch.pipeline.allowlist import Allowlist
    from edgematch.pipeline.tagging import VerdictTags

#: One outcome an item: True for its first recording, False for a repeat, else why it failed.
Outcome = bool | BaseException


@dataclass
class _Item:
    """One result of the batch, and what became of it so far."""

    result: Result
    tagged: bool
    recorded: Facts | None = None
    decision: Decision | None = None
    fresh: bool | None = None
    tag: str | None = None
    failure: BaseException | None = None


def consume_many(
    results: Sequence[Result],
    *,
    store: ResultStore,
    tags: VerdictTags,
    log: Any,
    hand_on: HandOn,
    allowlist: Allowlist | None = None,
) -> list[Outcome]:
    """Record, tag and hand on each of ``results`` as recording.consume does one.
    Idempotent. Returns one outcome a result, in order: True for its first recording,
    False for a repeat, or the exception that failed it (the others are not affected).
    """
    items: list[_Item] = []
    for result in results:
        try:
            screened = allowlist.screen(result) if allowlist is not None else result
            items.append(_Item(screened, tagged=tags.tags_verdict(screened.verdict)))
        except Exception as exc:  # noqa: BLE001 - this item's own retry applies the policy
            items.append(_Item(result, tagged=False, failure=exc))
    for group in rounds([item for item in items if item.failure is None]):
        try:
            _record_round(group, store=store, tags=tags, log=log)
        except Exception as exc:  # noqa: BLE001 - each item's own retry applies the policy
            # Redis unreachable for the round: whatever was done is found as a repeat.
            for item in group:
                if item.failure is None:
                    item.failure = exc
    return [_finish(item, hand_on=hand_on, log=log) for item in items]


def consume_documents(
    docs: Sequence[dict[str, Any]],
    *,
    store: ResultStore,
    tags: VerdictTags,
    log: Any,
    hand_on: HandOn,
    allowlist: Allowlist | None = None,
) -> list[str | BaseException]:
    """:func:`consume_many` for result documents as the results queue carries them: one
    outcome a document, in order — ``"recorded"``, ``"repeat"``, or the exception that
    failed it (an unreadable document fails alone, its own task retries it)."""
    parsed: list[Result | BaseException] = []
    for doc in docs:
        try:
            parsed.append(Result.from_dict(doc))
        except Exception as exc:  # noqa: BLE001 - its own task applies the policy
            parsed.append(exc)
    readable = [r for r in parsed if isinstance(r, Result)]
    recorded = iter(
        consume_many(
            readable, store=store, tags=tags, log=log, hand_on=hand_on, allowlist=allowlist
        )
    )
    outcomes: list[str | BaseException] = []
    for r in parsed:
        o = next(recorded) if isinstance(r, Result) else r
        outcomes.append(o if isinstance(o, BaseException) else "recorded" if o else "repeat")
    return outcomes


def rounds(items: Sequence[_Item]) -> list[list[_Item]]:
    """``items`` in rounds, in order, no round holding two items of one hash object or one
    content object: their compare-and-sets and tag locks would be one another's. Pure."""
    out: list[list[_Item]] = []
    for item in items:
        r = item.result
        for group in out:
            if not any(
                (o.result.bucket, o.result.key) == (r.bucket, r.key)
                or (o.result.content_bucket, o.result.content_key)
                == (r.content_bucket, r.content_key)
                for o in group
            ):
                group.append(item)
                break
        else:
            out.append([item])
    return out


def _record_round(items: list[_Item], *, store: ResultStore, tags: VerdictTags, log: Any) -> None:
    """Decide, record and tag ``items`` (of distinct objects) under their tag locks."""
    locked = [item for item in items if item.tagged]
    with tags.lock_many([(i.result.content_bucket, i.result.content_key) for i in locked]) as held:
        for item, kept_by_other in zip(locked, held, strict=True):
            item.failure = kept_by_other
        _commit([item for item in items if item.failure is None], store=store, tags=tags)
        to_tag = [i for i in items if i.failure is None and i.decision and i.decision.tag]
        _each(to_tag, lambda item: _write_tag(item, tags=tags, log=log))


def _commit(items: list[_Item], *, store: ResultStore, tags: VerdictTags) -> None:
    """Decide what each item may change and record them all in one script call; decide
    again for those another writer recorded a result for meanwhile."""
    now = time.time()
    pending = items
    for _ in range(COMMIT_TRIES):
        if not pending:
            return
        currents = store.current_many([(i.result.bucket, i.result.key) for i in pending])
        for item, current in zip(pending, currents, strict=True):
            recorded = Facts.of(current) if current is not None else None
            item.recorded, item.decision = recorded, None
        _each(pending, lambda item: _decide(item, store=store, tags=tags, now=now))
        decided = [item for item in pending if item.failure is None and item.decision]
        answers = store.commit_many(
            [
                Commit(
                    i.result,
                    record=i.decision.record,
                    expected_item=i.recorded.item_id if i.recorded else None,
                    decision=i.decision.why,
                )
                for i in decided
                if i.decision
            ]
        )
        pending = []
        for item, answer in zip(decided, answers, strict=True):
            if answer is None:
                pending.append(item)
            elif isinstance(answer, LogBehind):
                item.failure = answer
            else:
                item.fresh = answer
    for item in pending:
        item.failure = TransientError(
            f"the result of s3://{item.result.bucket}/{item.result.key} kept changing "
            "while recorded"
        )


def _decide(item: _Item, *, store: ResultStore, tags: VerdictTags, now: float) -> None:
    """recording's decision for ``item`` (may ask S3), given the result recorded now."""
    r = item.result
    item.decision = decide_for(
        r,
        Facts.of(r.to_dict()),
        item.recorded,
        tags=tags,
        late=is_late(r, hot_window_s=store.ttl_s, now=now),
        tagged=item.tagged,
    )


def _write_tag(item: _Item, *, tags: VerdictTags, log: Any) -> None:
    with structlog.contextvars.bound_contextvars(correlation_id=item.result.correlation_id):
        item.tag = write_tag(item.result, tags=tags, log=log)


def _each(items: list[_Item], work: Callable[[_Item], None]) -> None:
    """``work`` on each item, side by side when there are several (S3 round trips); an
    item whose work raises has failed, and the others go on."""

    def one(item: _Item) -> None:
        try:
            work(item)
        except Exception as exc:  # noqa: BLE001 - this item's own retry applies the policy
            item.failure = exc

    if len(items) == 1:
        one(items[0])
    elif items:
        fan_out(one, items)


def _finish(item: _Item, *, hand_on: HandOn, log: Any) -> Outcome:
    """Hand a recorded item on and say so, as recording.consume does; or its failure."""
    if item.failure is not None:
        return item.failure
    result = item.result
    with structlog.contextvars.bound_contextvars(correlation_id=result.correlation_id):
        try:
            # On repeats and superseded results too (see recording.consume).
            hand_on(result)
        except Exception as exc:  # noqa: BLE001 - this item's own retry applies the policy
            return exc
        if not item.fresh:
            log.info("result_repeat", verdict=result.verdict)
            return False
        measure(result)
        if item.decision is not None:
            log_recorded(result, item.decision, tag=item.tag, log=log)
        return True
