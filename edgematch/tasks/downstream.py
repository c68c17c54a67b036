"""The tasks downstream of a match: ``edgematch.quarantine`` and ``edgematch.report``.

Each runs on its own queue (``<ns>.quarantine``, ``<ns>.reports``) so each scales alone,
under the same failure policy as every step (tasks/base.py): transient errors retry
with backoff, anything else becomes a dead letter, which ``edgematch dlq replay`` sends
back here (``replayed_from``). The chain, handed every recorded result, repeats included,
by the results consumer (:func:`on_result`):

    results ──match──► quarantine ──(evidence)──► report
    edgematch review confirm ──► submit_report (a report held for review, once confirmed)

A quarantine that gives up leaves its dead letter *and* still sends the report, with
evidence ``failed``: the match is reported even when it could not be preserved, and the
content keeps its ``match`` tag. See ``edgematch.downstream.filing`` for the why.
"""

from __future__ import annotations

from typing import Any

from edgematch.downstream.quarantine import Evidence
from edgematch.errors import EdgematchError
from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.names import (
    STEP_QUARANTINE,
    STEP_REPORTS,
    TASK_QUARANTINE,
    TASK_REPORT,
    TASK_SUBMIT_REPORT,
)
from edgematch.pipeline.results import Result
from edgematch.runtime import runtime
from edgematch.tasks.app import app
from edgematch.tasks.base import StepTask

log = get_logger(__name__)


def on_result(result: Result) -> None:
    """The hand-off from the results consumer (tasks/steps.py passes it to
    ``pipeline.recording.consume``): a match goes on to the quarantine queue."""
    rt = runtime()
    if rt.downstream.take(result):
        kwargs = {"result": result.to_dict(), "correlation_id": result.correlation_id}
        rt.publisher.send(quarantine, kwargs)


def _send_report(result: dict[str, Any], evidence: Evidence, correlation_id: str) -> None:
    runtime().publisher.send(
        report,
        {"result": result, "evidence": evidence.to_dict(), "correlation_id": correlation_id},
    )


def _location(result: dict[str, Any]) -> tuple[str | None, str | None]:
    return result.get("content_bucket"), result.get("content_key")


@app.task(name=TASK_QUARANTINE, base=StepTask, bind=True, max_retries=None)
def quarantine(
    self: StepTask,
    result: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> str:
    """Quarantine one matched content version, then send its report (idempotent)."""

    def run() -> str:
        evidence = runtime().downstream.quarantine.run(Result.from_dict(result))
        _send_report(result, evidence, correlation_id)
        return evidence.state

    def report_unpreserved(failure: BaseException | None) -> None:
        # Reported all the same: the report says the evidence was not preserved.
        why = f"{failure.reason}: {failure}" if isinstance(failure, EdgematchError) else None
        mode = runtime().downstream.quarantine.mode
        evidence = Evidence.failed(
            Result.from_dict(result), mode=mode, reason=why or "unexpected error"
        )
        # Not replayed_from: sending the report must not resolve the quarantine's entry,
        # and its own failure is a separate dead letter, not an overwrite of that one.
        self.guarded(
            STEP_REPORTS,
            lambda: _send_report(result, evidence, correlation_id),
            args={"result": result},
            correlation_id=correlation_id,
            location=_location(result),
            part=":report",
        )

    outcome = self.guarded(
        STEP_QUARANTINE,
        run,
        args={"result": result},
        correlation_id=correlation_id,
        location=_location(result),
        replayed_from=replayed_from,
        on_dead_letter=report_unpreserved,
    )
    metrics.QUARANTINE.labels(outcome).inc()
    return outcome


@app.task(name=TASK_REPORT, base=StepTask, bind=True, max_retries=None)
def report(
    self: StepTask,
    result: dict[str, Any],
    evidence: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> str:
    """Write the one report of a matched content version and hand it to the reporter."""

    def run() -> str:
        doc = runtime().downstream.file_report(
            Result.from_dict(result), Evidence.from_dict(evidence)
        )
        return str(doc["status"])

    def mark_failed(failure: BaseException | None) -> None:
        if not isinstance(failure, EdgematchError):
            return
        try:
            runtime().downstream.mark_failed(
                Result.from_dict(result), f"{failure.reason}: {failure}"
            )
        except EdgematchError as exc:
            log.warning("report_not_marked_failed", error=str(exc))

    outcome = self.guarded(
        STEP_REPORTS,
        run,
        args={"result": result, "evidence": evidence},
        correlation_id=correlation_id,
        location=_location(result),
        replayed_from=replayed_from,
        on_dead_letter=mark_failed,
    )
    metrics.REPORTS.labels(outcome).inc()
    return outcome


@app.task(name=TASK_SUBMIT_REPORT, base=StepTask, bind=True, max_retries=None)
def submit_report(
    self: StepTask,
    *,
    report_id: str,
    key: str,
    correlation_id: str | None,
    content: dict[str, Any] | None = None,
    replayed_from: str | None = None,
) -> str:
    """Submit a report a reviewer confirmed, through the configured reporter, once."""

    def run() -> str:
        return str(runtime().downstream.submit_confirmed(report_id, key)["status"])

    def mark_failed(failure: BaseException | None) -> None:
        if not isinstance(failure, EdgematchError):
            return
        try:
            runtime().downstream.mark_confirmed_failed(report_id, f"{failure.reason}: {failure}")
        except EdgematchError as exc:
            log.warning("report_not_marked_failed", error=str(exc))

    where = content or {}
    outcome = self.guarded(
        STEP_REPORTS,
        run,
        args={"report_id": report_id, "key": key, "content": content},
        correlation_id=correlation_id,
        location=(where.get("bucket"), where.get("key")),
        replayed_from=replayed_from,
        on_dead_letter=mark_failed,
    )
    metrics.REPORTS.labels(outcome).inc()
    return outcome
