"""Release: put back the content of a report a reviewer rejected, verified; mark it released.

What "back" means follows what quarantine did (the report's evidence says):

* ``moved``: the evidence copy is copied back to the content's bucket and key as a new
  version, byte-identical, with the original's metadata (restored.py), content headers
  and tags; written tagged ``quarantined``, verified as quarantine verifies its copy
  (size, ETag or SHA-256), only then tagged ``released`` under the content's tag lock, so
  the publication gate never serves an unverified version. One that does not verify is
  deleted again (run again). A key with a newer upload since the quarantine is refused.
* ``tagged``, ``shadow`` (quarantine off; the version is tagged ``match``, which the gate
  denies) and ``failed``: the scanned version itself is tagged ``released``, read back.
* ``content_missing``: nothing to put back; the report is marked all the same.

A report whose scanned version was ambiguous names other candidate versions, each
quarantined the same way: each is put back as above, oldest first, the report's own
version last, so the key's current version is the newest again (putback.py does the
putting back). The release record lists them under ``candidates``.

The report moves ``rejected → released``, its history naming the operator; a ``shadow``
report (never submitted) needs no review first and records the release in its history.
The evidence copy stays under its legal hold unless the operator asks to discard it and
may (protection.py).

Idempotent and resumable: each step finds what an earlier run did — the version put back
(the key's current version, its ``edgematch-released-report`` metadata naming the report),
a tag already ``released``, a report already released, evidence already gone — and does
only what is left. A run killed anywhere leaves nothing, a version put back still
``quarantined`` (unreadable), or a released version with the report not yet marked: the
same command finishes it. Two runs of one report at the same moment may each write an
(identical) version: run one at a time.

Raised: :class:`UnknownReport`, :class:`NotReleasable` (refused as asked: not rejected,
a newer upload, the evidence copy gone), ``EvidenceKept`` (released; the evidence could
not be discarded), ``CopyUnverified``/``LockHeld`` (run again), S3 and Redis errors as
edgematch errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from edgematch.config.settings import Settings
from edgematch.downstream.custody import MOVED
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.protection import EvidenceKept, Protection
from edgematch.downstream.putback import NotReleasable, PutBack, evidence_of
from edgematch.downstream.reports import ReportStore
from edgematch.downstream.restored import discarded, is_released, refusal, released
from edgematch.errors import ObjectMissing, PermanentError
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.tagging import TAG_LOCK_WAIT_S, VerdictTags
from edgematch.recovery.locks import exclusive

__all__ = ["EvidenceKept", "NotReleasable", "Outcome", "Release", "UnknownReport"]

log = get_logger(__name__)


class UnknownReport(PermanentError):
    """No report has this id."""

    reason = "unknown_report"


@dataclass(frozen=True)
class Outcome:
    """What a release did: ``release`` as the report records it, whether the report was
    released before this run, and what became of the evidence copy."""

    report_id: str
    release: dict[str, Any]
    already: bool
    evidence: str


class Release:
    """Releases one report at a time (``edgematch release``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        evidence: EvidenceStore,
        protection: Protection,
        objects: ObjectStore,
        client: redis.Redis,
        reports: ReportStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._store = evidence
        self._protection = protection
        self._objects = objects
        self._r = client
        self._reports = reports
        self._clock = clock
        tags = VerdictTags(
            objects,
            client,
            settings.namespace,
            tag_key=settings.result_tag,
            lock_ttl_s=settings.lock_ttl_s,
        )
        self._put_back = PutBack(settings=settings, evidence=evidence, objects=objects, tags=tags)

    def run(self, report_id: str, *, operator: str, discard_evidence: bool) -> Outcome:
        """Release the content of report ``report_id`` (see the module doc). Idempotent."""
        key, doc = self._load(report_id)
        why = refusal(doc)
        if why is not None:
            raise NotReleasable(why)
        already = is_released(doc)
        if not already:
            doc = self._mark(report_id, key, self._put_back.run(doc), operator)
        else:
            # A match of that same version since (a redelivered result) blocked it again:
            # released again is what a person running this again asks for.
            self._put_back.retag_again(doc["release"])
        evidence = self._evidence(key, doc, operator=operator, discard=discard_evidence)
        return Outcome(report_id, dict(doc["release"]), already, evidence)

    # -- the report -----------------------------------------------------------------------
    def _load(self, report_id: str) -> tuple[str, dict[str, Any]]:
        found = self._reports.locate(report_id)
        if found is None:
            raise UnknownReport(f"no report {report_id}")
        return found

    def _update(
        self, report_id: str, key: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Load, change and save the report under its lock; ``change`` None: as it is."""
        with exclusive(
            self._r,
            Keys(self._s.namespace).report_lock(report_id),
            ttl_s=self._s.lock_ttl_s,
            what=f"report {report_id}",
            wait_s=TAG_LOCK_WAIT_S,
        ):
            found = self._reports.load(report_id, key)
            if found is None:
                raise UnknownReport(f"no report {report_id}")
            key, doc = found
            updated = change(doc)
            if updated is None:
                return doc
            self._reports.save(key, updated)
            return updated

    def _mark(
        self, report_id: str, key: str, release: dict[str, Any], operator: str
    ) -> dict[str, Any]:
        def mark(doc: dict[str, Any]) -> dict[str, Any] | None:
            if is_released(doc):
                return None  # another run marked it meanwhile
            return released(doc, release, operator=operator, now=self._clock())

        doc = self._update(report_id, key, mark)
        log.info("release_marked", report_id=report_id, state=release["state"])
        return doc

    # -- the evidence copy ----------------------------------------------------------------
    def _evidence(self, key: str, doc: dict[str, Any], *, operator: str, discard: bool) -> str:
        copies = [e for e in evidence_of(doc) if e.state == MOVED and e.bucket and e.key]
        if not copies:
            return "no evidence copy (the content was not moved)"
        where = ", ".join(dict.fromkeys(f"s3://{e.bucket}/{e.key}" for e in copies))
        if len(copies) > 1:
            where = f"{where} ({len(copies)} versions)"
        if (doc.get("release") or {}).get("evidence_discarded_at"):
            return f"the evidence copy {where} was discarded"
        if not discard:
            return f"the evidence copy stays under its legal hold at {where}"
        for evidence in copies:
            assert evidence.bucket and evidence.key
            try:
                info = self._store.head(
                    evidence.bucket, evidence.key, version_id=evidence.version_id
                )
            except ObjectMissing:
                continue  # an earlier run deleted it
            self._protection.discard(info)

        def note(current: dict[str, Any]) -> dict[str, Any] | None:
            if (current.get("release") or {}).get("evidence_discarded_at"):
                return None
            return discarded(current, operator=operator, now=self._clock())

        self._update(doc["report_id"], key, note)
        log.info("release_evidence_discarded", report_id=doc["report_id"])
        return f"the evidence copy {where} was discarded"
