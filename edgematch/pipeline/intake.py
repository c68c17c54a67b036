"""Intake: long-poll SQS for object-created events and enqueue ingest work for each hash file.

The hash files of one receive (up to ``EDGEMATCH_INTAKE_BATCH`` messages) are enqueued
together: the enqueue function sends them as one ``ingest_many`` task, so a burst costs
one task per receive rather than one per file. A message is deleted only after the work
it yields is enqueued: a crash between the two redelivers the message, and ingest's
idempotency makes that harmless. A message
that cannot be read is recorded as a dead letter with its reason and deleted, so it never
blocks those behind it and never crashes the loop. When the pipeline's backlog (the
ingest queue plus the batch buffer) passes the high-water mark, intake stops receiving and
SQS holds the rest: memory stays bounded whatever the burst. While the backlog is under
half the mark it is weighed again only once what intake enqueued since may have used up
the room it saw, or after ``UNWEIGHED_RECEIVES`` receives (:class:`Room`).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from edgematch.errors import BadInput, EdgematchError
from edgematch.infra import health, metrics
from edgematch.infra.logs import get_logger
from edgematch.names import DEAD_LETTER_INTAKE, DEAD_LETTER_SQS_PREFIX, INTAKE_QUEUE
from edgematch.pipeline import backpressure, handoff
from edgematch.pipeline.events import ObjectCreated, parse_message, select
from edgematch.runtime import Runtime

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger(__name__)

#: Receives made at most without weighing the backlog again (see :class:`Room`).
UNWEIGHED_RECEIVES: Final = 4


class Room:
    """What this intake may still enqueue before it weighs the backlog again.

    The backlog is weighed (five Redis commands) before a receive unless the last weight
    found it at half the mark or under, fewer than ``UNWEIGHED_RECEIVES`` receives ago, and
    what intake enqueued since, weighed as the backlog weighs it (``INGEST_BATCH`` a task),
    has not used up the room it saw: the backlog is then below the mark as surely as a
    fresh weight would say (workers only drain it), so the mark is passed by one receive
    at most, as before.
    """

    def __init__(self, mark: int) -> None:
        self._mark = mark
        self._room = 0
        self._unread = 0

    def known(self) -> bool:
        """True when this receive may go without weighing the backlog."""
        if self._unread > 0 and self._room > 0:
            self._unread -= 1
            return True
        return False

    def weighed(self, backlog: int) -> None:
        self._room = self._mark - backlog
        self._unread = UNWEIGHED_RECEIVES if backlog <= self._mark // 2 else 0

    def spent(self, objects: int) -> None:
        """``objects`` hash files enqueued, in tasks of up to ``INGEST_BATCH``."""
        batch = backpressure.INGEST_BATCH
        self._room -= -(-objects // batch) * batch


#: Enqueues ingest work for ``(object, correlation id)`` pairs, all or nothing as far as
#: the caller can tell: an exception means the messages stay in SQS.
Enqueue = Callable[[Sequence[tuple[ObjectCreated, str]]], None]


@dataclass
class IntakeStats:
    messages: int = 0
    enqueued: int = 0
    skipped: int = 0
    malformed: int = 0
    paused_s: float = 0.0
    by_skip_reason: dict[str, int] = field(default_factory=dict)


class Intake:
    """The receive → parse → enqueue → delete loop. ``stop()`` ends it after the current batch."""

    def __init__(self, rt: Runtime, sqs: SQSClient, enqueue: Enqueue) -> None:
        self.rt = rt
        self.sqs = sqs
        self.enqueue = enqueue
        self.queue_url = rt.settings.require_sqs_queue_url()
        self.stats = IntakeStats()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def backlog(self) -> int:
        """Work competing with live uploads: the ingest queue plus the batch buffer.

        See pipeline/backpressure.py, shared with backfill and replay.
        """
        return backpressure.backlog(self.rt).of("live")

    def run(self, *, max_idle_polls: int | None = None) -> IntakeStats:
        """Loop until stopped (or after ``max_idle_polls`` empty polls, for tests)."""
        s = self.rt.settings
        idle = 0
        paused_since: float | None = None
        log.info("intake_started", queue_url=self.queue_url, high_water=s.intake_high_water)
        room = Room(s.intake_high_water)
        while not self._stop.is_set():
            health.beat("intake")
            if room.known():
                backlog = 0  # under the mark by what room says; not paused
            else:
                try:
                    backlog = self.backlog()
                except Exception as exc:  # noqa: BLE001 - Redis down must not end the loop
                    log.warning("backlog_unknown", error=type(exc).__name__)
                    self._stop.wait(1.0)
                    continue
                room.weighed(backlog)
            if backlog >= s.intake_high_water:
                if paused_since is None:
                    paused_since = time.monotonic()
                    log.warning("intake_paused", backlog=backlog, high_water=s.intake_high_water)
                self._stop.wait(0.5)
                continue
            if paused_since is not None:
                self.stats.paused_s += time.monotonic() - paused_since
                log.info("intake_resumed", backlog=backlog)
                paused_since = None
            before = self.stats.enqueued
            try:
                got = self.poll_once()
            except Exception as exc:  # noqa: BLE001 - SQS or broker trouble: back off, go on
                log.warning("intake_poll_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                self._stop.wait(2.0)
                continue
            finally:
                room.spent(self.stats.enqueued - before)
            idle = 0 if got else idle + 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                break
        log.info("intake_stopped", **self.stats.__dict__)
        return self.stats

    def poll_once(self) -> int:
        """Receive one batch of messages and handle them. Returns how many arrived."""
        s = self.rt.settings
        reply = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=s.intake_batch,
            WaitTimeSeconds=s.intake_wait_s,
        )
        messages = reply.get("Messages", [])
        done: list[dict[str, str]] = []
        work: list[tuple[ObjectCreated, str]] = []
        holding: list[dict[str, str]] = []  # deletable once ``work`` is enqueued
        for message in messages:
            self.stats.messages += 1
            metrics.EVENTS_RECEIVED.inc()
            entry = {"Id": message["MessageId"], "ReceiptHandle": message["ReceiptHandle"]}
            objects = self.parse(message)
            if objects:
                work.extend((obj, uuid.uuid4().hex) for obj in objects)
                holding.append(entry)
            else:
                done.append(entry)
        if work and self._enqueue(work):
            done.extend(holding)
        if done:
            self._delete(done)
        return len(messages)

    def _enqueue(self, work: list[tuple[ObjectCreated, str]]) -> bool:
        """Enqueue the ingest work of one receive. False (messages kept) when it failed."""
        try:
            self.enqueue(work)
        except Exception as exc:  # noqa: BLE001 - leave the messages for SQS to redeliver
            handoff.enqueue_failed(work, exc)
            return False
        self.stats.enqueued += len(work)
        handoff.enqueued(work)
        return True

    def parse(self, message: Any) -> list[ObjectCreated]:
        """The hash files one message names. A malformed message is set aside (dead letter)."""
        message_id = message.get("MessageId", "?")
        body = message.get("Body", "")
        try:
            parsed = select(
                parse_message(body),
                suffix=self.rt.settings.hash_suffix,
                allowed_buckets=self.rt.settings.allowed_buckets,
            )
        except BadInput as exc:
            self.stats.malformed += 1
            metrics.EVENTS_SKIPPED.labels("malformed").inc()
            self._set_aside(message_id, body, str(exc))
            return []
        for skipped in parsed.skipped:
            self.stats.skipped += 1
            metrics.EVENTS_SKIPPED.labels(skipped.reason).inc()
            self.stats.by_skip_reason[skipped.reason] = (
                self.stats.by_skip_reason.get(skipped.reason, 0) + 1
            )
            if skipped.reason == "bad_record":
                self._set_aside(message_id, body, skipped.detail)
                continue
            # Test events and other suffixes are routine; an event for a bucket outside the
            # allow-list is a misrouted notification or a forged one, and someone should see it.
            level = log.warning if skipped.reason == "bucket_not_allowed" else log.debug
            level(
                "event_skipped",
                message_id=message_id,
                reason=skipped.reason,
                detail=skipped.detail,
            )
        return list(parsed.objects)

    def _set_aside(self, message_id: str, body: str, reason: str) -> None:
        try:
            self.rt.dead_letters.add(
                task=DEAD_LETTER_INTAKE,
                queue=INTAKE_QUEUE,
                reason="malformed_event",
                message=reason,
                args={"message_id": message_id, "body_excerpt": body[:512]},
                dedupe_id=f"{DEAD_LETTER_SQS_PREFIX}{message_id}",
            )
        except EdgematchError as exc:
            log.error("dead_letter_failed", message_id=message_id, error=str(exc))
            raise
        log.warning("event_malformed", message_id=message_id, reason=reason)

    def _delete(self, entries: list[dict[str, str]]) -> None:
        reply = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
        for failure in reply.get("Failed", []):
            # Not fatal: the message comes back and ingest ignores the repeat.
            log.warning("sqs_delete_failed", message_id=failure.get("Id"), code=failure.get("Code"))
