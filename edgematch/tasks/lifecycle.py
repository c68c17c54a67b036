"""Heartbeats from the loops that do the work, for ``edgematch health``.

The worker's heartbeat is a timer on its event loop (a bootstep), not a thread: if the loop
hangs, the heartbeat stops and the liveness probe fails. Beat touches its heartbeat on
every scheduler tick. The same bootstep notes the pool's size before the pool forks, for
the match step (a pump in a worker's only process must not sleep while other work waits).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, bootsteps
from celery.beat import Scheduler

from edgematch.worker import health

#: The number of processes in this worker's pool, once known (set before the pool forks,
#: so every pool process sees it). None outside a worker.
_pool_processes: int | None = None
#: The queues this worker consumes, likewise.
_queues: tuple[str, ...] = ()


def pool_processes() -> int | None:
    """How many processes this worker's pool runs (None when not in a worker)."""
    return _pool_processes


def consumed_queues() -> tuple[str, ...]:
    """The queues (Redis lists) this worker takes tasks from; () when not in a worker."""
    return _queues


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touch the worker's heartbeat file every few seconds from the event loop's timer."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        global _pool_processes, _queues  # noqa: PLW0603 - facts about this process, set once
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        concurrency = getattr(worker, "concurrency", None)
        _pool_processes = concurrency if isinstance(concurrency, int) else None
        consume_from = getattr(worker.app.amqp.queues, "consume_from", None) or {}
        _queues = tuple(sorted(consume_from))

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
