"""The tasks of the pipeline. Each one is a thin shell around the packages under ``edgematch``.

One failure policy for every step (recovery/policy.py), applied by the tasks' base class
(tasks/base.py): a ``TransientError`` is retried with capped, jittered backoff up to
``EDGEMATCH_MAX_ATTEMPTS``; anything else — a permanent error, a configuration problem
(S3 access denied), or a bug — is recorded as a dead letter with the task's arguments, so
that nothing is acknowledged and forgotten. Redis or the broker being unavailable is
nobody's attempt: those retries are free for a while (infra/outages.py), so a restart or
a failover never turns work into dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgematch.config import rabbit
from edgematch.errors import EdgematchError
from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import publishing
from edgematch.names import (
    LEGACY_TASK_PUMP,
    STEP_INGEST,
    STEP_MATCH,
    STEP_RESULTS,
    TASK_FLUSH_VERDICTS,
    TASK_INGEST,
    TASK_INGEST_MANY,
    TASK_MATCH,
    TASK_RECORD_RESULT,
    TASK_RECORD_RESULTS,
    TASK_SWEEP,
)
from edgematch.pipeline import backpressure
from edgematch.pipeline import ingest as ingest_step
from edgematch.pipeline import match as matcher
from edgematch.pipeline.pushes import WAITING, Defer, Pushes
from edgematch.pipeline.recordbatch import consume_documents
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import Result
from edgematch.pipeline.tagging import verdict_tags
from edgematch.pipeline.verdictlog import Flushed
from edgematch.recovery import deadqueue
from edgematch.runtime import runtime
from edgematch.tasks import lifecycle
from edgematch.tasks.app import app
from edgematch.tasks.base import StepTask
from edgematch.tasks.downstream import on_result

log = get_logger(__name__)

#: Seconds the periodic flush of the verdict log may write batches for, and one that a
#: results task does when the beat's is overdue: both well within the task time limit.
FLUSH_BUDGET_S = 20.0
INLINE_FLUSH_BUDGET_S = 5.0


def publish_result(result: Result) -> None:
    """Put ``result`` on the results queue (its consumer records and tags it)."""
    runtime().publisher.send(
        record_result, {"result": result.to_dict(), "correlation_id": result.correlation_id}
    )


def publish_results(results: Sequence[Result]) -> None:
    """Put the results of one API request on the results queue as one task."""
    if len(results) == 1:
        publish_result(results[0])
        return
    runtime().publisher.send(record_results, {"results": [r.to_dict() for r in results]})


def start_pump(pump_id: str) -> None:
    runtime().publisher.send(match, {"pump_id": pump_id})


def _start_pump_later(pump_id: str, seconds: float) -> None:
    runtime().publisher.send(match, {"pump_id": pump_id}, countdown=seconds)  # 0: at once


def _ingest_one(
    event: dict[str, Any], correlation_id: str, lane: str, defer: Defer | None = None
) -> str:
    """Ingest one event; ``defer``: its item waits to be pushed with the rest of its batch
    (pipeline/pushes.py), and the batch task starts a pump if needed afterwards."""
    outcome = ingest_step.ingest(
        runtime(),
        ingest_step.args_to_event(event),
        correlation_id=correlation_id,
        lane=lane,
        publish=publish_result,
        start_pump=start_pump if defer is None else None,
        defer=defer,
    )
    if outcome != WAITING:  # counted once pushed
        metrics.INGESTED.labels(outcome).inc()
    return outcome


@app.task(name=TASK_INGEST, base=StepTask, bind=True, max_retries=None)
def ingest(
    self: StepTask,
    event: dict[str, Any],
    correlation_id: str,
    lane: str = "live",
    replayed_from: str | None = None,
) -> str:
    """Fetch one hash file and put it in the batch buffer (idempotent per object version).

    ``replayed_from`` names the dead letter this task replays (``edgematch dlq replay``).
    """
    return self.guarded(
        STEP_INGEST,
        lambda: _ingest_one(event, correlation_id, lane),
        args={"event": event, "lane": lane},
        correlation_id=correlation_id,
        location=(event.get("bucket"), event.get("key")),
        replayed_from=replayed_from,
    )


@app.task(name=TASK_MATCH)
def match(pump_id: str) -> dict[str, Any]:
    """Drain the batch buffer into the API for a short while (see pipeline/match.py).

    A pump that fails leaves its batch leased: the lease runs out and the items go back,
    so a crash here loses nothing and needs no dead letter.
    """
    rt = runtime()
    # In a worker's only process a pump must not sleep while the other queues it serves
    # have tasks waiting (see matcher.pump).
    others = [q for q in lifecycle.consumed_queues() if q != rt.buffer.keys.queue(STEP_MATCH)]
    sole = lifecycle.pool_processes() == 1 and bool(others)
    report = matcher.pump(
        rt,
        pump_id,
        publish=publish_results,
        start_pump=start_pump,
        others_waiting=(lambda: backpressure.others_waiting(rt, others)) if sole else None,
        # On RabbitMQ a countdown is whole seconds (config/rabbit.py): far past the slot.
        start_pump_later=None if rt.settings.broker.amqp else _start_pump_later,
    )
    return {"batches": report.batches, "items": report.items, "stopped": report.stopped}


@app.task(name=LEGACY_TASK_PUMP)
def pump(pump_id: str) -> dict[str, Any]:
    """The match task under its former name, for messages a worker of the previous release
    published during a rolling deploy: without it they would be dropped as unregistered."""
    result: dict[str, Any] = match(pump_id)
    return result


def _republish(name: str, kwargs: Mapping[str, Any], task_id: str) -> None:
    with publishing():
        app.send_task(name, kwargs=dict(kwargs), task_id=task_id)


@app.task(name=TASK_SWEEP)
def sweep() -> int:
    """Periodic: start pumps for waiting items that nobody is draining, hand back the tasks
    a dead worker held, and publish again the tasks a killed worker lost
    (recovery/journal.py) — the safety nets."""
    rt = runtime()
    if rt.settings.broker.amqp:
        _drain_dead_queue()
    try:
        handed = rt.journal.hand_back()
        recovered = rt.journal.recover(_republish) if rt.journal.due() else None
    except EdgematchError as exc:
        log.warning("journal_sweep_failed", error=str(exc))
        handed, recovered = None, None
    if handed is not None and (handed.restored or handed.dropped):
        metrics.TASKS_RECOVERED.inc(len(handed.restored))
        log.warning(
            "deliveries_handed_back",
            restored=len(handed.restored),
            dropped=len(handed.dropped),
            task_ids=list(handed.restored)[:20],
            ended_task_ids=list(handed.dropped)[:20],
        )
    if recovered is not None and recovered.republished:
        metrics.TASKS_RECOVERED.inc(len(recovered.republished))
        log.warning(
            "tasks_recovered",
            count=len(recovered.republished),
            task_ids=list(recovered.republished)[:20],
        )
    started = 0
    while started < rt.settings.match_pumps:
        pump_id = rt.buffer.kick()
        if pump_id is None:
            break
        start_pump(pump_id)
        started += 1
    return started


def _drain_dead_queue() -> None:
    """RabbitMQ: the messages the broker dead-lettered, into the dead letters
    (recovery/deadqueue.py). Never raises: what is left waits for the next sweep."""
    rt = runtime()
    try:
        # The process's pooled connection (celery-types calls the pool a producer pool).
        pool: Any = app.pool
        with pool.acquire(block=True) as conn:
            queue = rabbit.dead_letter_queue(rt.settings.namespace)(conn.default_channel)
            queue.declare()
            deadqueue.drain(
                lambda: queue.get(no_ack=False, accept=["json"]),
                rt.dead_letters,
                max_deliveries=rt.settings.max_deliveries,
            )
    except Exception as exc:  # noqa: BLE001 - the broker's or Redis's; the next sweep retries
        log.warning("dead_queue_not_drained", error=f"{type(exc).__name__}: {exc}")


@app.task(name=TASK_FLUSH_VERDICTS)
def flush_verdicts() -> dict[str, int]:
    """Periodic: write the results recorded meanwhile to the verdict log, at most once per
    EDGEMATCH_VERDICT_LOG_FLUSH_S for the whole pool (see pipeline/verdictlog.py).

    A flush that fails leaves its batch leased: it is written again once the lease runs
    out, so nothing is lost and no dead letter is needed.
    """
    flushed = _flush_verdict_log(budget_s=FLUSH_BUDGET_S)
    return {"objects": flushed.objects, "results": flushed.lines} if flushed else {}


def _flush_verdict_log(*, budget_s: float) -> Flushed | None:
    """Flush the verdict log if due; never raises (a flush that cannot run now runs later)."""
    try:
        return runtime().verdict_log.flush_if_due(budget_s=budget_s)
    except EdgematchError as exc:
        log.warning("verdict_log_flush_failed", error=str(exc))
        return None


@app.task(name=TASK_RECORD_RESULT, base=StepTask, bind=True, max_retries=None)
def record_result(
    self: StepTask,
    result: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> bool | str:
    """Record one result, tag its content object, hand matches downstream.

    ``replayed_from`` names the dead letter this task replays (``edgematch dlq replay``).
    """
    rt = runtime()
    outcome = self.guarded(
        STEP_RESULTS,
        lambda: consume(
            Result.from_dict(result),
            store=rt.results,
            tags=verdict_tags(rt),
            log=log,
            hand_on=on_result,
            allowlist=rt.allowlist,
        ),
        args={"result": result},
        correlation_id=correlation_id,
        location=(result.get("bucket"), result.get("key")),
        replayed_from=replayed_from,
    )
    # Results are in the log within an interval even while the beat is away.
    _flush_verdict_log(budget_s=INLINE_FLUSH_BUDGET_S)
    return outcome


@app.task(name=TASK_INGEST_MANY, base=StepTask, bind=True, max_retries=None)
def ingest_many(
    self: StepTask,
    events: list[dict[str, Any]],
    lane: str = "live",
    correlation_id: str | None = None,
    replayed_from: str | None = None,
) -> dict[str, int] | str:
    """Ingest the events of one intake poll (``{"event", "correlation_id"}`` each) in one
    task, their S3 reads side by side: one task's overhead for up to ``INGEST_BATCH``.

    A failing event goes to its own ``ingest`` task, and a redelivered batch is split
    (see ``StepTask.guarded_batch``); ingest is idempotent, so events already done come
    back as cheap duplicates. Each event keeps its own correlation id; ``correlation_id`` and
    ``replayed_from`` are set only by ``edgematch dlq replay`` of a whole batch.

    Its items join the buffer together (pipeline/pushes.py), and a pump is started (if the
    buffer needs one) once for the batch, after its items are in the buffer.
    """
    pushes = Pushes.of(runtime(), events=[e["event"] for e in events], publish=publish_result)
    try:
        return self.guarded_batch(
            STEP_INGEST,
            events,
            lambda e: _ingest_one(e["event"], e["correlation_id"], lane, pushes.defer(e)),
            single=ingest,
            single_kwargs=lambda e: {
                "event": e["event"],
                "correlation_id": e["correlation_id"],
                "lane": lane,
            },
            args={"events": events, "lane": lane},
            correlation_id=correlation_id,
            replayed_from=replayed_from,
            finish=pushes.finish,
        )
    finally:
        _kick_after_batch()


def _kick_after_batch() -> None:
    """Start a pump for what a batch buffered; a failure here is the sweep's to make good
    (it kicks every second), never the batch's."""
    try:
        ingest_step.kick(runtime(), start_pump)
    except EdgematchError as exc:
        log.warning("ingest_kick_failed", error=str(exc))


