"""The tasks downstream of a match: ``edgematch.quarantine`` and ``edgematch.report``.

Each runs on its own queue (``<ns>.quarantine``, ``<ns>.reports``) so each scales alone,
under the same failure policy as every step (``steps.guarded``): transient errors retry
with backoff, anything else becomes a dead letter, which ``edgematch dlq replay`` sends
back here (``replayed_from``). The chain, registered with :func:`register_downstream` so
that it runs for every recorded result, repeats included:

    results ──match──► quarantine ──(evidence)──► report

A quarantine that gives up leaves its dead letter *and* still sends the report, with
evidence ``failed``: the match is reported even when it could not be preserved, and the
content keeps its ``match`` tag. See ``edgematch.downstream.filing`` for the why.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from edgematch.downstream.filing import parts
from edgematch.downstream.quarantine import ContentVersion, Evidence
from edgematch.errors import EdgematchError
from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.names import STEP_QUARANTINE, STEP_REPORTS, TASK_QUARANTINE, TASK_REPORT
from edgematch.pipeline.results import CLEAN, MATCH, Result, register_downstream
from edgematch.runtime import runtime
from edgematch.tasks.app import app
from edgematch.tasks.steps import guarded, send

log = get_logger(__name__)


def on_result(result: Result) -> None:
    """Downstream consumer of every recorded result: a match is cached and quarantined.

    With EDGEMATCH_CLEAN_CACHE_TTL_S > 0 a clean verdict from the API is cached too (one
    from the cache is not: re-serving a verdict never extends its life).
    """
    if result.verdict != MATCH:
        if result.verdict == CLEAN and runtime().settings.clean_cache_ttl_s > 0:
            parts(runtime()).match_cache.remember(result)
        return
    parts(runtime()).match_cache.remember(result)
    send(quarantine, {"result": result.to_dict(), "correlation_id": result.correlation_id})


register_downstream(on_result)


def _send_report(result: dict[str, Any], evidence: Evidence, correlation_id: str) -> None:
    send(
        report,
        {"result": result, "evidence": evidence.to_dict(), "correlation_id": correlation_id},
    )


def _location(result: dict[str, Any]) -> tuple[str | None, str | None]:
    return result.get("content_bucket"), result.get("content_key")


@app.task(name=TASK_QUARANTINE, bind=True, max_retries=None)
def quarantine(
    self: Task[Any, Any],
    result: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> str:
    """Quarantine one matched content version, then send its report (idempotent)."""
    failure: list[EdgematchError] = []

    def run() -> str:
        try:
            evidence = parts(runtime()).quarantine.run(Result.from_dict(result))
        except EdgematchError as exc:
            failure[:] = [exc]
            raise
        _send_report(result, evidence, correlation_id)
        return evidence.state

    outcome = guarded(
        self,
        STEP_QUARANTINE,
        run,
        args={"result": result},
        correlation_id=correlation_id,
        location=_location(result),
        replayed_from=replayed_from,
    )
    metrics.QUARANTINE.labels(outcome).inc()
    if outcome == "dead_lettered":
        # Reported all the same: the report says the evidence was not preserved.
        why = f"{failure[0].reason}: {failure[0]}" if failure else "unexpected error"

        def report_unpreserved() -> None:
            content = ContentVersion.of(Result.from_dict(result))
            mode = parts(runtime()).quarantine.mode
            _send_report(result, Evidence.failed(content, mode=mode, reason=why), correlation_id)

        # Not replayed_from: sending the report must not resolve the quarantine's entry,
        # and its own failure is a separate dead letter, not an overwrite of that one.
        guarded(
            self,
            STEP_REPORTS,
            report_unpreserved,
            args={"result": result},
            correlation_id=correlation_id,
            location=_location(result),
            part=":report",
        )
    return outcome


@app.task(name=TASK_REPORT, bind=True, max_retries=None)
def report(
    self: Task[Any, Any],
    result: dict[str, Any],
    evidence: dict[str, Any],
    correlation_id: str,
    replayed_from: str | None = None,
) -> str:
    """Write the one report of a matched content version and hand it to the reporter."""
    failure: list[EdgematchError] = []

    def run() -> str:
        try:
            doc = parts(runtime()).file_report(
                Result.from_dict(result), Evidence.from_dict(evidence)
            )
        except EdgematchError as exc:
            failure[:] = [exc]
            raise
        return str(doc["status"])

    outcome = guarded(
        self,
        STEP_REPORTS,
        run,
        args={"result": result, "evidence": evidence},
        correlation_id=correlation_id,
        location=_location(result),
        replayed_from=replayed_from,
    )
    metrics.REPORTS.labels(outcome).inc()
    if outcome == "dead_lettered" and failure:
        try:
            parts(runtime()).mark_failed(
                Result.from_dict(result), f"{failure[0].reason}: {failure[0]}"
            )
        except EdgematchError as exc:
            log.warning("report_not_marked_failed", error=str(exc))
    return outcome
