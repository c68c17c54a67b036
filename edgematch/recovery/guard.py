"""The effects of the failure policy around one task run (the decisions: policy.py).

Before the work, the delivery is counted (recovery/poison.py); after it, a replay's dead
letter is resolved, the count dropped and the journal entry closed. When the policy gives
up, the dead letter is written — one entry per task however often it is dead-lettered,
and a replay's failure updates the entry it replays. Every Redis call here waits out a
short outage inside the task (:func:`ride`): a retry would need the broker, which is often
the Redis that is away.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from edgematch.config.brokerkind import REDIS, Capabilities
from edgematch.errors import EdgematchError
from edgematch.infra import outages
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.recovery.deadletters import DeadLetters
from edgematch.recovery.journal import Journal
from edgematch.recovery.poison import Deliveries
from edgematch.recovery.policy import DeadLetter, Policy

log = get_logger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class TaskRun:
    """One delivery of a task, as the failure policy's effects need it.

    ``part`` tells apart two pieces of work one task guards separately, so that the
    second one's dead letter does not overwrite the first one's. ``replayed_from`` names
    the dead letter this run replays (``edgematch dlq replay``).
    """

    task: str
    task_id: str | None
    retries: int
    step: str
    args: Mapping[str, Any]
    correlation_id: str | None
    location: tuple[str | None, str | None]
    replayed_from: str | None = None
    part: str = ""
    #: Deliveries of this message before this one, as the broker counted them (RabbitMQ's
    #: ``x-delivery-count``); None where the broker does not count (Redis).
    delivered_before: int | None = None

    @property
    def dedupe_id(self) -> str | None:
        """The dead letter's id: the replayed entry's, else one per task (and part)."""
        if self.replayed_from:
            return self.replayed_from
        return f"task:{self.task_id}{self.part}" if self.task_id else None


def ride(work: Callable[[], R], step: str) -> R:
    """``work()``, waiting out a Redis or broker outage inside the task (infra/outages.py)."""
    event = f"{step}_waits_for_redis"
    return outages.ride_out(work, for_s=outages.RIDE_OUT_S, log=log, event=event)


class Guard:
    """Delivery counts, dead letters and journal entries of one deployment's tasks."""

    def __init__(
        self,
        *,
        deliveries: Deliveries,
        dead_letters: DeadLetters,
        journal: Journal,
        namespace: str,
        policy: Policy,
        max_deliveries: int,
        broker: Capabilities = REDIS,
    ) -> None:
        """``broker``: without ``count_deliveries`` (RabbitMQ) the broker counts deliveries
        and dead-letters a message past its limit (config/rabbit.py); nothing is counted
        in Redis."""
        self.counts = broker.count_deliveries
        self.deliveries = deliveries
        self.dead_letters = dead_letters
        self.journal = journal
        self.keys = Keys(namespace)
        self.policy = policy
        self.max_deliveries = max_deliveries

    def begin(self, run: TaskRun) -> int:
        """Count this delivery; its number (1 for a task without an id). Where the broker
        counts, its count says."""
        if not self.counts:
            return (run.delivered_before or 0) + 1
        task_id = run.task_id
        if not task_id:
            return 1
        return ride(lambda: self.deliveries.begin(task_id, run.retries), run.step)

    def succeeded(self, run: TaskRun) -> None:
        """The work is done: resolve the replayed dead letter, end the task's records."""
        replayed_from = run.replayed_from
        if replayed_from:
            outcome = ride(lambda: self.dead_letters.resolve(replayed_from), run.step)
            log.info("replay_resolved", replayed_from=replayed_from, entry=outcome)
        self.finish(run)

    def dead_letter(self, run: TaskRun, verdict: DeadLetter) -> None:
        """Write the dead letter of ``run``. Raises TransientError when the store is full
        or unreachable (then the task must not be acknowledged)."""
        self.dead_letters.add(
            task=run.task,
            queue=self.keys.queue(run.step),
            reason=verdict.reason,
            message=verdict.message,
            args=run.args,
            attempts=verdict.attempts,
            correlation_id=run.correlation_id,
            bucket=run.location[0],
            key=run.location[1],
            dedupe_id=run.dedupe_id,
        )

    def finish(self, run: TaskRun) -> None:
        """Drop the delivery count and close the journal entry. Closing is best effort: an
        entry left open only makes the sweep run the (idempotent) task once more."""
        if not run.task_id:
            return
        # The count and the entry in one round trip; the count's TTL removes one left.
        counted = (self.deliveries.key(run.task_id),) if self.counts else ()
        with contextlib.suppress(EdgematchError):
            self.journal.done(run.task_id, also_delete=counted)
