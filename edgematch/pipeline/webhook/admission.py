"""The webhook's admission decision, pure: which requests fit under the mark.

The live lane weighs a queued ingest task as the ten hash files it may carry
(pipeline/backpressure.py), so :func:`admitted` counts a round's objects in tasks of ten the
same way. A round never waits for company: what arrives while one publishes goes in the
next, so rounds grow with the load by themselves (waiting 5 ms for more made the median
answer 20 ms at 600 notifications/s; see docs/benchmark.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from edgematch.pipeline.backpressure import INGEST_BATCH

__all__ = ["admitted"]


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
