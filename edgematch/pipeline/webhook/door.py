"""What one notification body becomes: accepted work, a dead letter, or a refusal.

Framework-free: ``app.py`` hands over a body it has already authenticated and read within
the size limit, and sends back the :class:`Reply`. The body is parsed exactly as intake
parses an SQS message (``events.parse_message`` + ``events.select``: the same shapes, the
same skips, the same bucket allow-list and key suffix), then:

* nothing readable at all → a dead letter (deduplicated by the body's digest, so a sender
  that sends it again does not add another) and 400: the body can never succeed, a retry
  loop would only repeat it;
* unreadable records beside good ones → one dead letter for them, and the good ones go on;
* records that announce nothing to scan (other events, other suffixes, other buckets) →
  200, as intake deletes such a message;
* objects → the enqueuer; 200 once their ingest tasks are published, else 503.

When the dead letter itself cannot be written (Redis away) the answer is 503: nothing is
acknowledged that was not kept. Logs carry the body's digest, never the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from edgematch.config.settings import Settings
from edgematch.errors import BadInput, TransientError
from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.names import DEAD_LETTER_WEBHOOK, DEAD_LETTER_WEBHOOK_PREFIX, WEBHOOK_QUEUE
from edgematch.pipeline.events import ParsedMessage, parse_message, select
from edgematch.pipeline.webhook.enqueuer import Enqueuer, Outcome
from edgematch.recovery.deadletters import DeadLetters

log = get_logger(__name__)

#: Characters of a refused body kept in its dead letter, for on-call to recognise it.
EXCERPT_CHARS = 512


@dataclass(frozen=True)
class Reply:
    status: int
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def retry_later(self) -> bool:
        """Refused for now (503): the answer carries ``Retry-After``."""
        return self.status == 503


def refused(reason: str) -> Reply:
    return Reply(503, {"error": "not accepted now, send it again later", "reason": reason})


class Door:
    """Turns bodies into ingest work through ``enqueuer``; see the module docstring."""

    def __init__(self, settings: Settings, enqueuer: Enqueuer, dead_letters: DeadLetters) -> None:
        self.settings = settings
        self.enqueuer = enqueuer
        self.dead_letters = dead_letters

    async def handle(self, body: bytes, *, remote: str = "-") -> Reply:
        """The reply to ``body``."""
        s = self.settings
        digest = hashlib.sha256(body).hexdigest()
        try:
            parsed = select(
                parse_message(body, max_bytes=s.webhook_max_body_bytes),
                suffix=s.hash_suffix,
                allowed_buckets=s.allowed_buckets,
            )
        except BadInput as exc:
            metrics.EVENTS_SKIPPED.labels("malformed").inc()
            if not await self._set_aside(digest, body, str(exc), remote):
                return refused("unavailable")
            log.warning("event_malformed", request=digest[:16], reason=str(exc), remote=remote)
            return Reply(400, {"error": "not a bucket notification", "detail": str(exc)})
        if not await self._skip(parsed, digest, body, remote):
            return refused("unavailable")
        skipped = len(parsed.skipped)
        if not parsed.objects:
            return Reply(200, {"accepted": 0, "skipped": skipped})
        work = [(obj, uuid.uuid4().hex) for obj in parsed.objects]
        future = self.enqueuer.submit(work)
        try:
            outcome = await asyncio.wait_for(
                asyncio.wrap_future(future), s.webhook_enqueue_timeout_s
            )
        except TimeoutError:
            outcome = Outcome(False, "timeout")
        if not outcome.accepted:
            return refused(outcome.reason)
        return Reply(200, {"accepted": len(work), "skipped": skipped})

    async def _skip(self, parsed: ParsedMessage, digest: str, body: bytes, remote: str) -> bool:
        """Count and log what is not scanned; dead-letter bad records. False: not kept."""
        bad: list[str] = []
        for skipped in parsed.skipped:
            metrics.EVENTS_SKIPPED.labels(skipped.reason).inc()
            if skipped.reason == "bad_record":
                bad.append(skipped.detail)
                continue
            # As in intake: a bucket outside the allow-list is a misrouted or forged
            # notification, and someone should see it; the rest is routine.
            level = log.warning if skipped.reason == "bucket_not_allowed" else log.debug
            level(
                "event_skipped", request=digest[:16], reason=skipped.reason, detail=skipped.detail
            )
        if not bad:
            return True
        return await self._set_aside(digest, body, "; ".join(bad), remote)

    async def _set_aside(self, digest: str, body: bytes, reason: str, remote: str) -> bool:
        try:
            await asyncio.to_thread(
                self.dead_letters.add,
                task=DEAD_LETTER_WEBHOOK,
                queue=WEBHOOK_QUEUE,
                reason="malformed_event",
                message=reason,
                args={
                    "body_sha256": digest,
                    "body_excerpt": body[:EXCERPT_CHARS].decode("utf-8", "replace"),
                    "remote": remote,
                },
                dedupe_id=f"{DEAD_LETTER_WEBHOOK_PREFIX}{digest[:32]}",
            )
        except TransientError as exc:
            log.error("dead_letter_failed", request=digest[:16], error=type(exc).__name__)
            return False
        return True
