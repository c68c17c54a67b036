"""The match step: drain the batch buffer into the API under the pool-wide limit.

A *pump* is one match task that loops for at most ``pump_max_s``: take a batch when a
slot is free, hand it to a thread that sends and settles it (pipeline/flights.py), take
the next. A pump keeps up to ``match_pumps`` requests in flight, so one pump alone can
use every slot of the pool's limit, in a worker of one process too. Pumps are few
(bounded by ``match_pumps`` and by the batches waiting), short, and never wait long
inside a worker process: when the pool must wait longer than a pump may run (a 429
cooldown, an open breaker), the pump ends and the beat's sweep starts a new one when the
wait is nearly over. A pump's task returns once every request it sent is settled.

One request is sent and settled by pipeline/request.py; what each item's answer becomes is
pipeline/settling.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgematch.infra import metrics
from edgematch.pipeline import request, settling
from edgematch.pipeline.buffer import Batch, Empty, Wait
from edgematch.pipeline.flights import Flights, serialized
from edgematch.runtime import Runtime

#: How long before its slot the pump that follows one giving way is due: the process may be
#: in the middle of another task when the slot comes (a results task takes tens of ms).
GIVE_WAY_LEAD_S = 0.15


@dataclass(frozen=True)
class PumpReport:
    """What one pump run did, for logs and tests."""

    batches: int
    items: int
    stopped: str


def pump(
    rt: Runtime,
    pump_id: str,
    *,
    publish: settling.PublishMany,
    start_pump: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    others_waiting: Callable[[], bool] | None = None,
    start_pump_later: Callable[[str, float], None] | None = None,
) -> PumpReport:
    """Drain the buffer for at most ``pump_max_s``; then hand over to a new pump if needed.

    ``publish`` enqueues the results of one request; ``start_pump`` enqueues a pump task
    with a given id. ``others_waiting``, given when this pump runs in its worker's only
    process, says whether other steps' tasks wait: the pump then ends instead of sleeping
    until the next slot, since sleeping would hold back the ingest that fills the next
    batches and the results that follow; a new pump takes its turn in the match queue.
    ``start_pump_later`` (a pump task with a countdown), given with ``others_waiting``,
    starts that new pump when the slot is due instead of at once: the match queue is
    served first, so a pump queued at once would run before the waiting work and give way
    again, a match task and its bookkeeping for nothing, many times a slot.
    """
    buf = rt.buffer
    deadline = time.monotonic() + rt.settings.pump_max_s
    batches = items = 0
    stopped = "deadline"
    flights = Flights(rt.settings.match_pumps)
    publish_one = serialized(publish)
    ended = False
    wait_s = 0.0  # the last wait for a slot: when the next pump is due, if this one gives way
    try:
        while True:
            # Room first: a batch taken is a slot spent, and goes out at once.
            flights.make_room()
            if flights.failed:
                # Something unexpected: take no more; what is in flight is still settled.
                stopped = "failed"
                break
            taken = buf.take()
            if isinstance(taken, Batch):
                if _launch(rt, taken, flights, publish=publish_one):
                    batches += 1
                    items += len(taken.items)
                if time.monotonic() >= deadline:
                    break
                continue
            if isinstance(taken, Empty):
                # What is in flight may come back (a retry, a 429's cooldown): the pump
                # ends empty only once its own requests are settled and the buffer is too.
                if flights.land_one():
                    if time.monotonic() >= deadline:
                        break
                    continue
                stopped = "empty"
                break
            assert isinstance(taken, Wait)
            wait_s = taken.seconds
            # A pump gives way only once it has sent: the one started to take this slot
            # takes it, whatever else waits.
            gives_way = others_waiting if batches else None
            why = _wait(rt, pump_id, taken, deadline, sleep=sleep, others_waiting=gives_way)
            if why is not None:
                stopped = why
                break
        ended = True
    finally:
        try:
            buf.release_pump(pump_id)
            # Released first, then kicked: an item pushed meanwhile is seen by one of the
            # two. A pump that ended because another one waits for the next slot leaves
            # the kick to that one. Kicked before this pump's last answers are in, so that
            # in a worker of several processes the next pump takes the next slot meanwhile.
            if ended:
                _hand_over(rt, stopped, wait_s, start_pump, start_pump_later)
        finally:
            # Every request sent is settled before the task returns, even when the loop
            # failed (a Redis outage in a take): the answers are in flight already.
            flights.land()
    return PumpReport(batches=batches, items=items, stopped=stopped)


def _hand_over(
    rt: Runtime,
    stopped: str,
    wait_s: float,
    start_pump: Callable[[str], None],
    start_pump_later: Callable[[str, float], None] | None,
) -> None:
    """Start the next pump if one is useful: when the slot is due, after giving way."""
    if stopped == "another_waits":
        return
    if stopped == "yield" and start_pump_later is not None:
        later = start_pump_later
        # Due a little before the slot: the process may be busy with a task when it is.
        due_s = max(0.0, wait_s - GIVE_WAY_LEAD_S)
        _kick(rt, lambda next_id: later(next_id, due_s))
        return
    _kick(rt, start_pump)


def _launch(rt: Runtime, batch: Batch, flights: Flights, *, publish: settling.PublishMany) -> bool:
    """Send a taken batch on a flight thread, which settles it; False for an empty batch
    (settled here: nothing to send)."""
    if not batch.items:
        rt.buffer.settle(batch.id, (), ())
        return False

    # The lease is renewed from now until the batch is settled: a flight waiting for a
    # thread (pumps of a threads pool share them) must not let it run out.
    kept = contextlib.ExitStack()
    kept.enter_context(rt.buffer.keeping(batch.id))

    def send() -> None:
        with kept:
            request.send_batch(rt, batch, publish=publish)

    try:
        flights.launch(send)
    except BaseException:
        kept.close()
        raise
    return True


def _wait(
    rt: Runtime,
    pump_id: str,
    wait: Wait,
    deadline: float,
    *,
    sleep: Callable[[float], None],
    others_waiting: Callable[[], bool] | None,
) -> str | None:
    """Sleep until the next slot, or say why this pump stops instead (see :func:`pump`)."""
    buf = rt.buffer
    if wait.seconds > deadline - time.monotonic():
        return wait.reason
    if others_waiting is not None and others_waiting():
        return "yield"
    if not buf.wait_turn(pump_id, wait.seconds):
        # Another pump already waits for that slot; this process has other work.
        return "another_waits"
    metrics.LIMITER_WAIT.labels(wait.reason).observe(wait.seconds)
    sleep(wait.seconds)
    buf.end_wait(pump_id)
    return None


def _kick(rt: Runtime, start_pump: Callable[[str], None]) -> None:
    # A running pump's kick: this pump's takes give back the items of expired leases.
    pump_id = rt.buffer.kick(leases=False)
    if pump_id is not None:
        start_pump(pump_id)
