"""A worker's SIGTERM is bounded by ``EDGEMATCH_SHUTDOWN_GRACE_S``.

Celery's SIGTERM is a *warm* shutdown: stop taking tasks, wait for the running ones, flush
their acknowledgements, exit. It waits as long as that takes — a task blocked on a silent
peer, or a broker that never answers the consumer's cancel, holds the process forever,
and an orchestrator then SIGKILLs it at its own deadline with nothing logged.

The deadline here keeps Celery's warm shutdown (nothing is cut short that finishes within
the grace) and bounds it: when the grace runs out, the worker asks itself for Celery's
*cold* shutdown (SIGQUIT, its soft-shutdown wait set to zero: the grace is spent): running
tasks are cancelled and, with late acknowledgement and ``task_reject_on_worker_lost``,
handed back to the broker. If even that has not ended the process ``HARD_EXIT_AFTER_S``
later, it exits at once: every task it held is unacknowledged, so RabbitMQ requeues it
when the connection drops and the Redis broker's sweep hands it back (recovery/unacked.py).
Every task is idempotent, so one that runs again changes nothing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Final

from celery import Celery, signals

from edgematch.infra.logs import get_logger

log = get_logger(__name__)

#: How long the cold shutdown may take before the process exits by itself: Celery bounds
#: its broker sockets to five seconds in a cold shutdown, less a margin.
HARD_EXIT_AFTER_S: Final = 4.0
#: The exit status of a worker that had to end its shutdown by itself.
EXIT_SHUTDOWN_OVERRAN: Final = 1


class ShutdownDeadline:
    """Started once by the first shutdown signal in a worker's main process."""

    def __init__(self, app: Celery, grace_s: float) -> None:
        self.app = app
        self.grace_s = grace_s
        self._started = False

    def on_shutting_down(self, sig: str = "", how: str = "", **_: Any) -> None:
        """Celery's ``worker_shutting_down``: runs in the main process's signal handler.

        Only ever on the main thread (signal handlers run there), so the flag needs no
        lock; a lock could deadlock a handler re-entered by a second signal."""
        if self._started:
            return
        self._started = True
        log.info("worker_shutting_down", signal=sig, how=how, grace_s=self.grace_s)
        threading.Thread(target=self._watch, name="shutdown-deadline", daemon=True).start()

    def _watch(self) -> None:
        # A daemon thread: when the shutdown ends in time, the process exits under it.
        time.sleep(self.grace_s)
        log.warning("shutdown_grace_spent", grace_s=self.grace_s, next="cold shutdown")
        # The grace is spent: Celery's cold shutdown must not wait it out a second time.
        self.app.conf.worker_soft_shutdown_timeout = 0.0
        os.kill(os.getpid(), signal.SIGQUIT)
        time.sleep(HARD_EXIT_AFTER_S)
        log.error(
            "shutdown_overran",
            grace_s=self.grace_s,
            waited_s=self.grace_s + HARD_EXIT_AFTER_S,
            exit_status=EXIT_SHUTDOWN_OVERRAN,
            outcome="exiting; the broker hands back every task not acknowledged",
        )
        os._exit(EXIT_SHUTDOWN_OVERRAN)


def install(app: Celery, grace_s: float) -> None:
    """Bound every shutdown of a worker of ``app`` to ``grace_s`` plus a few seconds."""
    deadline = ShutdownDeadline(app, grace_s)
    signals.worker_shutting_down.connect(deadline.on_shutting_down, weak=False)
