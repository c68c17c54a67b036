"""The order a worker takes tasks from the queues it serves: live work first.

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

Strict order alone would starve the background under live load that keeps every process
busy: backfill items would never reach the buffer, where their minimum share of the API
quota applies. So one fetch in ``1 / EDGEMATCH_BACKGROUND_MIN_SHARE`` (one in ten by
default) names ``background`` first: while it has tasks, it gets at least that share of
the worker's fetches, and live work still comes first in all the others.

On RabbitMQ the broker pushes: a worker's consumer holds up to its prefetch from *each*
queue it serves (a quorum queue has no global prefetch), and Celery hands what it holds to
the pool in arrival order as processes free up. There the same order applies to what waits
for a process (:class:`LiveFirstWaiting`, the waiting list of Celery's pool semaphore,
installed by tasks/lifecycle.py): a held live task runs before a held backfill, with the
same minimum share for background.

That order alone cannot keep a live task from waiting: with late acknowledgement a live
consumer holding one task per process has no live task waiting when a process frees, and
RabbitMQ sends the next one only after the acknowledgement that freed it, by which time the
process has taken a held backfill. So on a worker that also serves background, each live
queue's consumer holds twice the worker's processes (:func:`prefetch`; a quorum queue's
prefetch is per consumer): while live work is
queued, as many live tasks wait for a process as can run, and a process that frees takes one
of them (background's minimum share aside) while the broker refills the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from kombu.utils.scheduling import priority_cycle

from edgematch.names import (
    STEP_BACKGROUND,
    STEP_INGEST,
    STEP_MATCH,
    STEP_QUARANTINE,
    STEP_REPORTS,
    STEP_RESULTS,
)

if TYPE_CHECKING:  # generic in kombu's type stubs only
    _Cycle = priority_cycle[str]
else:
    _Cycle = priority_cycle

#: Queue steps, first served first.
ORDER: Final = (
    STEP_MATCH,
    STEP_QUARANTINE,
    STEP_REPORTS,
    STEP_RESULTS,
    STEP_INGEST,
    STEP_BACKGROUND,
)
_BACKGROUND: Final = ORDER.index(STEP_BACKGROUND)
#: The background share when none is given (Settings.background_min_share's default).
DEFAULT_MIN_SHARE: Final = 0.1


def rank(queue: str) -> int:
    """The place of ``queue`` (``<namespace>.<step>``) in ``ORDER``; unknown ones rank with
    background (but only ``background`` itself is ever moved first). Pure."""
    step = queue.rsplit(".", 1)[-1]
    return ORDER.index(step) if step in ORDER else _BACKGROUND


def prefetch(queue: str, queues: Iterable[str], processes: int) -> int:
    """RabbitMQ: the tasks a worker with ``processes`` pool processes consuming ``queues``
    holds from ``queue`` at once: twice its processes for a live queue beside background,
    otherwise its processes (without background nothing could overtake live tasks, and
    tasks held beyond the processes are tasks another worker's free process cannot take).
    Pure."""
    beside_background = any(_is_background(name) for name in queues)
    return 2 * processes if beside_background and not _is_background(queue) else processes


class LiveFirst(_Cycle):
    """kombu's fixed-order cycle, kept sorted by :func:`rank` whatever order kombu's set
    of active queues comes in, with background first on every ``1 / min_share``-th fetch
    (never when ``min_share`` is 0)."""

    def __init__(
        self, it: Iterable[str] | None = None, *, min_share: float = DEFAULT_MIN_SHARE
    ) -> None:
        super().__init__([])
        self.every = round(1 / min_share) if min_share > 0 else 0
        self.fetches = 0
        if it is not None:
            self.update(it)

    def update(self, it: Iterable[str]) -> None:
        self.items = sorted(it, key=rank)

    # A list, as kombu's own cycles return and its Redis transport needs (it tests the
    # result for emptiness and iterates it once per priority); the stubs say Iterator.
    def consume(self, n: int) -> list[str]:  # type: ignore[override]
        """The queues of the next fetch, in the order Redis should try them."""
        self.fetches += 1
        order = list((self.items or [])[:n])
        if self.every and self.fetches % self.every == 0:
            order.sort(key=lambda queue: not _is_background(queue))  # stable: the rest kept
        return order


def _is_background(queue: str) -> bool:
    return queue.rsplit(".", 1)[-1] == STEP_BACKGROUND


class LiveFirstWaiting:
    """Celery's pool semaphore's waiting list (a deque there: first in, first out), ordered
    like :class:`LiveFirst`: each ``popleft`` takes the oldest task of the first queue in
    ``ORDER`` that has one, but every ``1 / min_share``-th takes background's first.

    An entry is ``(callback, args, kwargs)`` with the Celery request first in ``args``; its
    queue is the request's routing key (each task is routed to the queue of its own name).
    """

    def __init__(self, *, min_share: float = DEFAULT_MIN_SHARE) -> None:
        self._queues: list[deque[tuple[Any, ...]]] = [deque() for _ in ORDER]
        self.every = round(1 / min_share) if min_share > 0 else 0
        self.pops = 0

    def append(self, entry: tuple[Any, ...]) -> None:
        self._queues[rank(_routing_key(entry))].append(entry)

    def popleft(self) -> tuple[Any, ...]:
        """The next entry; IndexError when none waits (as a deque's)."""
        self.pops += 1
        background = self._queues[_BACKGROUND]
        if self.every and self.pops % self.every == 0 and background:
            return background.popleft()
        for waiting in self._queues:
            if waiting:
                return waiting.popleft()
        raise IndexError("nothing waits")

    def clear(self) -> None:
        for waiting in self._queues:
            waiting.clear()

    def __len__(self) -> int:
        return sum(len(waiting) for waiting in self._queues)


def _routing_key(entry: tuple[Any, ...]) -> str:
    """The queue of a semaphore entry's request; "" (ranked with background) if unknown."""
    args = entry[1] if len(entry) > 1 else ()
    request = args[0] if args else None
    info = getattr(request, "delivery_info", None) or {}
    return str(info.get("routing_key") or "")
