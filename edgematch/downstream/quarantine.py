"""Quarantine: make a matched content version unreachable, preserved and verified.

Modes (``EDGEMATCH_QUARANTINE_MODE``):

* ``move`` (default with ``EDGEMATCH_QUARANTINE_BUCKET``): server-side copy of the scanned
  version to ``<quarantine-bucket>/<source-bucket>/<content-key>`` with its metadata, its
  tags (plus ``<result-tag>=quarantined``) and the match ids and tracking id; a legal hold
  and a retention period of ``EDGEMATCH_EVIDENCE_RETENTION_DAYS`` when the quarantine
  bucket has Object Lock; the copy is read back and **verified** (size, ETag or SHA-256,
  lock state) before exactly the scanned version of the original is deleted.
* ``tag`` (default otherwise): ``<result-tag>=quarantined`` merged into the scanned
  version's tags, read back; the operator's bucket policy denies reading it.
* ``off``: shadow mode — the decision is returned and recorded, nothing is touched.

When the hash file did not pin its content version and the evidence leaves several
versions that may have been the scanned one (pipeline/attribution.py), each of them is
quarantined the same way and verified; the evidence of the first names the others and why.

Idempotent on the content version: a finished quarantine is remembered in Redis (with a
TTL), one worker at a time works on a version (a Redis lock), and without the memory the
S3 state itself tells a repeat apart (the original gone and a verified copy in place).

Never fails open. Raised, for the task's failure policy:

* :class:`CopyUnverified` (a ``TransientError``): the copy does not match; the original
  stays and the task retries. Any ``TransientError`` from S3 or Redis likewise.
* :class:`QuarantineUnavailable` (the quarantine bucket is missing), other
  ``PermanentError`` s and ``ConfigurationError`` (access denied, more than 10 tags …):
  the task dead-letters it; the content keeps its ``match`` tag.

An original that is gone is not an error: with a verified copy it was moved by an
earlier attempt, without one it is recorded as ``content_missing``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace

import redis

from edgematch.config.settings import Settings
from edgematch.downstream.copies import META_SOURCE, QUARANTINED, CopyUnverified, quarantine_key
from edgematch.downstream.custody import (
    CONTENT_MISSING,
    FAILED,
    MOVED,
    SHADOW,
    TAGGED,
    ContentVersion,
    Evidence,
)
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.mover import MOVE, Mover, QuarantineUnavailable, content_missing
from edgematch.errors import ObjectMissing
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.results import Result
from edgematch.pipeline.tagging import VerdictTags
from edgematch.recovery.locks import exclusive

# The evidence values (custody.py), the copy's rules (copies.py) and the move mode
# (mover.py) have modules of their own; what callers name through the quarantine is
# re-exported here.
__all__ = [
    "CONTENT_MISSING",
    "FAILED",
    "META_SOURCE",
    "MOVE",
    "MOVED",
    "OFF",
    "QUARANTINED",
    "SHADOW",
    "TAG",
    "TAGGED",
    "ContentVersion",
    "CopyUnverified",
    "Evidence",
    "Quarantine",
    "QuarantineUnavailable",
    "quarantine_key",
]

log = get_logger(__name__)

TAG, OFF = "tag", "off"


class Quarantine:
    """Carries out the configured mode for one matched result at a time."""

    def __init__(
        self,
        *,
        settings: Settings,
        evidence: EvidenceStore,
        objects: ObjectStore,
        client: redis.Redis,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._objects = objects
        self._r = client
        self._k = Keys(settings.namespace)
        self._mover = Mover(settings=settings, evidence=evidence, objects=objects, clock=clock)
        self._tags = VerdictTags(
            objects,
            client,
            settings.namespace,
            tag_key=settings.result_tag,
            lock_ttl_s=settings.lock_ttl_s,
        )

    @property
    def mode(self) -> str:
        return self._s.effective_quarantine_mode

    def run(self, result: Result) -> Evidence:
        """Quarantine the content version ``result`` scanned, and every other version it
        may have scanned (an ambiguous attribution). Idempotent; see the module doc."""
        content = ContentVersion.of(result)
        others = ContentVersion.candidates_of(result)
        evidence = self._one(content, result)
        if others or result.content_ambiguity:
            # Fail closed: any of them may be the matched bytes, so none stays reachable.
            # A failure on any raises, and the task retries (the ones done are remembered).
            done = [self._one(c, result) for c in others]
            evidence = replace(
                evidence,
                ambiguity=result.content_ambiguity,
                candidates=[e.to_dict() for e in done],
            )
            log.warning(
                "quarantine_ambiguous",
                bucket=content.bucket,
                key=content.key,
                versions=[content.version_id, *(c.version_id for c in others)],
                states=[evidence.state, *(e.state for e in done)],
                why=result.content_ambiguity,
            )
        return evidence

    def _one(self, content: ContentVersion, result: Result) -> Evidence:
        """Quarantine one content version, under its lock, unless it is remembered done."""
        if self.mode == OFF:
            return self._shadow(content)
        with exclusive(
            self._r,
            self._k.quarantine_lock(content.identity),
            ttl_s=self._s.lock_ttl_s,
            what=f"quarantine of {content.uri}",
        ):
            # Only a move with a version id is answered from memory. An ETag names bytes,
            # not a write: identical bytes uploaded again must be moved again. And a tag
            # is cheap to check, and a redelivered result sets it back to `match`.
            remembered = self.mode == MOVE and content.version_id
            done = self._recall(content) if remembered else None
            if done is not None:
                log.info("quarantine_repeat", state=done.state, key=content.key)
                return done
            evidence = (
                self._mover.move(content, result) if self.mode == MOVE else self._tag(content)
            )
            self._remember(content, evidence)
        log.info(
            "quarantine_done",
            state=evidence.state,
            mode=evidence.mode,
            bucket=content.bucket,
            key=content.key,
            version_id=content.version_id,
            evidence=f"s3://{evidence.bucket}/{evidence.key}" if evidence.bucket else None,
            legal_hold=evidence.legal_hold,
        )
        return evidence

    # -- modes ----------------------------------------------------------------------------
    def _shadow(self, content: ContentVersion) -> Evidence:
        if self._s.quarantine_bucket:
            would = f"would move to s3://{self._s.quarantine_bucket}/{quarantine_key(content)}"
        else:
            would = f"would tag {self._s.result_tag}={QUARANTINED}"
        log.info("quarantine_shadow", bucket=content.bucket, key=content.key, decision=would)
        return Evidence.naming(
            content, state=SHADOW, mode=OFF, detail=f"shadow mode: {would}; nothing was touched"
        )

    def _tag(self, content: ContentVersion) -> Evidence:
        # Under the content's tag lock: a result being recorded at the same moment must
        # not write its verdict over ours (tagging.py).
        with self._tags.lock(content.bucket, content.key):
            try:
                source = self._mover.head_scanned(content)
            except ObjectMissing as exc:
                return content_missing(content, self.mode, str(exc))
            written = self._tags.write(
                content.bucket, content.key, QUARANTINED, version_id=source.version_id
            )
            if written is None:
                return content_missing(
                    content, self.mode, f"{content.uri} was deleted while being tagged"
                )
            # Read back: the bucket policy only protects what really carries the tag.
            now = self._objects.get_tags(content.bucket, content.key, version_id=source.version_id)
        if now.get(self._s.result_tag) != QUARANTINED:
            raise CopyUnverified(f"{content.uri} does not carry {self._s.result_tag}={QUARANTINED}")
        return Evidence.naming(
            source,
            state=TAGGED,
            mode=TAG,
            detail=f"tagged {self._s.result_tag}={QUARANTINED}; the bucket policy denies reads",
        )

    # -- memory ---------------------------------------------------------------------------
    def _recall(self, content: ContentVersion) -> Evidence | None:
        raw = self._r.get(self._k.quarantine_done(content.identity))
        return Evidence.from_dict(json.loads(raw)) if raw else None

    def _remember(self, content: ContentVersion, evidence: Evidence) -> None:
        try:
            self._r.set(
                self._k.quarantine_done(content.identity),
                json.dumps(evidence.to_dict(), separators=(",", ":")),
                ex=self._s.idempotency_ttl_s,
            )
        except RedisUnavailable as exc:
            # Not a translation: the S3 state already shows the work is done, so this is
            # only logged; a repeat verifies and carries on.
            log.warning("quarantine_unremembered", error=type(exc).__name__)
