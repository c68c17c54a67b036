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

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from edgematch.config.settings import Settings
from edgematch.downstream.copies import QUARANTINED, CopyUnverified, copy_problems
from edgematch.downstream.custody import CONTENT_MISSING, FAILED, MOVED, SHADOW, TAGGED, Evidence
from edgematch.downstream.evidence import EvidenceStore, VersionInfo
from edgematch.downstream.protection import EvidenceKept, Protection
from edgematch.downstream.reports import ReportStore
from edgematch.downstream.restored import (
    META_RELEASED,
    discarded,
    is_released,
    refusal,
    released,
    restored_metadata,
    restored_tags,
)
from edgematch.errors import ObjectMissing, PermanentError
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.s3text import decode_metadata_value
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.tagging import TAG_LOCK_WAIT_S, VerdictTags
from edgematch.pipeline.verdicts import RELEASED as RELEASED_TAG
from edgematch.recovery.locks import exclusive

__all__ = ["EvidenceKept", "NotReleasable", "Outcome", "Release", "UnknownReport"]

log = get_logger(__name__)

RESTORED, RETAGGED, NOTHING = "restored", "retagged", CONTENT_MISSING


class UnknownReport(PermanentError):
    """No report has this id."""

    reason = "unknown_report"


class NotReleasable(PermanentError):
    """The release is refused as asked; the message says why and what to do."""

    reason = "not_releasable"


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
        self._tag_key = settings.result_tag
        self._tags = VerdictTags(
            objects,
            client,
            settings.namespace,
            tag_key=settings.result_tag,
            lock_ttl_s=settings.lock_ttl_s,
        )

    def run(self, report_id: str, *, operator: str, discard_evidence: bool) -> Outcome:
        """Release the content of report ``report_id`` (see the module doc). Idempotent."""
        key, doc = self._load(report_id)
        why = refusal(doc)
        if why is not None:
            raise NotReleasable(why)
        already = is_released(doc)
        if not already:
            doc = self._mark(report_id, key, self._put_back(doc), operator)
        elif doc["release"].get("state") == RETAGGED:
            # A match of that same version since (a redelivered result) blocked it again:
            # released again is what a person running this again asks for.
            self._retag(Evidence.from_dict({**doc["release"], "mode": "", "at": 0.0}))
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

    # -- putting back ---------------------------------------------------------------------
    def _put_back(self, doc: dict[str, Any]) -> dict[str, Any]:
        evidence = Evidence.from_dict(doc.get("evidence") or {"state": "", "mode": ""})
        if evidence.state == MOVED:
            info = self._restore_copy(doc, evidence)
            return _release(RESTORED, info, "restored from the evidence copy, verified")
        if evidence.state in (TAGGED, SHADOW, FAILED):
            found = self._retag(evidence)
            tagged = f"tagged {self._tag_key}={RELEASED_TAG}"
            if found is not None and evidence.state == SHADOW:
                return _release(RETAGGED, found, f"quarantine was off, nothing was moved; {tagged}")
            if found is not None:
                return _release(RETAGGED, found, tagged)
        return {"state": NOTHING, "detail": "the scanned content is gone: nothing to put back"}

    def _restore_copy(self, doc: dict[str, Any], evidence: Evidence) -> VersionInfo:
        bucket, key = doc["content"]["bucket"], doc["content"]["key"]
        assert evidence.bucket and evidence.key  # a moved evidence names its copy
        try:
            source = self._store.head(
                evidence.bucket,
                evidence.key,
                version_id=evidence.version_id,
                if_match=None if evidence.version_id else evidence.etag,
            )
        except ObjectMissing as exc:
            raise NotReleasable(f"the evidence copy is gone, nothing to put back: {exc}") from exc
        restored = self._find_restored(
            bucket, key, report_id=doc["report_id"], copied=source.last_modified
        )
        if restored is None:
            tags = self._objects.get_tags(source.bucket, source.key, version_id=source.version_id)
            version = self._store.copy(
                source,
                bucket=bucket,
                key=key,
                metadata=restored_metadata(source.metadata, doc["report_id"]),
                tags=restored_tags(tags, self._tag_key, QUARANTINED),
            )
            restored = self._store.head(bucket, key, version_id=version)
            log.info("release_copied", report_id=doc["report_id"], version_id=version)
        self._verify(source, restored)
        self._tag_released(restored)
        return restored

    def _find_restored(
        self, bucket: str, key: str, *, report_id: str, copied: dt.datetime | None
    ) -> VersionInfo | None:
        """The version an earlier run put back for ``report_id``: the key's current one,
        its marker naming the report. NotReleasable when the current one is an upload
        written after the evidence copy (``copied``): putting the old one back would hide
        it."""
        try:
            current = self._store.head(bucket, key)
        except ObjectMissing:
            return None
        marker = current.metadata.get(META_RELEASED)
        if marker is not None and decode_metadata_value(marker) == report_id:
            return current
        written = current.last_modified
        # The copy was written after the original, so anything newer came since.
        if written is not None and copied is not None and written > copied:
            raise NotReleasable(
                f"{current.uri} has a newer upload ({written.isoformat()}) than the "
                "quarantined version; putting that one back would hide it. Copy the evidence "
                "back by hand if that is what is wanted."
            )
        return None

    def _verify(self, source: VersionInfo, restored: VersionInfo) -> None:
        """The restored bytes are the evidence copy's; else the restored version goes."""
        same_digest = None
        if not (source.etag and restored.etag == source.etag):
            same_digest = self._store.sha256(
                source.bucket, source.key, version_id=source.version_id
            ) == self._store.sha256(restored.bucket, restored.key, version_id=restored.version_id)
        problems = copy_problems(
            source, restored, expect_hold=False, retention_days=0, same_digest=same_digest
        )
        if problems:
            self._store.delete(
                restored.bucket,
                restored.key,
                version_id=restored.version_id,
                if_match=None if restored.version_id else restored.etag,
            )
            raise CopyUnverified(
                f"the version put back at {restored.uri} is not verified ({'; '.join(problems)}); "
                "it was deleted again: run the release again"
            )

    def _tag_released(self, info: VersionInfo) -> None:
        """``released`` on exactly this version, whatever verdict it holds; read back. A
        person is waiting: another writer's lock is waited out, a killed one's included."""
        with self._tags.lock(info.bucket, info.key, wait_s=self._s.lock_ttl_s):
            self._tags.write(
                info.bucket, info.key, RELEASED_TAG, version_id=info.version_id, force=True
            )
            now = self._objects.get_tags(info.bucket, info.key, version_id=info.version_id)
        if now.get(self._tag_key) != RELEASED_TAG:
            raise CopyUnverified(f"{info.uri} does not carry {self._tag_key}={RELEASED_TAG}")

    def _retag(self, evidence: Evidence) -> VersionInfo | None:
        """Tag mode, shadow, a failed quarantine: the scanned version, tagged released."""
        if not evidence.bucket or not evidence.key:
            return None
        try:
            info = self._store.head(
                evidence.bucket,
                evidence.key,
                version_id=evidence.version_id,
                if_match=None if evidence.version_id else evidence.etag,
            )
        except ObjectMissing:
            return None
        self._tag_released(info)
        return info

    # -- the evidence copy ----------------------------------------------------------------
    def _evidence(self, key: str, doc: dict[str, Any], *, operator: str, discard: bool) -> str:
        evidence = Evidence.from_dict(doc.get("evidence") or {"state": "", "mode": ""})
        if evidence.state != MOVED:
            return "no evidence copy (the content was not moved)"
        where = f"s3://{evidence.bucket}/{evidence.key}"
        if (doc.get("release") or {}).get("evidence_discarded_at"):
            return f"the evidence copy {where} was discarded"
        if not discard:
            return f"the evidence copy stays under its legal hold at {where}"
        assert evidence.bucket and evidence.key
        try:
            info = self._store.head(evidence.bucket, evidence.key, version_id=evidence.version_id)
        except ObjectMissing:
            info = None  # an earlier run deleted it
        if info is not None:
            self._protection.discard(info)

        def note(current: dict[str, Any]) -> dict[str, Any] | None:
            if (current.get("release") or {}).get("evidence_discarded_at"):
                return None
            return discarded(current, operator=operator, now=self._clock())

        self._update(doc["report_id"], key, note)
        log.info("release_evidence_discarded", report_id=doc["report_id"])
        return f"the evidence copy {where} was discarded"


def _release(state: str, info: VersionInfo, detail: str) -> dict[str, Any]:
    return {
        "state": state,
        "bucket": info.bucket,
        "key": info.key,
        "version_id": info.version_id,
        "etag": info.etag,
        "size": info.size,
        "detail": detail,
    }
