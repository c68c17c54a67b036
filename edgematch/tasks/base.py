"""The base of every task that carries work: it applies the failure policy.

:meth:`StepTask.guarded` runs a task's work between the policy's effects
(recovery/guard.py) and turns what the work raised into the policy's decision
(recovery/policy.py): Celery's retry with the decided countdown and headers, or a dead
letter with the task's arguments, so that nothing is acknowledged and forgotten.
:meth:`StepTask.guarded_batch` does the same for a task that carries many elements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import structlog
from celery import Task

from edgematch.config import rabbit
from edgematch.errors import TransientError
from edgematch.infra.fanout import fan_out
from edgematch.infra.logs import get_logger
from edgematch.pipeline.pushes import WAITING, HandOver
from edgematch.recovery import policy
from edgematch.recovery.guard import TaskRun, ride
from edgematch.recovery.policy import DeadLetter
from edgematch.recovery.publishing import Publishable
from edgematch.runtime import runtime

log = get_logger(__name__)
T = TypeVar("T")

#: What a task that gave up returns (its dead letter is written).
DEAD_LETTERED: Final = "dead_lettered"

#: Ends the elements of a batch left ``WAITING``, given the hand-over to their own task.
Finish = Callable[[HandOver], list[str]]
#: The work of a batch's elements all at once: an outcome, or the failure, of each in order.
Together = Callable[[list[dict[str, Any]]], Sequence[str | BaseException]]

#: Called with what made the task give up (None for a poison task) once its dead letter
#: is written.
OnDeadLetter = Callable[[BaseException | None], None]


class Retryable(Protocol):
    """What of a Celery task the policy uses."""

    name: str

    @property
    def request(self) -> Any: ...

    def retry(self, *args: Any, **kwargs: Any) -> Any: ...


def guarded(
    task: Retryable,
    step: str,
    work: Callable[[], T],
    *,
    args: Mapping[str, Any],
    correlation_id: str | None,
    location: tuple[str | None, str | None],
    replayed_from: str | None = None,
    part: str = "",
    on_redelivery: Callable[[], T] | None = None,
    on_dead_letter: OnDeadLetter | None = None,
) -> T | str:
    """Run one task's ``work`` under the failure policy; DEAD_LETTERED when it gave up.

    A delivery that is not the first (the worker running it before died) runs
    ``on_redelivery`` in place of ``work``, when given: a batch task splits itself there.
    Raises Celery's Retry when the policy says to retry.
    """
    guard = runtime().guard
    request = task.request
    if replayed_from:
        structlog.contextvars.bind_contextvars(replayed_from=replayed_from)
    run = TaskRun(
        task=task.name,
        task_id=request.id,
        retries=request.retries,
        step=step,
        args=args,
        correlation_id=correlation_id,
        location=location,
        replayed_from=replayed_from,
        part=part,
        delivered_before=_delivered_before(request),
    )
    failure: BaseException | None = None
    try:
        delivery = guard.begin(run)
        verdict = policy.admit(delivery, max_deliveries=guard.max_deliveries)
        if verdict is None:
            value = ride(on_redelivery if on_redelivery and delivery > 1 else work, step)
            guard.succeeded(run)
            return value
    except Exception as exc:  # a bug must leave a dead letter, not a lost task
        failure = exc
        headers = request.headers or {}
        decision = policy.decide(
            exc, retries=request.retries, headers=headers, now=time.time(), policy=guard.policy
        )
        if isinstance(decision, policy.Retry):
            _log_retry(step, exc, decision)
            raise _retry(task, exc, decision) from exc
        if decision.unexpected:
            log.exception(f"{step}_crashed")
        verdict = decision
    _dead_letter(task, run, verdict)
    if on_dead_letter is not None:
        on_dead_letter(failure)
    return DEAD_LETTERED


def _delivered_before(request: Any) -> int | None:
    """RabbitMQ's count of this message's earlier deliveries (a quorum queue's
    ``x-delivery-count`` header, among the request's message headers); None elsewhere."""
    count = vars(request).get("x-delivery-count") if hasattr(request, "__dict__") else None
    return int(count) if isinstance(count, int) else None


def _dead_letter(task: Retryable, run: TaskRun, verdict: DeadLetter) -> None:
    guard = runtime().guard
    try:
        guard.dead_letter(run, verdict)
    except TransientError as exc:
        log.error(f"{run.step}_not_dead_lettered", reason=verdict.reason, error=str(exc))
        raise _retry(task, exc, policy.store_refused(guard.policy)) from exc
    guard.finish(run)
    log.error(
        f"{run.step}_dead_lettered",
        reason=verdict.reason,
        error=verdict.message,
        attempts=verdict.attempts,
    )


def _log_retry(step: str, exc: BaseException, decision: policy.Retry) -> None:
    delay_s = round(decision.delay_s, 3)
    if decision.outage:
        log.warning(f"{step}_outage_retry", error=str(exc), delay_s=delay_s)
    else:
        log.warning(f"{step}_retry", error=str(exc), attempt=decision.attempt, delay_s=delay_s)


def _retry(task: Retryable, exc: BaseException, decision: policy.Retry) -> Any:
    delay_s = decision.delay_s
    if runtime().settings.broker.amqp:
        delay_s = rabbit.countdown(delay_s)
    if decision.headers is None:
        return task.retry(exc=exc, countdown=delay_s)
    return task.retry(exc=exc, countdown=delay_s, headers=decision.headers)


class StepTask(Task):  # type: ignore[type-arg]
    """A task whose work runs under the failure policy (see the module docstring)."""

    #: :func:`guarded` as a method: the task itself is its ``task``.
    guarded = guarded

    def guarded_batch(
        self,
        step: str,
        elements: list[dict[str, Any]],
        work: Callable[[dict[str, Any]], str] | None,
        *,
        single: Publishable,
        single_kwargs: Callable[[dict[str, Any]], dict[str, Any]],
        args: dict[str, Any],
        correlation_id: str | None,
        replayed_from: str | None,
        finish: Finish | None = None,
        together: Together | None = None,
    ) -> dict[str, int] | str:
        """Run ``work`` on every element of a batch task, side by side, under the policy.

        An element whose work fails is handed to the ``single`` task (``single_kwargs`` of
        it) — after a backoff for a transient failure, at once otherwise — which applies
        the whole policy (retries, dead letter, replay) to that element alone. A batch
        delivered a second time (its worker died mid-way) is split into single tasks, so
        an element that kills workers cannot hold the others back. Returns the count of
        each outcome.

        ``finish``: the elements whose ``work`` returned ``WAITING`` end together once every
        element's work is done (pipeline/pushes.py); it is given the hand-over to the
        ``single`` task and returns their outcomes.
        """
        rt = runtime()

        def one(element: dict[str, Any]) -> str:
            assert work is not None  # run() calls it only then
            kwargs = single_kwargs(element)
            structlog.contextvars.bind_contextvars(correlation_id=kwargs.get("correlation_id"))
            try:
                return work(element)
            except Exception as exc:  # noqa: BLE001 - its own task applies the policy
                return _hand_over(step, exc, single, kwargs)

        def hand_over(element: dict[str, Any], exc: BaseException) -> str:
            return _hand_over(step, exc, single, single_kwargs(element))

        def all_at_once(together: Together) -> list[str]:
            try:
                done = together(elements)
            except Exception as exc:  # noqa: BLE001 - each element's own task applies the policy
                done = [exc] * len(elements)
            outcomes = []
            for element, outcome in zip(elements, done, strict=True):
                if isinstance(outcome, BaseException):
                    kwargs = single_kwargs(element)
                    cid = kwargs.get("correlation_id")
                    structlog.contextvars.bind_contextvars(correlation_id=cid)
                    outcomes.append(_hand_over(step, outcome, single, kwargs))
                else:
                    outcomes.append(outcome)
            return outcomes

        def run() -> dict[str, int]:
            if together is not None:
                outcomes = all_at_once(together)
            elif work is not None:
                outcomes = fan_out(one, elements)
            else:
                raise TypeError("guarded_batch needs work or together")
            if finish is not None:
                outcomes = [o for o in outcomes if o != WAITING] + finish(hand_over)
            counts: dict[str, int] = {}
            for outcome in outcomes:
                counts[outcome] = counts.get(outcome, 0) + 1
            return counts

        def split() -> dict[str, int] | str:
            log.warning(f"{step}_batch_split", count=len(elements))
            for element in elements:
                rt.publisher.send(single, single_kwargs(element))
            return "split"

        return self.guarded(
            step,
            run,
            args=args,
            correlation_id=correlation_id,
            location=(None, None),
            replayed_from=replayed_from,
            on_redelivery=split,
        )


def _hand_over(step: str, exc: BaseException, single: Publishable, kwargs: dict[str, Any]) -> str:
    rt = runtime()
    later = policy.hand_over(exc, policy=rt.guard.policy)
    if later is not None:
        delay_s = round(later.delay_s, 3)
        log.warning(f"{step}_retry", error=str(exc), attempt=later.attempt, delay_s=delay_s)
        rt.publisher.send(single, kwargs, countdown=later.delay_s)
        return "retry"
    log.warning(f"{step}_handed_over", error=f"{type(exc).__name__}: {exc}"[:300])
    rt.publisher.send(single, kwargs)
    return "handed_over"
