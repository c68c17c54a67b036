"""What each item's answer becomes: a verdict, another attempt later, or ``unscannable``.

- 3000 → a ``clean`` or ``match`` result;
- transient (3004, missing, an answer the rule in ``answers`` cannot attribute, 5xx,
  timeouts) → sent again after a jittered backoff, until ``max_attempts``, then
  ``unscannable``;
- permanent (3002, 3206, 3208, 3209) → ``unscannable`` with the reason, and a dead letter.

A match signal is never forgotten: when an answer that could not be attributed may have
said an item matched, the item goes back carrying that signal (``Item.match_signal``), and
it can then only end ``match`` (a later answer says so, unambiguously) or ``unscannable``
with a ``match_signalled`` dead letter — never ``clean``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgematch.errors import (
    CredentialError,
    EdgematchError,
    ItemRejected,
    ItemTransient,
    PermanentError,
    RequestRejected,
    ServerError,
    TransientError,
)
from edgematch.infra import metrics
from edgematch.infra.backoff import compute_backoff
from edgematch.infra.logs import get_logger
from edgematch.names import DEAD_LETTER_ITEM_PREFIX, DEAD_LETTER_MATCH, STEP_MATCH
from edgematch.photodna.client import BatchResponse, ItemOutcome
from edgematch.pipeline.buffer import Batch
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import CLEAN, MATCH, UNSCANNABLE, Result
from edgematch.runtime import Runtime

log = get_logger(__name__)

#: The reason of a result and dead letter for an item an answer may have said matched
#: and no answer confirmed: on-call must look at it as a possible match.
MATCH_SIGNALLED = "match_signalled"

Publish = Callable[[Result], None]
#: Hands the results of one request on together (one results task per request).
PublishMany = Callable[[Sequence[Result]], None]


class BatchResults:
    """The results of one batch, published together just before the batch is settled.

    Published first, settled second: a crash between the two sends the batch again and
    the results consumer drops the repeats; the other order could lose results.
    """

    def __init__(self, publish_many: PublishMany) -> None:
        self._publish_many = publish_many
        self._results: list[Result] = []

    def add(self, result: Result) -> None:
        self._results.append(result)

    def flush(self) -> None:
        if self._results:
            self._publish_many(tuple(self._results))
            self._results.clear()


def status_code(exc: EdgematchError) -> int | None:
    """The HTTP or API status code an error carries, for the classes that carry one."""
    carriers = CredentialError | ServerError | ItemTransient | ItemRejected | RequestRejected
    return exc.status_code if isinstance(exc, carriers) else None


def settle_all(rt: Runtime, batch: Batch, exc: EdgematchError, *, results: BatchResults) -> None:
    finished: list[str] = []
    again: list[tuple[Item, float]] = []
    for item in batch.items:
        _decide(rt, item.sent(exc.reason), exc, finished=finished, again=again, publish=results.add)
    settle(rt, batch, finished, again, results)


def settle(
    rt: Runtime,
    batch: Batch,
    finished: Sequence[str],
    again: Sequence[tuple[Item, float]],
    results: BatchResults,
) -> None:
    results.flush()
    if not rt.buffer.settle(batch.id, finished, again):
        log.warning("lease_lost", batch_id=batch.id, items=len(batch.items))


def settle_response(
    rt: Runtime, batch: Batch, response: BatchResponse, *, results: BatchResults
) -> None:
    finished: list[str] = []
    again: list[tuple[Item, float]] = []
    for item in batch.items:
        outcome = response.outcomes[item.id]
        sent = item.sent(outcome.error.reason if outcome.error else None)
        if outcome.match_signalled and not outcome.is_match:
            sent = _signal(sent, outcome, response)
        if outcome.error is not None:
            _decide(
                rt,
                sent,
                outcome.error,
                finished=finished,
                again=again,
                publish=results.add,
                response=response,
                outcome=outcome,
            )
        elif outcome.is_match or sent.match_signal is None:
            results.add(_verdict(sent, outcome, response))
            finished.append(item.id)
        else:
            # Clean now, possibly a match before: this answer cannot outweigh that one,
            # and asking again would only repeat it. A person decides.
            _give_up(
                rt,
                sent,
                MATCH_SIGNALLED,
                f"a match was signalled ({sent.match_signal}); "
                f"attempt {sent.attempts} answered clean",
                finished=finished,
                publish=results.add,
                response=response,
                outcome=outcome,
            )
    settle(rt, batch, finished, again, results)


def _signal(item: Item, outcome: ItemOutcome, response: BatchResponse) -> Item:
    """``item`` remembering that this answer may have said it matched."""
    note = (
        f"attempt {item.attempts}, tracking id {response.tracking_id or 'none'}: "
        f"{outcome.description}"
    )
    if item.match_signal is None:
        log.warning("item_match_signalled", **item.log_fields(), signal=note)
    return item.signalled(note)


def _decide(
    rt: Runtime,
    item: Item,
    exc: EdgematchError,
    *,
    finished: list[str],
    again: list[tuple[Item, float]],
    publish: Publish,
    response: BatchResponse | None = None,
    outcome: ItemOutcome | None = None,
) -> None:
    """Retry ``item`` later, or give up on it with an ``unscannable`` result."""
    s = rt.settings
    if isinstance(exc, TransientError) and item.attempts < s.max_attempts:
        delay = compute_backoff(item.attempts, base_s=s.backoff_base_s, cap_s=s.backoff_cap_s)
        again.append((item, delay))
        metrics.RETRIES.labels(exc.reason).inc()
        log.info("item_retry", **item.log_fields(), reason=exc.reason, delay_s=round(delay, 3))
        return
    reason = exc.reason if isinstance(exc, PermanentError) else "retries_exhausted"
    message = str(exc)
    if item.match_signal is not None:
        # Whatever ended it, the item may be a match: that is what on-call must see first.
        message = (
            f"a match was signalled ({item.match_signal}) and never confirmed; {reason}: {exc}"
        )
        reason = MATCH_SIGNALLED
    _give_up(
        rt,
        item,
        reason,
        message,
        finished=finished,
        publish=publish,
        response=response,
        outcome=outcome,
        status_code=status_code(exc),
    )


def _give_up(
    rt: Runtime,
    item: Item,
    reason: str,
    message: str,
    *,
    finished: list[str],
    publish: Publish,
    response: BatchResponse | None,
    outcome: ItemOutcome | None,
    status_code: int | None = None,
) -> None:
    """End ``item`` ``unscannable`` with ``reason``, and keep a dead letter for on-call."""
    result = Result.for_item(
        item,
        verdict=UNSCANNABLE,
        tracking_id=response.tracking_id if response else None,
        request_id=response.request_id if response else None,
        status_code=outcome.status_code if outcome else status_code,
        status_description=outcome.description if outcome else None,
        reason=f"{reason}: {message}",
    )
    rt.dead_letters.add(
        task=DEAD_LETTER_MATCH,
        queue=rt.buffer.keys.queue(STEP_MATCH),
        reason=reason,
        message=message,
        args={
            "bucket": item.bucket,
            "key": item.key,
            "version_id": item.version_id,
            "etag": item.etag,
        },
        attempts=item.attempts,
        correlation_id=item.correlation_id,
        bucket=item.bucket,
        key=item.key,
        dedupe_id=f"{DEAD_LETTER_ITEM_PREFIX}{item.id}",
    )
    publish(result)
    finished.append(item.id)
    log.warning("item_unscannable", **item.log_fields(), reason=reason, error=message)


def _verdict(item: Item, outcome: ItemOutcome, response: BatchResponse) -> Result:
    return Result.for_item(
        item,
        verdict=MATCH if outcome.is_match else CLEAN,
        is_match=outcome.is_match,
        match_ids=outcome.match_ids,
        sources=outcome.sources,
        violations=outcome.violations,
        tracking_id=response.tracking_id,
        request_id=response.request_id,
        status_code=outcome.status_code,
        status_description=outcome.description,
    )
