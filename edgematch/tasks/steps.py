"""The tasks of the pipeline. Each one is a thin shell around the packages under ``edgematch``.

One failure policy for every step (``guarded``): a ``TransientError`` is retried with
capped, jittered backoff up to ``EDGEMATCH_MAX_ATTEMPTS``; anything else — a permanent
error, a configuration problem (S3 access denied), or a bug — is recorded as a dead letter
with the task's arguments, so that nothing is acknowledged and forgotten. Redis or the
broker being unavailable is nobody's attempt: those retries are free for a while
(infra/outages.py), so a restart or a failover never turns work into dead letters.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from celery import Task

from edgematch.config.celery import queue_for
from edgematch.errors import EdgematchError, TransientError
from edgematch.infra import metrics, outages
from edgematch.infra.backoff import compute_backoff
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import BrokerUnavailable, RedisUnavailable, publishing
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
from edgematch.pipeline.backpressure import INGEST_BATCH
from edgematch.pipeline.results import Result, consume
from edgematch.pipeline.tagging import verdict_tags
from edgematch.pipeline.verdictlog import Flushed
from edgematch.recovery.journal import UNJOURNALED
from edgematch.recovery.poison import POISON, Deliveries, counter_ttl_s, is_poison
from edgematch.runtime import runtime
from edgematch.tasks import lifecycle
from edgematch.tasks.app import app

log = get_logger(__name__)
T = TypeVar("T")
E = TypeVar("E")
R = TypeVar("R")

#: Threads one worker process runs a batch task's S3 calls on, side by side.
FANOUT_THREADS = 8
#: Seconds the periodic flush of the verdict log may write batches for, and one that a
#: results task does when the beat's is overdue: both well within the task time limit.
FLUSH_BUDGET_S = 20.0
INLINE_FLUSH_BUDGET_S = 5.0

#: This process's fan-out pool, by pid: a pool inherited across fork has no threads.
_pools: dict[int, ThreadPoolExecutor] = {}


def _fan_out(work: Callable[[E], T], elements: Iterable[E]) -> list[T]:
    """``work`` on every element, on this process's thread pool, in order.

    Each call runs in a copy of the caller's logging context (task id …). The pool is
    made on first use in each process.
    """
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        _pools.clear()
        pool = _pools[pid] = ThreadPoolExecutor(FANOUT_THREADS, thread_name_prefix="fanout")
    futures = [pool.submit(contextvars.copy_context().run, work, e) for e in elements]
    return [future.result() for future in futures]


def send(task: Task[Any, Any], kwargs: dict[str, Any], *, countdown: float = 0.0) -> None:
    """Enqueue ``task``; a broker that cannot take it is a transient error, not a crash.

    Work tasks are journaled first (recovery/journal.py): one lost by a killed worker is
    published again. Pumps are not: the batch buffer is their state.
    """
    task_id = uuid.uuid4().hex
    if task.name not in UNJOURNALED:
        journal(task.name, kwargs, task_id)
    with publishing():
        if countdown > 0:
            task.apply_async(kwargs=kwargs, countdown=countdown, task_id=task_id)
        else:
            task.apply_async(kwargs=kwargs, task_id=task_id)


def journal(name: str, kwargs: Mapping[str, Any], task_id: str) -> None:
    """Write the journal entry of a task about to be published under ``task_id``."""
    rt = runtime()
    queue = queue_for(rt.settings.namespace, name, kwargs)
    if queue is None:
        raise ValueError(f"no queue for task {name}")
    rt.journal.add(task_id, name, kwargs, queue)


def publish_result(result: Result) -> None:
    """Put ``result`` on the results queue (its consumer records and tags it)."""
    send(record_result, {"result": result.to_dict(), "correlation_id": result.correlation_id})


def publish_results(results: Sequence[Result]) -> None:
    """Put the results of one API request on the results queue as one task."""
    if len(results) == 1:
        publish_result(results[0])
        return
    send(record_results, {"results": [result.to_dict() for result in results]})


def enqueue_events(events: Sequence[tuple[dict[str, Any], str]], lane: str) -> None:
    """Enqueue ``(event arguments, correlation id)`` pairs for ingest, in tasks of at most
    ``INGEST_BATCH`` events (one for a single event: a plain ``ingest`` task)."""
    for start in range(0, len(events), INGEST_BATCH):
        chunk = events[start : start + INGEST_BATCH]
        if len(chunk) == 1:
            event, correlation_id = chunk[0]
            send(ingest, {"event": event, "correlation_id": correlation_id, "lane": lane})
            continue
        send(
            ingest_many,
            {"events": [{"event": e, "correlation_id": c} for e, c in chunk], "lane": lane},
        )


def _retry_delay(attempt: int) -> float:
    s = runtime().settings
    return compute_backoff(attempt, base_s=s.backoff_base_s, cap_s=s.backoff_cap_s)


def start_pump(pump_id: str) -> None:
    send(match, {"pump_id": pump_id})


def guarded(
    task: Task[Any, Any],
    step: str,
    run: Callable[[], T],
    *,
    args: Mapping[str, Any],
    correlation_id: str | None,
    location: tuple[str | None, str | None],
    replayed_from: str | None = None,
    part: str = "",
    on_redelivery: Callable[[], T] | None = None,
) -> T | str:
    """Run one task's work under the failure policy; see the module docstring.

    ``part`` tells apart two pieces of work one task guards separately, so that the
    second one's dead letter does not overwrite the first one's.

    Before the work, this delivery is counted (recovery/poison.py): a task begun more than
    ``max_deliveries`` times is dead-lettered as ``poison`` without running. A task that
    replays a dead letter (``replayed_from``) resolves it when the work completes, and a
    failure of it updates that same entry instead of adding another.

    ``on_redelivery`` runs in place of ``run`` when this delivery is not the first (the
    worker running it before died): a batch task splits itself there.
    """
    rt = runtime()
    task_id: str | None = task.request.id
    if replayed_from:
        structlog.contextvars.bind_contextvars(replayed_from=replayed_from)
    deliveries = Deliveries(
        rt.redis,
        rt.settings.namespace,
        ttl_s=counter_ttl_s(rt.settings.visibility_timeout_s, rt.settings.max_deliveries),
    )

    try:
        delivery = (
            _ride(lambda: deliveries.begin(task_id, task.request.retries), step) if task_id else 1
        )
        if is_poison(delivery, rt.settings.max_deliveries):
            reason, attempts = POISON, delivery - 1
            message = f"began {attempts} times and never finished: each run killed its worker"
        else:
            value = _ride(on_redelivery if on_redelivery and delivery > 1 else run, step)
            if replayed_from:
                outcome = _ride(lambda: rt.dead_letters.resolve(replayed_from), step)
                log.info("replay_resolved", replayed_from=replayed_from, entry=outcome)
            if task_id:
                deliveries.finish(task_id)
                _close(rt, task_id)
            return value
    except TransientError as exc:
        headers = task.request.headers or {}
        free = (
            outages.free_retry(
                headers,
                now=time.time(),
                base_s=rt.settings.backoff_base_s,
                cap_s=rt.settings.backoff_cap_s,
            )
            if isinstance(exc, RedisUnavailable | BrokerUnavailable)
            else None
        )
        if free is not None:
            log.warning(f"{step}_outage_retry", error=str(exc), delay_s=round(free.countdown_s, 3))
            raise task.retry(exc=exc, countdown=free.countdown_s, headers=free.headers) from exc
        attempt = outages.attempt(task.request.retries, headers)
        if attempt < rt.settings.max_attempts:
            delay = compute_backoff(
                attempt, base_s=rt.settings.backoff_base_s, cap_s=rt.settings.backoff_cap_s
            )
            # A held lock (or a reporter's 429) says when to come back: sooner only spends
            # an attempt. Within the backoff cap, which the visibility timeout covers.
            told_s = getattr(exc, "retry_after_s", 0.0)
            delay = max(delay, min(told_s, rt.settings.backoff_cap_s))
            log.warning(f"{step}_retry", error=str(exc), attempt=attempt, delay_s=round(delay, 3))
            raise task.retry(
                exc=exc, countdown=delay, headers=outages.streak_over(headers)
            ) from exc
        reason, message, attempts = "retries_exhausted", str(exc), attempt
    except EdgematchError as exc:
        reason, message, attempts = exc.reason, str(exc), task.request.retries + 1
    except Exception as exc:  # a bug must leave a dead letter, not a lost task
        log.exception(f"{step}_crashed")
        reason, message, attempts = "unexpected", f"{type(exc).__name__}: {exc}", 1
    try:
        rt.dead_letters.add(
            task=task.name,
            queue=rt.buffer.keys.queue(step),
            reason=reason,
            message=message,
            args=args,
            attempts=attempts,
            correlation_id=correlation_id,
            bucket=location[0],
            key=location[1],
            # One entry per task however often it is dead-lettered (a redelivery after a
            # crash between here and the acknowledgement), and a replay's failure updates
            # the entry it replays.
            dedupe_id=replayed_from or (f"task:{task_id}{part}" if task_id else None),
        )
    except TransientError as exc:
        # The store is full or unreachable: acknowledging now would lose the task.
        log.error(f"{step}_not_dead_lettered", reason=reason, error=str(exc))
        raise task.retry(exc=exc, countdown=rt.settings.backoff_cap_s) from exc
    if task_id:
        deliveries.finish(task_id)
        _close(rt, task_id)
    log.error(f"{step}_dead_lettered", reason=reason, error=message, attempts=attempts)
    return "dead_lettered"


def _ride(work: Callable[[], R], step: str) -> R:
    """``work()``, waiting out a Redis or broker outage inside the task (infra/outages.py):
    a retry would need the broker, which is often the Redis that is away."""
    event = f"{step}_waits_for_redis"
    return outages.ride_out(work, for_s=outages.RIDE_OUT_S, log=log, event=event)


def _close(rt: Any, task_id: str) -> None:
    """Close the task's journal entry. Best effort: an entry left open only makes the
    sweep run the (idempotent) task once more."""
    with contextlib.suppress(EdgematchError):
        rt.journal.done(task_id)


def _ingest_one(event: dict[str, Any], correlation_id: str, lane: str) -> str:
    outcome = ingest_step.ingest(
        runtime(),
        ingest_step.args_to_event(event),
        correlation_id=correlation_id,
        lane=lane,
        publish=publish_result,
        start_pump=start_pump,
    )
    metrics.INGESTED.labels(outcome).inc()
    return outcome


@app.task(name=TASK_INGEST, bind=True, max_retries=None)
def ingest(
    self: Task[Any, Any],
    event: dict[str, Any],
    correlation_id: str,
    lane: str = "live",
    replayed_from: str | None = None,
) -> str:
    """Fetch one hash file and put it in the batch buffer (idempotent per object version).

    ``replayed_from`` names the dead letter this task replays (``edgematch dlq replay``).
    """

    return guarded(
        self,
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


@app.task(name=TASK_RECORD_RESULT, bind=True, max_retries=None)
def record_result(
    self: Task[Any, Any],
    result: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> bool | str:
    """Record one result, tag its content object, hand matches downstream.

    ``replayed_from`` names the dead letter this task replays (``edgematch dlq replay``).
    """
    rt = runtime()
    outcome = guarded(
        self,
        STEP_RESULTS,
        lambda: consume(Result.from_dict(result), store=rt.results, tags=verdict_tags(rt), log=log),
        args={"result": result},
        correlation_id=correlation_id,
        location=(result.get("bucket"), result.get("key")),
        replayed_from=replayed_from,
    )
    # Results are in the log within an interval even while the beat is away.
    _flush_verdict_log(budget_s=INLINE_FLUSH_BUDGET_S)
    return outcome


def _batch(
    task: Task[Any, Any],
    step: str,
    elements: list[dict[str, Any]],
    work: Callable[[dict[str, Any]], str],
    *,
    single: Task[Any, Any],
    single_kwargs: Callable[[dict[str, Any]], dict[str, Any]],
    args: dict[str, Any],
    correlation_id: str | None,
    replayed_from: str | None,
) -> dict[str, int] | str:
    """Run ``work`` on every element of a batch task, side by side, under ``guarded``.

    An element whose work fails is handed to the ``single`` task (``single_kwargs`` of it)
    — after a backoff for a transient failure, at once otherwise — which applies the whole
    failure policy (retries, dead letter, replay) to that element alone. A batch delivered
    a second time (its worker died mid-way) is split into single tasks, so an element that
    kills workers cannot hold the others back. Returns the count of each outcome.
    """

    def one(element: dict[str, Any]) -> str:
        kwargs = single_kwargs(element)
        structlog.contextvars.bind_contextvars(correlation_id=kwargs.get("correlation_id"))
        try:
            return work(element)
        except TransientError as exc:
            delay = _retry_delay(1)
            log.warning(f"{step}_retry", error=str(exc), attempt=1, delay_s=round(delay, 3))
            send(single, kwargs, countdown=delay)
            return "retry"
        except Exception as exc:  # noqa: BLE001 - its own task dead-letters it
            log.warning(f"{step}_handed_over", error=f"{type(exc).__name__}: {exc}"[:300])
            send(single, kwargs)
            return "handed_over"

    def run() -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in _fan_out(one, elements):
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def split() -> str:
        log.warning(f"{step}_batch_split", count=len(elements))
        for element in elements:
            send(single, single_kwargs(element))
        return "split"

    return guarded(
        task,
        step,
        run,
        args=args,
        correlation_id=correlation_id,
        location=(None, None),
        replayed_from=replayed_from,
        on_redelivery=split,
    )


@app.task(name=TASK_INGEST_MANY, bind=True, max_retries=None)
def ingest_many(
    self: Task[Any, Any],
    events: list[dict[str, Any]],
    lane: str = "live",
    correlation_id: str | None = None,
    replayed_from: str | None = None,
) -> dict[str, int] | str:
    """Ingest the events of one intake poll (``{"event", "correlation_id"}`` each) in one
    task, their S3 reads side by side: one task's overhead for up to ``INGEST_BATCH``.

    A failing event goes to its own ``ingest`` task, and a redelivered batch is split
    (see ``_batch``); ingest is idempotent, so events already done come back as cheap
    duplicates. Each event keeps its own correlation id; ``correlation_id`` and
    ``replayed_from`` are set only by ``edgematch dlq replay`` of a whole batch.
    """
    return _batch(
        self,
        STEP_INGEST,
        events,
        lambda e: _ingest_one(e["event"], e["correlation_id"], lane),
        single=ingest,
        single_kwargs=lambda e: {
            "event": e["event"],
            "correlation_id": e["correlation_id"],
            "lane": lane,
        },
        args={"events": events, "lane": lane},
        correlation_id=correlation_id,
        replayed_from=replayed_from,
    )


@app.task(name=TASK_RECORD_RESULTS, bind=True, max_retries=None)
def record_results(
    self: Task[Any, Any],
    results: list[dict[str, Any]],
    correlation_id: str | None = None,
    replayed_from: str | None = None,
) -> dict[str, int] | str:
    """Record, tag and hand on the results of one API request in one task, their S3 tag
    writes side by side. A failing result goes to its own ``record_result`` task, and a
    redelivered batch is split (see ``_batch``); recording is idempotent.
    ``correlation_id`` and ``replayed_from`` are set only by ``edgematch dlq replay``.
    """
    rt = runtime()

    def work(doc: dict[str, Any]) -> str:
        fresh = consume(Result.from_dict(doc), store=rt.results, tags=verdict_tags(rt), log=log)
        return "recorded" if fresh else "repeat"

    outcome = _batch(
        self,
        STEP_RESULTS,
        results,
        work,
        single=record_result,
        single_kwargs=lambda doc: {"result": doc, "correlation_id": doc.get("correlation_id")},
        args={"results": results},
        correlation_id=correlation_id,
        replayed_from=replayed_from,
    )
    _flush_verdict_log(budget_s=INLINE_FLUSH_BUDGET_S)
    return outcome
