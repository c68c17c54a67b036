"""The tasks of the pipeline. Each one is a thin shell around ``edgematch.worker``."""

from __future__ import annotations

from typing import Any

from celery import Task

from edgematch.tasks.app import app
from edgematch.worker import ingest as ingest_step
from edgematch.worker import matcher
from edgematch.worker.backoff import compute_backoff
from edgematch.worker.errors import TransientError
from edgematch.worker.logs import get_logger
from edgematch.worker.results import Result, consume
from edgematch.worker.runtime import runtime

log = get_logger(__name__)


def publish_result(result: Result) -> None:
    """Put ``result`` on the results queue (its consumer records and tags it)."""
    record_result.apply_async(
        kwargs={"result": result.to_dict(), "correlation_id": result.correlation_id}
    )


def start_pump(pump_id: str) -> None:
    pump.apply_async(kwargs={"pump_id": pump_id})


def _write_tags(bucket: str, key: str, tags: dict[str, str]) -> None:
    runtime().store.merge_tags(bucket, key, tags)


@app.task(name="edgematch.ingest", bind=True, max_retries=None)
def ingest(
    self: Task[Any, Any], event: dict[str, Any], correlation_id: str, lane: str = "live"
) -> str:
    """Fetch one hash file and put it in the batch buffer (idempotent per object version)."""
    rt = runtime()
    try:
        return ingest_step.ingest(
            rt,
            ingest_step.args_to_event(event),
            correlation_id=correlation_id,
            lane=lane,
            publish=publish_result,
            start_pump=start_pump,
        )
    except TransientError as exc:
        attempt = self.request.retries + 1
        if attempt >= rt.settings.max_attempts:
            rt.dead_letters.add(
                task="edgematch.ingest",
                queue=rt.buffer.keys.queue("ingest"),
                reason="retries_exhausted",
                message=str(exc),
                args=event,
                attempts=attempt,
                correlation_id=correlation_id,
                bucket=event.get("bucket"),
                key=event.get("key"),
            )
            log.error("ingest_gave_up", error=str(exc), attempts=attempt)
            return "dead_lettered"
        delay = compute_backoff(
            attempt, base_s=rt.settings.backoff_base_s, cap_s=rt.settings.backoff_cap_s
        )
        log.warning("ingest_retry", error=str(exc), delay_s=round(delay, 3))
        raise self.retry(exc=exc, countdown=delay) from exc


@app.task(name="edgematch.pump")
def pump(pump_id: str) -> dict[str, Any]:
    """Drain the batch buffer into the API for a short while (see worker/matcher.py)."""
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
def record_result(self: Task[Any, Any], result: dict[str, Any], correlation_id: str) -> bool:
    """Record one result, tag its content object, hand matches downstream."""
    rt = runtime()
    try:
        return consume(
            Result.from_dict(result),
            store=rt.results,
            write_tags=_write_tags,
            tag_key=rt.settings.result_tag,
            log=log,
        )
    except TransientError as exc:
        delay = compute_backoff(
            self.request.retries + 1,
            base_s=rt.settings.backoff_base_s,
            cap_s=rt.settings.backoff_cap_s,
        )
        raise self.retry(exc=exc, countdown=delay) from exc
