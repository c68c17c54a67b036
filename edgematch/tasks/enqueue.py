"""The way work enters the workers: events enqueued for ingest.

Intake, the webhook, backfill and the CLI hand the objects they found to
:func:`enqueue_events`: the one entry of ``edgematch.tasks`` other packages call, besides
the task signatures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgematch.pipeline.backpressure import INGEST_BATCH
from edgematch.runtime import runtime
from edgematch.tasks.steps import ingest, ingest_many

__all__ = ["enqueue_events"]


def enqueue_events(events: Sequence[tuple[dict[str, Any], str]], lane: str) -> None:
    """Enqueue ``(event arguments, correlation id)`` pairs for ingest, in tasks of at most
    ``INGEST_BATCH`` events (one for a single event: a plain ``ingest`` task).

    The way intake, backfill and the CLI hand events to the workers. Raises
    BrokerUnavailable or RedisUnavailable (transient).
    """
    send = runtime().publisher.send
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
