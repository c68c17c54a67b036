"""Replay of dead letters: the original task again, with its original arguments.

What each entry replays as (:func:`plan`, pure):

* an ingest or a record_result task → the same task with its kwargs, on lane ``replay``
  for ingest, plus ``replayed_from=<entry id>``;
* an item the matcher gave up on (``item:<id>``) → an ingest of its hash object, pinned
  to the version that was read, so the object is fetched and scanned again;
* any other task that takes ``replayed_from`` (quarantine, report …) → itself, with its
  arguments;
* a malformed SQS message → nothing: its body was never kept whole, and replaying it would
  fail the same way. Fix the producer, then purge.

An object version that was *accepted* when it failed (an item the API refused or that ran
out of attempts, an ingest refused for size) is remembered by ingest's idempotency key;
a fresh replay forgets that key first (both the version id and the ETag spelling), or the
ingest would be skipped as a duplicate. Replaying an entry whose replay is still under way
forgets nothing: the second ingest is then a duplicate, so nothing is scanned twice.

The entry is removed by the replayed task when it completes (recovery/guard.py calls
``DeadLetters.resolve``); if it fails again, the same entry records the new failure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from edgematch.names import (
    ACCEPTED_PREFIXES,
    DEAD_LETTER_INTAKE,
    DEAD_LETTER_MATCH,
    DEAD_LETTER_WEBHOOK,
    TASK_INGEST,
)
from edgematch.pipeline.backpressure import Gate
from edgematch.pipeline.events import ObjectCreated
from edgematch.recovery.deadletters import DeadLetter, DeadLetters

INGEST = TASK_INGEST
LANE = "replay"


class Advancing(Protocol):
    """Told of each entry done (``edgematch.ops.progress.Progress`` on the command line)."""

    def advance(self, by: int = 1, *, note: str | None = None) -> None: ...


class NotReplayable(Exception):
    """This entry cannot be replayed; the message says why and what to do instead."""


@dataclass(frozen=True)
class ReplayPlan:
    """The task to enqueue, its kwargs (without ``replayed_from``), identities to forget."""

    task: str
    kwargs: Mapping[str, Any]
    forget: tuple[str, ...] = ()


def identities(bucket: str, key: str, version_id: str | None, etag: str | None) -> tuple[str, ...]:
    """Every idempotency identity ingest may have recorded for this object version. Pure.

    Ingest remembers the version as the event named it and as it was read: an event may
    have named it by ETag alone (MinIO, moto, an unversioned bucket) and the read by its
    version id, so both spellings are returned.
    """
    base = ObjectCreated(
        bucket=bucket,
        key=key,
        version_id=version_id,
        etag=etag,
        size=None,
        event_time=None,
        event_name="ObjectCreated:Replay",
        sequencer=None,
        source=LANE,
    )
    found = {base.identity}
    if version_id and etag:
        found.add(replace(base, version_id=None).identity)
    return tuple(sorted(found))


def plan(entry: DeadLetter) -> ReplayPlan:
    """What replaying ``entry`` enqueues. Pure. Raises NotReplayable."""
    corr = {"correlation_id": entry.correlation_id or uuid.uuid4().hex}
    accepted = entry.id.startswith(ACCEPTED_PREFIXES)
    args = dict(entry.args)
    if entry.task in (DEAD_LETTER_INTAKE, DEAD_LETTER_WEBHOOK):
        where = "SQS message" if entry.task == DEAD_LETTER_INTAKE else "webhook body"
        raise NotReplayable(
            f"a malformed {where}: its body was not kept whole and would fail again; "
            "fix the producer, then purge the entry"
        )
    if entry.task == DEAD_LETTER_MATCH:
        event = _object_event(args, entry)
        return ReplayPlan(INGEST, {"event": event, **corr, "lane": LANE}, _forget(event))
    if entry.task == INGEST:
        # guarded stores {"event": …, "lane": …}; ingest._refuse stores the event itself.
        event = args.get("event", args)
        if not isinstance(event, Mapping) or not event.get("bucket") or not event.get("key"):
            raise NotReplayable("an ingest without the bucket and key of its object")
        forget = _forget(event) if accepted else ()
        return ReplayPlan(INGEST, {"event": dict(event), **corr, "lane": LANE}, forget)
    if not args:
        raise NotReplayable(f"no arguments were kept for {entry.task}")
    return ReplayPlan(entry.task, {**args, **corr})


def _object_event(args: Mapping[str, Any], entry: DeadLetter) -> dict[str, Any]:
    bucket, key = args.get("bucket") or entry.bucket, args.get("key") or entry.key
    if not bucket or not key:
        raise NotReplayable("an item without the bucket and key of its hash object")
    return {
        "bucket": bucket,
        "key": key,
        "version_id": args.get("version_id"),
        "etag": args.get("etag"),
        "size": None,
        "event_time": None,
        "event_name": "ObjectCreated:Replay",
        "sequencer": None,
        "source": LANE,
    }


def _forget(event: Mapping[str, Any]) -> tuple[str, ...]:
    return identities(event["bucket"], event["key"], event.get("version_id"), event.get("etag"))


Enqueue = Callable[[str, dict[str, Any], str], None]


@dataclass
class ReplayReport:
    """What a replay run did. ``again``: entries whose earlier replay was still under way."""

    replayed: list[str] = field(default_factory=list)
    again: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    error: str | None = None


class Replayer:
    """Replays entries one by one, paced and under backpressure.

    ``enqueue(task name, kwargs, task id)`` sends a task; ``forget(identity)`` drops an
    idempotency key; ``accepts(task name)`` says whether the task takes ``replayed_from``.
    """

    def __init__(
        self,
        store: DeadLetters,
        *,
        enqueue: Enqueue,
        forget: Callable[[str], None],
        accepts: Callable[[str], bool],
        gate: Gate | None = None,
        rate_per_s: float | None = None,
        progress: Advancing | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._enqueue = enqueue
        self._forget = forget
        self._accepts = accepts
        self._gate = gate
        self._interval_s = 1.0 / rate_per_s if rate_per_s else 0.0
        self._progress = progress
        self._sleep = sleep
        self._clock = clock

    def check(self, entry: DeadLetter) -> ReplayPlan:
        """The plan for ``entry``, or NotReplayable (also for a task that cannot resolve it)."""
        planned = plan(entry)
        if not self._accepts(planned.task):
            raise NotReplayable(f"task {planned.task} does not take replayed_from")
        return planned

    def replay(self, entries: Iterable[DeadLetter]) -> ReplayReport:
        """Replay each entry; stops at the first task that cannot be enqueued (``error``)."""
        report = ReplayReport()
        next_at = self._clock()
        for entry in entries:
            try:
                planned = self.check(entry)
            except NotReplayable as exc:
                report.skipped[entry.id] = str(exc)
                self._advance()
                continue
            if self._gate is not None:
                self._gate.wait()
            next_at = self._pace(next_at)
            task_id = uuid.uuid4().hex
            fresh = self.store.mark_replaying(entry.id, task_id)
            if fresh is None:  # resolved or purged since it was selected
                report.missing.append(entry.id)
                self._advance()
                continue
            if fresh:
                for identity in planned.forget:
                    self._forget(identity)
            try:
                self._enqueue(planned.task, {**planned.kwargs, "replayed_from": entry.id}, task_id)
            except Exception as exc:  # noqa: BLE001 - any broker failure ends the run, reported
                if fresh:
                    self.store.unmark(entry.id)
                report.error = f"{entry.id}: could not enqueue {planned.task}: {exc}"[:300]
                break
            (report.replayed if fresh else report.again).append(entry.id)
            self._advance()
        return report

    def _pace(self, next_at: float) -> float:
        if self._interval_s <= 0:
            return next_at
        delay = next_at - self._clock()
        if delay > 0:
            self._sleep(delay)
        return max(next_at, self._clock() - self._interval_s) + self._interval_s

    def _advance(self) -> None:
        if self._progress is not None:
            self._progress.advance()
