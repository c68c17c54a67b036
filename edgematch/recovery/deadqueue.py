"""RabbitMQ's dead-letter queue, drained into edgematch's dead letters.

On RabbitMQ the broker counts a message's deliveries and dead-letters it, once it has been
delivered ``EDGEMATCH_MAX_DELIVERIES`` times without an acknowledgement (each delivery
killed its worker), to the ``<namespace>.dead`` queue (config/rabbit.py). That queue is
not where on-call looks: :func:`drain` moves what waits there into the same dead-letter
store the Redis broker's delivery counting writes (recovery/poison.py), with reason
``poison`` and the task's arguments, so ``edgematch dlq`` lists, filters and replays it
like any other.

The beat's sweep (tasks/steps.py) drains it, every second, from whichever worker runs the
sweep: a worker has both the broker and Redis at hand, the sweep already runs the other
safety nets, and the beat schedules exactly one at a time. Each message is acknowledged
only after its dead letter is written, so a sweep killed in between leaves it for the next
one, which updates the same entry (its id is the task's, as the task itself would write).

A message the broker dead-lettered for another reason becomes a dead letter with that
reason (``broker_rejected`` …), except a periodic task (a sweep, a verdict-log flush) whose
expiry was reached: it was only useful then, and the beat has sent the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from edgematch.infra.logs import get_logger
from edgematch.names import TASK_FLUSH_VERDICTS, TASK_SWEEP
from edgematch.recovery.deadletters import DeadLetters
from edgematch.recovery.poison import POISON

log = get_logger(__name__)

#: Messages moved per sweep at most; the rest wait for the next one.
BATCH: Final = 100
#: Dead-lettered for these reasons, these tasks are dropped (see the module docstring).
PERIODIC: Final = frozenset({TASK_SWEEP, TASK_FLUSH_VERDICTS})


class Message(Protocol):
    """What of a kombu message is read here."""

    headers: Mapping[str, Any]
    body: Any

    def ack(self) -> None: ...


#: Takes one message from the dead-letter queue (kombu's ``Queue.get``), None when empty.
Getter = Callable[[], Any]


@dataclass(frozen=True)
class Dead:
    """One dead-lettered message as a dead letter needs it. Pure."""

    task: str
    task_id: str | None
    queue: str
    reason: str
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, headers: Mapping[str, Any], body: Any) -> Dead:
        deaths = headers.get("x-death") or [{}]
        death = deaths[0] if isinstance(deaths, list) and deaths else {}
        reason = str(headers.get("x-first-death-reason") or death.get("reason") or "unknown")
        payload = _payload(body)
        kwargs = payload[1] if len(payload) > 1 and isinstance(payload[1], dict) else {}
        return cls(
            task=str(headers.get("task") or "unknown"),
            task_id=str(headers["id"]) if headers.get("id") else None,
            queue=str(headers.get("x-first-death-queue") or death.get("queue") or ""),
            reason=POISON if reason == "delivery_limit" else f"broker_{reason}",
            kwargs=kwargs,
        )

    @property
    def dropped(self) -> bool:
        return self.task in PERIODIC and self.reason == "broker_expired"

    @property
    def dedupe_id(self) -> str | None:
        replayed_from = self.kwargs.get("replayed_from")
        if isinstance(replayed_from, str) and replayed_from:
            return replayed_from
        return f"task:{self.task_id}" if self.task_id else None

    def location(self) -> tuple[str | None, str | None]:
        for name in ("event", "result"):
            doc = self.kwargs.get(name)
            if isinstance(doc, dict):
                bucket, key = doc.get("bucket"), doc.get("key")
                return (str(bucket) if bucket else None, str(key) if key else None)
        return None, None


def drain(
    get: Getter, dead_letters: DeadLetters, *, max_deliveries: int, batch: int = BATCH
) -> int:
    """Move up to ``batch`` messages from the dead-letter queue into ``dead_letters``;
    how many were moved. A task past its delivery limit was delivered ``max_deliveries``
    times (the dead-lettered copy's own count starts again from 0). Raises what the broker
    or Redis raise (the sweep logs it)."""
    moved = 0
    for _ in range(batch):
        message: Message | None = get()
        if message is None:
            break
        dead = Dead.of(message.headers or {}, message.body)
        if not dead.dropped:
            bucket, key = dead.location()
            correlation_id = dead.kwargs.get("correlation_id")
            dead_letters.add(
                task=dead.task,
                queue=dead.queue,
                reason=dead.reason,
                message=f"dead-lettered by the broker ({dead.reason}) after its delivery limit"
                if dead.reason == POISON
                else f"dead-lettered by the broker ({dead.reason})",
                args=dead.kwargs,
                attempts=max_deliveries if dead.reason == POISON else 0,
                correlation_id=str(correlation_id) if correlation_id else None,
                bucket=bucket,
                key=key,
                dedupe_id=dead.dedupe_id,
            )
            log.error(
                "task_dead_lettered_by_broker",
                task=dead.task,
                task_id=dead.task_id,
                reason=dead.reason,
                queue=dead.queue,
            )
        message.ack()
        moved += 1
    return moved


def _payload(body: Any) -> list[Any]:
    """Celery's message body (protocol 2): ``[args, kwargs, embed]``."""
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    return list(body) if isinstance(body, list | tuple) else []
