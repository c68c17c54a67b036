"""Unit tests for edgematch.recovery.policy (pure; no Redis, no Celery).

Every error class the application raises, at every attempt up to past the last, with and
without an outage streak in the message headers, gets the decision the module docstring
states.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import edgematch
from edgematch.downstream.quarantine import CopyUnverified, QuarantineUnavailable
from edgematch.downstream.release import EvidenceKept, NotReleasable, UnknownReport
from edgematch.errors import (
    BadInput,
    ConfigurationError,
    CredentialError,
    EdgematchError,
    ItemRejected,
    ItemTransient,
    ObjectMissing,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.infra.logstore import Unreadable
from edgematch.infra.outages import (
    OUTAGE_BUDGET_S,
    OUTAGE_RETRIES,
    OUTAGE_RETRY_CAP_S,
    OUTAGE_SINCE,
)
from edgematch.infra.redisclient import (
    BrokerUnavailable,
    LockNotOwned,
    RedisUnavailable,
    ScriptMissing,
)
from edgematch.pipeline.attribution import VersionUnknown
from edgematch.pipeline.resultstore import LogBehind
from edgematch.recovery.deadletters import DeadLetterStoreFull
from edgematch.recovery.locks import LockHeld
from edgematch.recovery.policy import (
    RETRIES_EXHAUSTED,
    UNEXPECTED,
    DeadLetter,
    Policy,
    Retry,
    admit,
    decide,
    hand_over,
    store_refused,
)

POLICY = Policy(max_attempts=8, base_s=1.0, cap_s=300.0)
NOW = 1_700_000_000.0

#: One instance of every error class, by kind.
OUTAGES: dict[type[EdgematchError], Callable[[], EdgematchError]] = {
    RedisUnavailable: lambda: RedisUnavailable("redis down"),
    ScriptMissing: lambda: ScriptMissing("script flushed"),
    BrokerUnavailable: lambda: BrokerUnavailable("broker down"),
}
TOLD: dict[type[EdgematchError], Callable[[], EdgematchError]] = {
    RateLimited: lambda: RateLimited("429", retry_after_s=40.0),
    LockHeld: lambda: LockHeld("held", retry_after_s=40.0),
}
TRANSIENT: dict[type[EdgematchError], Callable[[], EdgematchError]] = {
    TransientError: lambda: TransientError("try later"),
    ServerError: lambda: ServerError("503", status_code=503),
    TransportError: lambda: TransportError("timed out"),
    ItemTransient: lambda: ItemTransient("3004", status_code=3004),
    LockNotOwned: lambda: LockNotOwned("lost the lock"),
    DeadLetterStoreFull: lambda: DeadLetterStoreFull("full"),
    CopyUnverified: lambda: CopyUnverified("copy differs"),
    LogBehind: lambda: LogBehind("the verdict log is behind"),
}
FINAL: dict[type[EdgematchError], Callable[[], EdgematchError]] = {
    ConfigurationError: lambda: ConfigurationError("access denied"),
    CredentialError: lambda: CredentialError("401", status_code=401),
    PermanentError: lambda: PermanentError("never"),
    ItemRejected: lambda: ItemRejected("3206", status_code=3206),
    RequestRejected: lambda: RequestRejected("3209", status_code=3209),
    BadInput: lambda: BadInput("empty hash file"),
    ObjectMissing: lambda: ObjectMissing("gone"),
    QuarantineUnavailable: lambda: QuarantineUnavailable("no bucket"),
    VersionUnknown: lambda: VersionUnknown("versions listing refused"),
    UnknownReport: lambda: UnknownReport("no report rpt-x"),
    NotReleasable: lambda: NotReleasable("report rpt-x is confirmed"),
    EvidenceKept: lambda: EvidenceKept("legal hold stays: access denied"),
    Unreadable: lambda: Unreadable("not gzip JSON Lines"),
}
BUGS: list[Callable[[], Exception]] = [
    lambda: ValueError("bad value"),
    lambda: KeyError("bucket"),
    lambda: AttributeError("none has no attribute"),
]
ATTEMPTS = range(1, POLICY.max_attempts + 3)


class _Pinned(random.Random):
    """A Random whose draw is always ``value``: pins the backoff's jitter."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self._value = value

    def random(self) -> float:
        return self._value


