"""The match step: drain the batch buffer into the API under the pool-wide limit.

A *pump* is one match task that loops for at most ``pump_max_s``: take a batch when a
slot is free, send it, settle it, repeat. Pumps are few (bounded by ``match_pumps`` and by
the batches waiting), short, and never wait long inside a worker process: when the pool
must wait longer than a pump may run (a 429 cooldown, an open breaker), the pump ends
and the beat's sweep starts a new one when the wait is nearly over.

Outcome handling, item by item:
- 3000 → a ``clean`` or ``match`` result;
- transient (3004, missing, an answer the rule in ``answers`` cannot attribute, 5xx,
  timeouts) → sent again after a jittered backoff, until ``max_attempts``, then
  ``unscannable``;
- permanent (3002, 3206, 3208, 3209) → ``unscannable`` with the reason, and a dead letter;
- 429 → the pool cools down for Retry-After; the items go back without losing an attempt;
- 401/403 → the breaker opens for the pool; the items go back without losing an attempt.

A match signal is never forgotten: when an answer that could not be attributed may have
said an item matched, the item goes back carrying that signal (``Item.match_signal``), and
it can then only end ``match`` (a later answer says so, unambiguously) or ``unscannable``
with a ``match_signalled`` dead letter — never ``clean``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgematch.errors import (
    CredentialError,
    EdgematchError,
    ItemRejected,
    ItemTransient,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.infra import metrics, outages
from edgematch.infra.backoff import compute_backoff
from edgematch.infra.logs import get_logger
from edgematch.names import DEAD_LETTER_ITEM_PREFIX, DEAD_LETTER_MATCH, STEP_MATCH
from edgematch.photodna.client import BatchResponse, HashItem, ItemOutcome
from edgematch.pipeline.buffer import Batch, Empty, Wait
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

#: The longest a pump holding an answer waits for Redis or the broker to come back: within
#: the 30 s the pump task's soft time limit leaves after its longest request
#: (config/celery.py), and never past the batch's lease.
SETTLE_OUTAGE_S = 25.0


@dataclass(frozen=True)
class PumpReport:
    """What one pump run did, for logs and tests."""

    batches: int
    items: int
    stopped: str


def pump(
    rt: Runtime,
    pump_id: str,
    *,
    publish: PublishMany,
    start_pump: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    others_waiting: Callable[[], bool] | None = None,
) -> PumpReport:
    """Drain the buffer for at most ``pump_max_s``; then hand over to a new pump if needed.

    ``publish`` enqueues the results of one request; ``start_pump`` enqueues a pump task
    with a given id. ``others_waiting``, given when this pump runs in its worker's only
    process, says whether other steps' tasks wait: the pump then ends instead of sleeping
    until the next slot, since sleeping would hold back the ingest that fills the next
    batches and the results that follow; a new pump takes its turn in the match queue.
    """
    buf = rt.buffer
    deadline = time.monotonic() + rt.settings.pump_max_s
    batches = items = 0
    stopped = "deadline"
    try:
        while True:
            taken = buf.take()
            if isinstance(taken, Batch):
                sent = _send_taken(rt, taken, publish=publish, start_pump=start_pump)
                if sent:
                    batches += 1
                    items += sent
                if time.monotonic() >= deadline:
                    break
                continue
            if isinstance(taken, Empty):
                stopped = "empty"
                break
            assert isinstance(taken, Wait)
            why = _wait(rt, pump_id, taken, deadline, sleep=sleep, others_waiting=others_waiting)
            if why is not None:
                stopped = why
                break
    finally:
        buf.release_pump(pump_id)
    # Released first, then kicked: an item pushed meanwhile is seen by one of the two.
    _kick(rt, start_pump)
    return PumpReport(batches=batches, items=items, stopped=stopped)


def _send_taken(
    rt: Runtime, batch: Batch, *, publish: PublishMany, start_pump: Callable[[str], None]
) -> int:
    """Send a taken batch and settle it; the number of items sent (0: an empty batch)."""
    if not batch.items:
        rt.buffer.settle(batch.id, (), ())
        return 0
    # Another pump waits for the next slot while this request is in flight; the lease is
    # renewed until the batch is settled.
    with rt.buffer.keeping(batch.id):
        send_batch(rt, batch, publish=publish, before_send=lambda: _kick(rt, start_pump))
    return len(batch.items)


def _wait(
    rt: Runtime,
    pump_id: str,
    wait: Wait,
    deadline: float,
    *,
    sleep: Callable[[float], None],
    others_waiting: Callable[[], bool] | None,
) -> str | None:
    """Sleep until the next slot, or say why this pump stops instead (see :func:`pump`)."""
    buf = rt.buffer
    if wait.seconds > deadline - time.monotonic():
        return wait.reason
    if others_waiting is not None and others_waiting():
        return "yield"
    if not buf.wait_turn(pump_id, wait.seconds):
        # Another pump already waits for that slot; this process has other work.
        return "another_waits"
    metrics.LIMITER_WAIT.labels(wait.reason).observe(wait.seconds)
    sleep(wait.seconds)
    buf.end_wait(pump_id)
    return None


def _kick(rt: Runtime, start_pump: Callable[[str], None]) -> None:
    pump_id = rt.buffer.kick()
    if pump_id is not None:
        start_pump(pump_id)


class _Results:
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


def send_batch(
    rt: Runtime,
    batch: Batch,
    *,
    publish: PublishMany,
    before_send: Callable[[], None] | None = None,
) -> None:
    """Send one leased batch and settle every item in it. Never raises for API outcomes.

    ``publish`` gets the batch's results in one call. ``before_send`` runs once the
    request's slot is recorded, just before it goes out.

    Once the API has answered, the answer is settled even through a short Redis or broker
    outage (a restart, a failover): see :func:`_settle_through_outage`.
    """
    buf = rt.buffer
    # Measured from here, just after the take: the lease began a moment before.
    settled_by = time.monotonic() + min(rt.settings.lease_s - 2.0, SETTLE_OUTAGE_S)
    blog = log.bind(batch_id=batch.id, items=len(batch.items), probe=batch.probe)
    request = [HashItem(content_id=i.id, data=i.data) for i in batch.items]
    metrics.BATCH_SIZE.observe(len(request))
    buf.mark_sent(batch.id)
    if before_send is not None:
        before_send()
    started = time.monotonic()
    try:
        response = rt.api.match(request)
    except EdgematchError as exc:
        metrics.API_REQUESTS.labels(*_outcome(exc)).inc()
        if not isinstance(exc, TransportError):
            metrics.API_LATENCY.observe(time.monotonic() - started)
        settle_s = max(0.0, settled_by - time.monotonic())
        failure = exc  # bound for the closure: ``exc`` is unbound when the clause ends
        _settle_through_outage(
            lambda: _on_failure(rt, batch, failure, results=_Results(publish), blog=blog),
            blog=blog,
            for_s=settle_s,
        )
        return
    metrics.API_REQUESTS.labels("ok", str(response.http_status)).inc()
    metrics.API_LATENCY.observe(time.monotonic() - started)
    settle_s = max(0.0, settled_by - time.monotonic())

    def settle() -> None:
        if batch.probe:
            resumed = buf.resume()
            if "breaker" in resumed:
                blog.info("breaker_closed")
            if "cooldown" in resumed:
                blog.info("cooldown_probe_accepted")
        buf.count("requests_ok")
        _settle_response(rt, batch, response, results=_Results(publish))

    _settle_through_outage(settle, blog=blog, for_s=settle_s)


def _settle_through_outage(settle: Callable[[], None], *, blog: Any, for_s: float) -> None:
    """Settle an answer (publish its results, settle its batch) even through a Redis or
    broker outage of up to ``for_s`` seconds.

    A pump that gave up would leave its batch leased: when the lease ran out the batch
    would be taken again and sent a second time, spending quota on hashes already
    answered. Running ``settle`` again is safe: dead letters are keyed by item, results are
    recorded once per item, and the settle of a batch is idempotent.
    """
    outages.ride_out(settle, for_s=for_s, log=blog, event="batch_settle_waits")


def _outcome(exc: EdgematchError) -> tuple[str, str]:
    """The (outcome, code) labels of a failed request: a small, fixed set of values."""
    code = _status_code(exc)
    if isinstance(exc, RateLimited):
        return "rate_limited", "429"
    if isinstance(exc, CredentialError):
        return "credentials", str(code)
    if isinstance(exc, TransportError):
        return "transport", "none"
    if isinstance(exc, TransientError):
        return "server_error", str(code) if code else "none"
    return "rejected", str(code) if code else "none"


def _status_code(exc: EdgematchError) -> int | None:
    """The HTTP or API status code an error carries, for the classes that carry one."""
    carriers = CredentialError | ServerError | ItemTransient | ItemRejected | RequestRejected
    return exc.status_code if isinstance(exc, carriers) else None


def _on_failure(
    rt: Runtime, batch: Batch, exc: EdgematchError, *, results: _Results, blog: Any
) -> None:
    """Settle a batch whose request failed as a whole."""
    s = rt.settings
    buf = rt.buffer
    if isinstance(exc, RateLimited):
        metrics.RATE_LIMITED.inc()
        planned = buf.set_cooldown(exc.retry_after_s)
        buf.count("http_429")
        blog.warning(
            "rate_limited",
            retry_after_s=exc.retry_after_s,
            cooldown_s=planned.hold_s,
            capped=planned.capped,
            probe=batch.probe,
        )
        _settle(rt, batch, (), [(item, 0.0) for item in batch.items], results)
        _end_probe(rt, batch)
        return
    if isinstance(exc, CredentialError):
        buf.open_breaker(s.breaker_probe_s)
        blog.error("credentials_refused", status_code=exc.status_code, pause_s=s.breaker_probe_s)
        _settle(rt, batch, (), [(item, 0.0) for item in batch.items], results)
        return
    if isinstance(exc, TransientError):
        _end_probe(rt, batch)
        blog.warning("batch_transient", reason=exc.reason, error=str(exc))
        _settle_all(rt, batch, exc, results=results)
        return
    if isinstance(exc, PermanentError):
        _end_probe(rt, batch)
        blog.error("batch_rejected", reason=exc.reason, error=str(exc))
        _settle_all(rt, batch, exc, results=results)
        return
    raise exc


def _end_probe(rt: Runtime, batch: Batch) -> None:
    if batch.probe:
        # The probe proved nothing about the key; let the next request probe again.
        rt.redis.delete(rt.buffer.keys.breaker_probe)


def _settle_all(rt: Runtime, batch: Batch, exc: EdgematchError, *, results: _Results) -> None:
    finished: list[str] = []
    again: list[tuple[Item, float]] = []
    for item in batch.items:
        _decide(rt, item.sent(exc.reason), exc, finished=finished, again=again, publish=results.add)
    _settle(rt, batch, finished, again, results)


def _settle(
    rt: Runtime,
    batch: Batch,
    finished: Sequence[str],
    again: Sequence[tuple[Item, float]],
    results: _Results,
) -> None:
    results.flush()
    if not rt.buffer.settle(batch.id, finished, again):
        log.warning("lease_lost", batch_id=batch.id, items=len(batch.items))


def _settle_response(
    rt: Runtime, batch: Batch, response: BatchResponse, *, results: _Results
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
    _settle(rt, batch, finished, again, results)


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
        status_code=_status_code(exc),
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
