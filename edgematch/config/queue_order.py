"""The order a worker takes tasks from the queues it serves: strict, live work first.

kombu's Redis transport waits on all of a worker's queues with one BRPOP, and Redis pops
from the first non-empty list named. By default kombu rotates that list for fairness, so
a worker serving ``ingest`` and ``background`` takes a backfill task as often as a live
one, and a live upload waits behind the backfill's work. This order (set as the broker's
``queue_order_strategy``) names the queues by what waits on them:

1. ``match``: pump tasks, which must start when a request slot is free;
2. ``quarantine``, ``reports``: a match must not stay reachable, nor unreported;
3. ``results``: live results; bounded by the API quota, so they cannot flood;
4. ``ingest``: live uploads;
5. ``background``: replays and backfills, which take what the others leave.

Background work waits only while live work is queued; at the API the background lanes
keep their minimum share (``EDGEMATCH_BACKGROUND_MIN_SHARE``) once their items are in the
buffer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from kombu.utils.scheduling import priority_cycle

if TYPE_CHECKING:  # generic in kombu's type stubs only
    _Cycle = priority_cycle[str]
else:
    _Cycle = priority_cycle

#: Queue steps, first served first.
ORDER: Final = ("match", "quarantine", "reports", "results", "ingest", "background")


def rank(queue: str) -> int:
    """The place of ``queue`` (``<namespace>.<step>``) in ``ORDER``; unknown ones before
    background. Pure."""
    step = queue.rsplit(".", 1)[-1]
    return ORDER.index(step) if step in ORDER else ORDER.index("background")


class LiveFirst(_Cycle):
    """kombu's fixed-order cycle, kept sorted by :func:`rank` whatever order kombu's
    set of active queues comes in."""

    def update(self, it: Iterable[str]) -> None:
        self.items = sorted(it, key=rank)
