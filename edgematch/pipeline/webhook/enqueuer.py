"""One thread publishes what the webhook accepts: admission at the mark, then the tasks.

Requests hand their objects to :meth:`Enqueuer.submit` and wait on the future it returns.
The thread takes every submission waiting (a group commit: a round never waits for
company; what arrives while one publishes goes in the next), reads the backlog once, admits
the submissions that fit under ``EDGEMATCH_INTAKE_HIGH_WATER`` in arrival order and
publishes their objects as ingest tasks of up to ten (``tasks.enqueue.enqueue_events``, as
intake does with one SQS receive).
A future resolves only after that publish returned, or with the reason it was refused:
``high_water`` (room ran out), ``unavailable`` (Redis or the broker did not answer, or a
bug: logged). Either way the sender keeps the notification and sends it again.

The live lane weighs a queued task as the ten objects it may carry (pipeline/backpressure),
so admission counts tasks the same way. Reading the backlog costs two Redis round trips, so
a reading is reused for up to ``BACKLOG_TTL_S``, with the tasks published since added to it:
workers only ever lower the backlog, so with one webhook process the estimate never
undercounts and the mark is never passed; several processes may together pass it by what
they publish within that time, as several intake processes may by a receive each. When
the estimate leaves no room the backlog is read again at once (workers may have drained
it). Pending submissions are bounded (``max_pending``); past it, :meth:`submit` refuses at
once.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from edgematch.errors import TransientError
from edgematch.infra import health
from edgematch.infra.logs import get_logger
from edgematch.pipeline import handoff
from edgematch.pipeline.backpressure import INGEST_BATCH
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.webhook.admission import admitted

log = get_logger(__name__)

#: ``(object, correlation id)`` pairs, published all together or raising.
Work = Sequence[tuple[ObjectCreated, str]]
#: Seconds the thread waits for work before it beats and reads the backlog anyway.
TICK_S = 1.0
#: Seconds between idle looks at the backlog (they keep ``backends_ok`` current).
IDLE_PROBE_S = 5.0
#: Seconds a backlog reading is reused for (plus what was published since).
BACKLOG_TTL_S = 0.25
#: Seconds between touches of the heartbeat file.
BEAT_EVERY_S = 1.0


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    #: ``enqueued``, ``high_water``, ``unavailable`` or ``busy``.
    reason: str


ENQUEUED = Outcome(True, "enqueued")


@dataclass
class _Submission:
    work: Work
    future: Future[Outcome]


class Enqueuer:
    """The publishing thread. ``start()``, then ``submit()`` from any thread; ``stop()``."""

    def __init__(
        self,
        *,
        enqueue: Callable[[Work], None],
        read_backlog: Callable[[], int],
        high_water: int,
        max_pending: int = 10_000,
        max_objects_per_round: int = 10 * INGEST_BATCH,
    ) -> None:
        self._enqueue = enqueue
        self._read_backlog = read_backlog
        self.high_water = high_water
        self._max_objects = max_objects_per_round
        # ``None`` is the wake-up ``stop()`` leaves, so the thread ends at once.
        self._pending: queue.Queue[_Submission | None] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-enqueuer", daemon=True)
        self.last_tick = time.monotonic()
        #: Whether the last reading of the backlog got an answer (for /readyz): from Redis,
        #: and from RabbitMQ when it is the broker (it counts the queues there).
        self.backends_ok = False
        self._last_probe = 0.0
        #: The last backlog reading plus what was published since, and when it was read.
        self._estimate = 0
        self._read_at = -math.inf
        self._beat_at = -math.inf

    def start(self) -> Enqueuer:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread; anything still pending is refused as ``unavailable``."""
        self._stop.set()
        with contextlib.suppress(queue.Full):  # full: the thread is not waiting anyway
            self._pending.put_nowait(None)
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        while True:
            try:
                left = self._pending.get_nowait()
            except queue.Empty:
                return
            if left is not None:
                left.future.set_result(Outcome(False, "unavailable"))

    def alive(self, max_age_s: float = 30.0) -> bool:
        return self._thread.is_alive() and time.monotonic() - self.last_tick < max_age_s

    def submit(self, work: Work) -> Future[Outcome]:
        """Queue ``work`` (not empty) for the thread; the future says what became of it."""
        future: Future[Outcome] = Future()
        if self._stop.is_set():
            future.set_result(Outcome(False, "unavailable"))
            return future
        try:
            self._pending.put_nowait(_Submission(work, future))
        except queue.Full:
            future.set_result(Outcome(False, "busy"))
        return future

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self.last_tick = time.monotonic()
            if self.last_tick - self._beat_at >= BEAT_EVERY_S:
                health.beat("webhook")
                self._beat_at = self.last_tick
            try:
                first = self._pending.get(timeout=TICK_S)
            except queue.Empty:
                self._probe()
                continue
            if first is None:  # stop()'s wake-up
                return
            self._round(self._gather(first))

    def _gather(self, first: _Submission) -> list[_Submission]:
        batch, objects = [first], len(first.work)
        while objects < self._max_objects:
            try:
                more = self._pending.get_nowait()
            except queue.Empty:
                break
            if more is None:  # stop()'s wake-up: this round is the last
                break
            batch.append(more)
            objects += len(more.work)
        return batch

    def _round(self, batch: list[_Submission]) -> None:
        # A request that stopped waiting (its timeout) was answered 503: its sender sends
        # it again, so publishing it now would only make a duplicate.
        batch = [s for s in batch if not s.future.cancelled()]
        if not batch:
            return
        sizes = [len(s.work) for s in batch]
        fresh = time.monotonic() - self._read_at < BACKLOG_TTL_S
        if fresh and admitted(self._estimate, self.high_water, sizes) == len(batch):
            self._publish(batch, self._estimate)
            return
        try:
            backlog = self._read_backlog()
        except TransientError as exc:
            self.backends_ok = False
            log.warning("webhook_backlog_unknown", error=f"{type(exc).__name__}: {exc}"[:300])
            _resolve(batch, Outcome(False, "unavailable"))
            return
        except Exception:
            # A bug, never taken for Redis being down: seen with its traceback; the senders
            # keep their notifications meanwhile.
            log.exception("webhook_backlog_failed")
            _resolve(batch, Outcome(False, "unavailable"))
            return
        self.backends_ok = True
        self._last_probe = self._read_at = time.monotonic()
        self._estimate = backlog
        self._publish(batch, backlog)

    def _publish(self, batch: list[_Submission], backlog: int) -> None:
        """Publish what fits under the mark over ``backlog``; refuse the rest."""
        fit = admitted(backlog, self.high_water, [len(s.work) for s in batch])
        if fit < len(batch):
            log.warning(
                "webhook_at_high_water",
                backlog=backlog,
                high_water=self.high_water,
                refused=len(batch) - fit,
            )
            _resolve(batch[fit:], Outcome(False, "high_water"))
        taken = batch[:fit]
        if not taken:
            return
        work = [pair for s in taken for pair in s.work]
        try:
            self._enqueue(work)
        except TransientError as exc:  # the broker or Redis away: the senders send again
            handoff.enqueue_failed(work, exc)
            _resolve(taken, Outcome(False, "unavailable"))
            return
        except Exception:
            log.exception("enqueue_failed_unexpectedly", objects=len(work))
            _resolve(taken, Outcome(False, "unavailable"))
            return
        self._estimate += INGEST_BATCH * math.ceil(len(work) / INGEST_BATCH)
        handoff.enqueued(work)
        _resolve(taken, ENQUEUED)

    def _probe(self) -> None:
        if time.monotonic() - self._last_probe < IDLE_PROBE_S:
            return
        self._last_probe = time.monotonic()
        try:
            self._read_backlog()
        except TransientError:
            self.backends_ok = False
        except Exception:
            log.exception("webhook_backlog_failed")
            self.backends_ok = False
        else:
            self.backends_ok = True


def _resolve(batch: Sequence[_Submission], outcome: Outcome) -> None:
    for submission in batch:
        if not submission.future.done():
            submission.future.set_result(outcome)
