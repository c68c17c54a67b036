"""The tasks of the pipeline. Each one is a thin shell around ``edgematch.worker``.

One failure policy for every step (``_guarded``): a ``TransientError`` is retried with
capped, jittered backoff up to ``EDGEMATCH_MAX_ATTEMPTS``; anything else — a permanent
error, a configuration problem (S3 access denied), or a bug — is recorded as a dead letter
with the task's arguments, so that nothing is acknowledged and forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import structlog
from celery import Task
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from edgematch.tasks.app import app
from edgematch.worker import ingest as ingest_step
from edgematch.worker import matcher, metrics
from edgematch.worker.backoff import compute_backoff
from edgematch.worker.errors import EdgematchError, TransientError
from edgematch.worker.logs import get_logger
from edgematch.worker.poison import POISON, Deliveries, counter_ttl_s, is_poison
from edgematch.worker.results import Result, consume
from edgematch.worker.runtime import runtime

log = get_logger(__name__)
T = TypeVar("T")


def _send(task: Task[Any, Any], kwargs: dict[str, Any]) -> None:
    """Enqueue ``task``; a broker that cannot take it is a transient error, not a crash."""
    try:
        task.apply_async(kwargs=kwargs)
    except (KombuOperationalError, RedisError) as exc:
        raise TransientError(f"broker unavailable: {type(exc).__name__}") from exc


def publish_result(result: Result) -> None:
    """Put ``result`` on the results queue (its consumer records and tags it)."""
    _send(record_result, {"result": result.to_dict(), "correlation_id": result.correlation_id})


def start_pump(pump_id: str) -> None:
    _send(pump, {"pump_id": pump_id})


def _write_tags(bucket: str, key: str, tags: dict[str, str], version_id: str | None) -> None:
    runtime().store.merge_tags(bucket, key, tags, version_id=version_id)


def _guarded(
    task: Task[Any, Any],
    step: str,
    run: Callable[[], T],
    *,
    args: Mapping[str, Any],
    correlation_id: str | None,
    location: tuple[str | None, str | None],
    replayed_from: str | None = None,
    part: str = "",
) -> T | str:
    """Run one task's work under the failure policy; see the module docstring.

    ``part`` tells apart two pieces of work one task guards separately, so that the
    second one's dead letter does not overwrite the first one's.

    Before the work, this delivery is counted (worker/poison.py): a task begun more than
    ``max_deliveries`` times is dead-lettered as ``poison`` without running. A task that
    replays a dead letter (``replayed_from``) resolves it when the work completes, and a
    failure of it updates that same entry instead of adding another.
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
        delivery = deliveries.begin(task_id, task.request.retries) if task_id else 1
        if is_poison(delivery, rt.settings.max_deliveries):
            reason, attempts = POISON, delivery - 1
            message = f"began {attempts} times and never finished: each run killed its worker"
        else:
            value = run()
            if replayed_from:
                outcome = rt.dead_letters.resolve(replayed_from)
                log.info("replay_resolved", replayed_from=replayed_from, entry=outcome)
            if task_id:
                deliveries.finish(task_id)
            return value
    except TransientError as exc:
        attempt = task.request.retries + 1
        if attempt < rt.settings.max_attempts:
            delay = compute_backoff(
                attempt, base_s=rt.settings.backoff_base_s, cap_s=rt.settings.backoff_cap_s
            )
            log.warning(f"{step}_retry", error=str(exc), attempt=attempt, delay_s=round(delay, 3))
            raise task.retry(exc=exc, countdown=delay) from exc
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
    log.error(f"{step}_dead_lettered", reason=reason, error=message, attempts=attempts)
    return "dead_lettered"


@app.task(name="edgematch.ingest", bind=True, max_retries=None)
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

    def run() -> str:
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

    return _guarded(
        self,
        "ingest",
        run,
        args={"event": event, "lane": lane},
        correlation_id=correlation_id,
        location=(event.get("bucket"), event.get("key")),
        replayed_from=replayed_from,
    )


@app.task(name="edgematch.pump")
def pump(pump_id: str) -> dict[str, Any]:
    """Drain the batch buffer into the API for a short while (see worker/matcher.py).

    A pump that fails leaves its batch leased: the lease runs out and the items go back,
    so a crash here loses nothing and needs no dead letter.
    """
    report = matcher.pump(runtime(), pump_id, publish=publish_result, start_pump=start_pump)
    return {"batches": report.batches, "items": report.items, "stopped": report.stopped}


@app.task(name="edgematch.sweep")
def sweep() -> int:
    """Periodic: start pumps for waiting items that nobody is draining (a safety net)."""
    rt = runtime()
    started = 0
    while started < rt.settings.match_pumps:
        pump_id = rt.buffer.kick()
        if pump_id is None:
            break
        start_pump(pump_id)
        started += 1
    return started


@app.task(name="edgematch.record_result", bind=True, max_retries=None)
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
    return _guarded(
        self,
        "results",
        lambda: consume(
            Result.from_dict(result),
            store=rt.results,
            write_tags=_write_tags,
            tag_key=rt.settings.result_tag,
            log=log,
        ),
        args={"result": result},
        correlation_id=correlation_id,
        location=(result.get("bucket"), result.get("key")),
        replayed_from=replayed_from,
    )