def _subclasses(cls: type[Exception]) -> Iterator[type[Exception]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_of_the_application_is_in_a_table() -> None:
    """An error class added to the application must be given a row here (and so a decided
    outcome), like an upstream exception left unmapped at a boundary."""
    for info in pkgutil.walk_packages(edgematch.__path__, "edgematch."):
        if info.name.split(".")[1] not in ("tasks", "ops"):  # Celery app, CLI: no errors
            importlib.import_module(info.name)
    tables = {**OUTAGES, **TOLD, **TRANSIENT, **FINAL}
    assert set(_subclasses(EdgematchError)) - {EdgematchError} <= set(tables)


@pytest.mark.parametrize("make", [*TRANSIENT.values(), *TOLD.values()])
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_transient_errors_retry_with_backoff_until_the_last_attempt(
    make: Callable[[], EdgematchError], attempt: int
) -> None:
    """A transient failure of attempt n < max retries after the backoff of attempt n
    (a Retry-After or a lock's TTL as a floor); attempt max and later are dead letters."""
    exc = make()
    decision = decide(
        exc, retries=attempt - 1, headers={}, now=NOW, policy=POLICY, rng=_Pinned(0.0)
    )
    if attempt >= POLICY.max_attempts:
        assert decision == DeadLetter(RETRIES_EXHAUSTED, str(exc), attempt)
        return
    ceiling = min(POLICY.cap_s, POLICY.base_s * 2 ** (attempt - 1))
    floor = 40.0 if type(exc) in TOLD else 0.0
    assert decision == Retry(max(ceiling, floor), headers={}, attempt=attempt)


@pytest.mark.parametrize("make", list(TOLD.values()))
def test_a_told_wait_is_capped_by_the_backoff_cap(make: Callable[[], EdgematchError]) -> None:
    """A Retry-After longer than the backoff cap waits the cap (the visibility timeout
    covers the cap, not whatever an answer asks for)."""
    exc = make()
    policy = Policy(max_attempts=8, base_s=1.0, cap_s=10.0)
    decision = decide(exc, retries=0, headers={}, now=NOW, policy=policy, rng=_Pinned(0.0))
    assert decision == Retry(10.0, headers={}, attempt=1)


@pytest.mark.parametrize("make", list(OUTAGES.values()))
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_outages_retry_free_whatever_the_attempt(
    make: Callable[[], EdgematchError], attempt: int
) -> None:
    """Redis or the broker away: a free retry (no attempt spent, counted in the headers),
    waiting at most OUTAGE_RETRY_CAP_S, however many retries came before."""
    decision = decide(make(), retries=attempt - 1, headers={}, now=NOW, policy=POLICY)
    assert isinstance(decision, Retry)
    assert decision.outage and decision.attempt == 0
    assert 0.0 <= decision.delay_s <= OUTAGE_RETRY_CAP_S
    assert decision.headers == {OUTAGE_RETRIES: 1, OUTAGE_SINCE: NOW}


@pytest.mark.parametrize("make", list(OUTAGES.values()))
@pytest.mark.parametrize("own", range(1, POLICY.max_attempts + 2))
def test_an_outage_past_its_budget_counts_like_any_transient_failure(
    make: Callable[[], EdgematchError], own: int
) -> None:
    """After OUTAGE_BUDGET_S of outage failures, a retry spends an attempt again; the
    attempt is counted without the free retries."""
    free = 5
    headers = {OUTAGE_RETRIES: free, OUTAGE_SINCE: NOW - OUTAGE_BUDGET_S}
    exc = make()
    decision = decide(
        exc, retries=own - 1 + free, headers=headers, now=NOW, policy=POLICY, rng=_Pinned(0.0)
    )
    if own >= POLICY.max_attempts:
        assert decision == DeadLetter(RETRIES_EXHAUSTED, str(exc), own)
    else:
        # The streak is over: the next outage starts its own budget.
        expected = Retry(2.0 ** (own - 1), headers={OUTAGE_RETRIES: free}, attempt=own)
        assert decision == expected


@pytest.mark.parametrize("make", list(TRANSIENT.values()))
def test_free_retries_are_not_counted_against_a_later_failure(
    make: Callable[[], EdgematchError],
) -> None:
    """Three free retries, then the task's own failure: attempt 1, not 4; the free count
    stays in the headers and the outage streak ends."""
    headers = {OUTAGE_RETRIES: 3, OUTAGE_SINCE: NOW - 10}
    decision = decide(make(), retries=3, headers=headers, now=NOW, policy=POLICY)
    assert isinstance(decision, Retry)
    assert (decision.attempt, decision.headers) == (1, {OUTAGE_RETRIES: 3})


@pytest.mark.parametrize("make", list(FINAL.values()))
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_permanent_and_configuration_errors_are_dead_letters_at_once(
    make: Callable[[], EdgematchError], attempt: int
) -> None:
    """No retry for what cannot succeed: the dead letter carries the error's reason."""
    exc = make()
    decision = decide(exc, retries=attempt - 1, headers={}, now=NOW, policy=POLICY)
    assert decision == DeadLetter(exc.reason, str(exc), attempt)


@pytest.mark.parametrize("make", BUGS)
@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_a_bug_is_an_unexpected_dead_letter(make: Callable[[], Exception], attempt: int) -> None:
    """An exception outside the tree is a bug: dead-lettered (never retried, never lost),
    marked for its traceback to be logged."""
    exc = make()
    decision = decide(exc, retries=attempt - 1, headers={}, now=NOW, policy=POLICY)
    message = f"{type(exc).__name__}: {exc}"
    assert decision == DeadLetter(UNEXPECTED, message, 1, unexpected=True)


@pytest.mark.parametrize("headers", [None, {}, {OUTAGE_RETRIES: "x", OUTAGE_SINCE: True}])
def test_missing_or_foreign_headers_count_as_none(headers: dict[str, Any] | None) -> None:
    """Headers that are absent or not ours decide as if no outage came before."""
    decision = decide(
        TransportError("t"), retries=0, headers=headers, now=NOW, policy=POLICY, rng=_Pinned(0)
    )
    assert isinstance(decision, Retry)
    assert (decision.attempt, decision.delay_s) == (1, 1.0)


@pytest.mark.parametrize(
    ("delivery", "limit", "poison"),
    [(1, 3, False), (3, 3, False), (4, 3, True), (9, 3, True), (2, 1, True), (1, 1, False)],
)
def test_admit_turns_a_task_begun_too_often_into_poison(
    delivery: int, limit: int, poison: bool
) -> None:
    """A delivery beyond max_deliveries is a poison dead letter naming the starts that
    died; one within runs."""
    verdict = admit(delivery, max_deliveries=limit)
    if not poison:
        assert verdict is None
        return
    assert verdict is not None
    assert (verdict.reason, verdict.attempts) == ("poison", delivery - 1)
    assert f"began {delivery - 1} times" in verdict.message


def test_a_refused_dead_letter_retries_after_the_cap() -> None:
    """A dead letter the store refused is retried after the backoff cap, not acknowledged."""
    assert store_refused(POLICY) == Retry(POLICY.cap_s)


@pytest.mark.parametrize(
    "make", [*TRANSIENT.values(), *TOLD.values(), *OUTAGES.values(), *FINAL.values(), *BUGS]
)
def test_a_failed_batch_element_goes_to_its_own_task(make: Callable[[], Exception]) -> None:
    """A batch element that failed transiently goes after a first backoff (its own task
    then counts attempts from 2); anything else goes at once."""
    exc = make()
    later = hand_over(exc, policy=POLICY, rng=_Pinned(0.0))
    if isinstance(exc, TransientError):
        assert later == Retry(POLICY.base_s, attempt=1)
    else:
        assert later is None
