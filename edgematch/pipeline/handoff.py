"""What both doors (SQS intake, the webhook) say once they handed objects to the workers.

Each object handed on is counted (``edgematch_objects_enqueued_total``, lane ``live``) and
logged as ``event_enqueued`` with its correlation id, the start of its trail through the
logs; a hand-off that failed is logged once as ``enqueue_failed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.pipeline.events import ObjectCreated

log = get_logger(__name__)

#: (object, correlation id) pairs, as a door hands them to ``tasks.enqueue``.
Work = Sequence[tuple[ObjectCreated, str]]


def enqueued(work: Work) -> None:
    """Count and log each object of ``work``, now in the workers' hands."""
    for obj, correlation_id in work:
        metrics.OBJECTS_ENQUEUED.labels("live").inc()
        log.info(
            "event_enqueued",
            correlation_id=correlation_id,
            bucket=obj.bucket,
            key=obj.key,
            version_id=obj.version_id,
            source=obj.source,
        )


def enqueue_failed(work: Work, exc: BaseException) -> None:
    """Log that handing ``work`` on failed (the door keeps it, for its sender to send again)."""
    log.warning("enqueue_failed", objects=len(work), error=f"{type(exc).__name__}: {exc}"[:300])
