"""Heartbeats from the loops that do the work, for ``edgematch health``.

The worker's heartbeat is a timer on its event loop (a bootstep), not a thread: if the loop
hangs, the heartbeat stops and the liveness probe fails. Beat touches its heartbeat on
every scheduler tick.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps
from celery.beat import Scheduler

from edgematch.worker import health


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touch the worker's heartbeat file every few seconds from the event loop's timer."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        health.beat("worker")
        self.tref = worker.timer.call_repeatedly(
            health.BEAT_INTERVAL_S, health.beat, ("worker",), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class HeartbeatScheduler(Scheduler):
    """Celery beat's in-memory scheduler, touching beat's heartbeat on every tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        health.beat("beat")
        interval: float = super().tick(*args, **kwargs)
        # Tick at least as often as the heartbeat needs, whatever the schedule says.
        return min(interval, health.BEAT_INTERVAL_S)


def install(app: Celery) -> None:
    app.steps["worker"].add(WorkerHeartbeat)
