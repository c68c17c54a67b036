"""Backpressure: how much accepted work waits, and whether a producer may add more.

Every producer of ingest tasks — intake for live uploads, ``edgematch backfill``, ``edgematch
dlq replay`` — stops adding while the backlog is at ``EDGEMATCH_INTAKE_HIGH_WATER``, so
Redis memory stays bounded whatever the burst, and resumes as workers drain it.

The lanes share the mark unevenly on purpose. Live intake counts what competes with live
uploads (the live ingest queue and the whole buffer) against the full mark; background
producers count everything, their own queue too, against ``BACKGROUND_SHARE`` of it. A
backfill of a million keys can therefore never fill the backlog by itself and pause
intake: live uploads always keep the last fifth of the room.

The mark counts hash files. Live intake enqueues a receive's files as one task of up to
``INGEST_BATCH``, so a queued live ingest task weighs ``INGEST_BATCH``: an upper bound,
exact under a burst (when every receive comes back full), and only ever pausing intake
early, never late. Backfill and replay enqueue one file a task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edgematch.errors import TransientError
from edgematch.names import STEP_BACKGROUND, STEP_INGEST
from edgematch.runtime import Runtime

#: The fraction of the high-water mark background producers may fill.
BACKGROUND_SHARE = 0.8
#: Hash files one live ingest task carries at most (one SQS receive's worth).
INGEST_BATCH = 10
#: Seconds between looks at the backlog while paused.
PAUSE_POLL_S = 0.5


@dataclass(frozen=True)
class Backlog:
    """Accepted work not yet sent to the API, by where it waits: tasks in the ``ingest``
    and ``background`` queues, items in the buffer."""

    ingest: int
    background: int
    buffered: int

    @property
    def total(self) -> int:
        """Hash files at most, every queue's and the buffer's. Pure."""
        return self.ingest * INGEST_BATCH + self.background + self.buffered

    def of(self, lane: str) -> int:
        """The hash files (at most) that ``lane``'s producer weighs against its mark. Pure."""
        if lane == "live":
            return self.ingest * INGEST_BATCH + self.buffered
        return self.total


def high_water_for(lane: str, high_water: int) -> int:
    """The mark at which ``lane``'s producer pauses. Pure; at least 1."""
    if lane == "live":
        return high_water
    return max(1, int(high_water * BACKGROUND_SHARE))


def backlog(rt: Runtime) -> Backlog:
    """Read the backlog from the broker's queues and Redis's buffer. Raises TransientError
    when either cannot be reached."""
    keys = rt.buffer.keys
    ingest, background = rt.queues.waiting([keys.queue(STEP_INGEST), keys.queue(STEP_BACKGROUND)])
    return Backlog(ingest=int(ingest), background=int(background), buffered=rt.buffer.depth())


def others_waiting(rt: Runtime, queues: Iterable[str]) -> bool:
    """Whether tasks wait in any of ``queues``. False when the broker cannot be reached
    (the caller then just keeps its turn)."""
    names = list(queues)
    if not names:
        return False
    try:
        return any(rt.queues.waiting(names))
    except TransientError:
        # Not a translation: a pump that cannot tell just keeps its turn.
        return False


class Gate:
    """Blocks a background producer while the backlog is at its mark.

    ``wait()`` before each enqueue. It reads the backlog only when the room it last saw is
    used up (at most every ``check_every`` calls), so a producer of a million tasks costs
    Redis a read per ``check_every`` tasks, not one per task.
    """

    def __init__(
        self,
        read: Callable[[], Backlog],
        *,
        lane: str,
        high_water: int,
        check_every: int = 100,
        stop: threading.Event | None = None,
        on_pause: Callable[[Backlog, int], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._read = read
        self.lane = lane
        self.mark = high_water_for(lane, high_water)
        self._check_every = check_every
        self._stop = stop or threading.Event()
        self._on_pause = on_pause
        self._sleep = sleep or self._pause
        self._credit = 0
        self.paused_s = 0.0

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)  # wakes at once when the producer is stopped

    def wait(self) -> None:
        """Return once one more task may be enqueued (at once while there is room).

        Returns early, without room, when ``stop`` is set. Raises TransientError when
        Redis cannot be reached.
        """
        if self._credit > 0:
            self._credit -= 1
            return
        started: float | None = None
        while not self._stop.is_set():
            current = self._read()
            room = self.mark - current.of(self.lane)
            if room > 0:
                self._credit = min(room, self._check_every) - 1
                if started is not None:
                    self.paused_s += time.monotonic() - started
                return
            if started is None:
                started = time.monotonic()
            if self._on_pause is not None:
                self._on_pause(current, self.mark)
            self._sleep(PAUSE_POLL_S)
