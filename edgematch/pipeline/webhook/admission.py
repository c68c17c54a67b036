"""The webhook's two decisions, pure: which requests fit under the mark, and whether a
round should wait for company.

The live lane weighs a queued ingest task as the ten hash files it may carry
(pipeline/backpressure.py), so :func:`admitted` counts a round's objects in tasks of ten the
same way. A publish costs about half a millisecond of CPU whatever it carries, so under load
from several connections a round waits up to ``LINGER_S`` for more (:func:`busy`); a single
sender posting one event at a time over one connection (MinIO's store) never waits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgematch.pipeline.backpressure import INGEST_BATCH

__all__ = ["LINGER_S", "RECENT", "admitted", "busy"]

#: Seconds a round waits for company while requests come in faster than that.
LINGER_S = 0.005
#: Recent submissions looked at to tell one sequential sender from several.
RECENT = 32


def admitted(backlog: int, mark: int, sizes: Sequence[int], per_task: int = INGEST_BATCH) -> int:
    """How many requests, in order, of ``sizes`` objects each fit under ``mark``. Pure.

    Their objects go out in tasks of ``per_task``; each task counts ``per_task`` against the
    mark, as the live lane's backlog counts it. A request is admitted whole or not at all.
    """
    objects = 0
    for n, size in enumerate(sizes):
        tasks = math.ceil((objects + size) / per_task)
        if backlog + tasks * per_task > mark:
            return n
        objects += size
    return len(sizes)


def busy(arrivals: Sequence[tuple[float, object]], linger_s: float = LINGER_S) -> bool:
    """Whether waiting ``linger_s`` for company is worth it. Pure.

    ``arrivals``: (time, connection) of the last ``RECENT`` submissions, oldest first. Yes
    when they came faster than one a ``linger_s`` and over more than one connection: a
    single sender that waits for each answer before its next request gains nothing from a
    wait, only its latency.
    """
    if len(arrivals) < RECENT:
        return False
    span = arrivals[-1][0] - arrivals[0][0]
    return span < linger_s * (len(arrivals) - 1) and len({c for _, c in arrivals}) > 1
