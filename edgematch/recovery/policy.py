"""The failure policy of every task, as pure decisions: retry when, dead-letter why.

What a failed run of a task becomes, by what it raised (errors.py draws the tree):

- ``RedisUnavailable`` / ``BrokerUnavailable`` (an outage) → a *free* retry that spends
  no attempt, until the outage has lasted ``OUTAGE_BUDGET_S`` (infra/outages.py); then
  it counts like any other transient failure;
- any other ``TransientError`` → a retry after capped, jittered backoff, until the
  attempt is the ``max_attempts``-th; then a ``retries_exhausted`` dead letter. A
  ``RateLimited`` or ``LockHeld`` error says when to come back: the retry waits at least
  that long (within the backoff cap, which the visibility timeout covers);
- a ``PermanentError``, ``ConfigurationError``, ``CredentialError`` → a dead letter with
  the error's reason at once;
- anything else is a bug → an ``unexpected`` dead letter (logged with its traceback), so
  that nothing is acknowledged and forgotten.

A task begun more than ``max_deliveries`` times without finishing (each run killed its
worker) is a ``poison`` dead letter without running (:func:`admit`).

The effects — counting deliveries, writing the dead letter, raising Celery's retry —
are elsewhere (recovery/guard.py, tasks/base.py). Times are in seconds; ``now`` is
``time.time()``. Nothing here does I/O apart from the backoff's random draw, which the
caller may pin with its own :class:`random.Random`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from edgematch.errors import EdgematchError, RateLimited, TransientError
from edgematch.infra import outages
from edgematch.infra.backoff import compute_backoff
from edgematch.recovery.locks import LockHeld
from edgematch.recovery.poison import POISON, is_poison

#: The reason of a dead letter for a transient failure that used up its attempts.
RETRIES_EXHAUSTED: Final = "retries_exhausted"
#: The reason of a dead letter for an exception outside the tree: a bug.
UNEXPECTED: Final = "unexpected"


@dataclass(frozen=True)
class Policy:
    """The numbers the policy runs on (EDGEMATCH_MAX_ATTEMPTS, EDGEMATCH_BACKOFF_*)."""

    max_attempts: int
    base_s: float
    cap_s: float


@dataclass(frozen=True)
class Retry:
    """Run the task again after ``delay_s``.

    ``headers`` are the retried message's headers (None: Celery's own). ``attempt`` is the
    attempt that failed, 0 for an outage's free retry (``outage``).
    """

    delay_s: float
    headers: dict[str, Any] | None = None
    attempt: int = 0
    outage: bool = False


@dataclass(frozen=True)
class DeadLetter:
    """Give up: record a dead letter with ``reason`` and ``message`` after ``attempts``.

    ``unexpected`` marks a bug, whose traceback is worth logging.
    """

    reason: str
    message: str
    attempts: int
    unexpected: bool = False


Decision = Retry | DeadLetter


def decide(
    exc: BaseException,
    *,
    retries: int,
    headers: Mapping[str, Any] | None,
    now: float,
    policy: Policy,
    rng: random.Random | None = None,
) -> Decision:
    """What a run that raised ``exc`` becomes; ``retries`` and ``headers`` are Celery's
    for this delivery (the headers carry the outage count, infra/outages.py)."""
    if isinstance(exc, TransientError):
        return _transient(exc, retries=retries, headers=headers, now=now, policy=policy, rng=rng)
    if isinstance(exc, EdgematchError):
        return DeadLetter(exc.reason, str(exc), retries + 1)
    return DeadLetter(UNEXPECTED, f"{type(exc).__name__}: {exc}", 1, unexpected=True)


def _transient(
    exc: TransientError,
    *,
    retries: int,
    headers: Mapping[str, Any] | None,
    now: float,
    policy: Policy,
    rng: random.Random | None,
) -> Decision:
    if isinstance(exc, outages.OUTAGES):
        free = outages.free_retry(headers, now=now, base_s=policy.base_s, cap_s=policy.cap_s)
        if free is not None:
            return Retry(free.countdown_s, headers=free.headers, outage=True)
    attempt = outages.attempt(retries, headers)
    if attempt >= policy.max_attempts:
        return DeadLetter(RETRIES_EXHAUSTED, str(exc), attempt)
    delay_s = compute_backoff(attempt, base_s=policy.base_s, cap_s=policy.cap_s, rng=rng)
    if isinstance(exc, RateLimited | LockHeld):
        delay_s = max(delay_s, min(exc.retry_after_s, policy.cap_s))
    return Retry(delay_s, headers=outages.streak_over(headers), attempt=attempt)


def admit(delivery: int, *, max_deliveries: int) -> DeadLetter | None:
    """None when delivery number ``delivery`` of a task may run; a ``poison`` dead letter
    when the task has begun more than ``max_deliveries`` times already."""
    if not is_poison(delivery, max_deliveries):
        return None
    attempts = delivery - 1
    message = f"began {attempts} times and never finished: each run killed its worker"
    return DeadLetter(POISON, message, attempts)


def store_refused(policy: Policy) -> Retry:
    """The dead letter could not be written (the store is full or unreachable):
    acknowledging now would lose the task, so it runs again after the backoff cap."""
    return Retry(policy.cap_s)


def hand_over(
    exc: BaseException, *, policy: Policy, rng: random.Random | None = None
) -> Retry | None:
    """How an element of a batch task that raised ``exc`` goes to its own single task,
    which applies the whole policy to it: a transient failure after a first backoff (a
    Retry of attempt 1), anything else at once (None)."""
    if isinstance(exc, TransientError):
        delay_s = compute_backoff(1, base_s=policy.base_s, cap_s=policy.cap_s, rng=rng)
        return Retry(delay_s, attempt=1)
    return None