@app.task(name=TASK_RECORD_RESULTS, base=StepTask, bind=True, max_retries=None)
def record_results(
    self: StepTask,
    results: list[dict[str, Any]],
    correlation_id: str | None = None,
    replayed_from: str | None = None,
) -> dict[str, int] | str:
    """Record, tag and hand on the results of one API request in one task: their tag locks,
    recorded results and records each in one Redis round trip for all, their S3 tag writes
    side by side (pipeline/recordbatch.py). A failing result goes to its own
    ``record_result`` task, and a redelivered batch is split (see
    ``StepTask.guarded_batch``); recording is idempotent. ``correlation_id`` and
    ``replayed_from`` are set only by ``edgematch dlq replay``.
    """
    rt = runtime()

    def together(docs: list[dict[str, Any]]) -> list[str | BaseException]:
        return consume_documents(
            docs,
            store=rt.results,
            tags=verdict_tags(rt),
            log=log,
            hand_on=on_result,
            allowlist=rt.allowlist,
        )

    outcome = self.guarded_batch(
        STEP_RESULTS,
        results,
        None,
        single=record_result,
        single_kwargs=lambda doc: {"result": doc, "correlation_id": doc.get("correlation_id")},
        args={"results": results},
        correlation_id=correlation_id,
        replayed_from=replayed_from,
        together=together,
    )
    _flush_verdict_log(budget_s=INLINE_FLUSH_BUDGET_S)
    return outcome
