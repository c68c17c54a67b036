"""Putting back what a quarantine took, for a release (release.py): every version the
report's evidence names, in the order they were written.

A report names one scanned version, and when which version was scanned was ambiguous
(pipeline/attribution.py) the other candidates too, each quarantined the same way
(``evidence.candidates``). A release puts back each of them as quarantine left it:

* ``moved``: the evidence copy is copied back to the content's key as a new version,
  written tagged ``quarantined``, verified (size, ETag or SHA-256) and only then tagged
  ``released``. The oldest candidate goes back first and the report's own version last,
  so the key's current version is the newest, as it was. Each version put back carries a
  marker naming the report (and, for a candidate, its place in that order), by which a
  second run finds how far an earlier one got: only the key's current version is read.
  A newer upload than the evidence copy (not one of ours) refuses the release.
* ``tagged``, ``shadow``, ``failed``: the version itself is tagged ``released``, read back.
* ``content_missing``: nothing to put back.

Raises ``NotReleasable`` (a newer upload, the evidence copy gone), ``CopyUnverified``
(run again), and S3 errors as edgematch errors.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from edgematch.config.settings import Settings
from edgematch.downstream.copies import QUARANTINED, CopyUnverified
from edgematch.downstream.custody import CONTENT_MISSING, FAILED, MOVED, SHADOW, TAGGED, Evidence
from edgematch.downstream.evidence import EvidenceStore, VersionInfo
from edgematch.downstream.mover import checked_copy_problems, delete_version, head_version
from edgematch.downstream.restored import META_RELEASED, restored_metadata, restored_tags
from edgematch.errors import ObjectMissing, PermanentError
from edgematch.infra.logs import get_logger
from edgematch.infra.s3text import decode_metadata_value
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.tagging import VerdictTags
from edgematch.pipeline.verdicts import RELEASED as RELEASED_TAG

__all__ = ["NOTHING", "RESTORED", "RETAGGED", "NotReleasable", "PutBack", "evidence_of"]

log = get_logger(__name__)

NOTHING: Final = CONTENT_MISSING
RESTORED: Final = "restored"
RETAGGED: Final = "retagged"
#: A step an earlier run finished, seen from a later step's version being current.
_DONE: Final = "done"


class NotReleasable(PermanentError):
    """The release is refused as asked; the message says why and what to do."""

    reason = "not_releasable"


def evidence_of(doc: dict[str, Any]) -> list[Evidence]:
    """The evidence of every version a report names, oldest candidate first, the report's
    own version last (the order in which a release puts them back)."""
    primary = Evidence.from_dict(doc.get("evidence") or {"state": "", "mode": ""})
    others = [Evidence.from_dict(c) for c in reversed(primary.candidates)]
    return [*others, primary]


class PutBack:
    """Puts back the versions of one report at a time (see the module doc)."""

    def __init__(
        self,
        *,
        settings: Settings,
        evidence: EvidenceStore,
        objects: ObjectStore,
        tags: VerdictTags,
    ) -> None:
        self._s = settings
        self._store = evidence
        self._objects = objects
        self._tags = tags
        self._tag_key = settings.result_tag

    def run(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Put back every version ``doc`` names; the release record of the report's own
        version, with ``candidates`` (each one's record) when there are others."""
        steps = evidence_of(doc)
        markers = [f"{doc['report_id']}#{n}" for n in range(1, len(steps))] + [doc["report_id"]]
        done = [self._one(doc, e, markers, n) for n, e in enumerate(steps)]
        release = done[-1]
        if len(done) > 1:
            release = {**release, "candidates": list(reversed(done[:-1]))}
        return release

    def retag_again(self, release: dict[str, Any]) -> None:
        """A released report whose versions a later match blocked again: `released` again."""
        for record in [release, *release.get("candidates", [])]:
            if record.get("state") == RETAGGED:
                self.retag(Evidence.from_dict({**record, "mode": "", "at": 0.0}))

    def _one(
        self, doc: dict[str, Any], evidence: Evidence, markers: list[str], n: int
    ) -> dict[str, Any]:
        if evidence.state == MOVED:
            info = self._restore_copy(doc, evidence, markers, n)
            if info is None:
                return {"state": RESTORED, "detail": "put back by an earlier run"}
            return _release(RESTORED, info, "restored from the evidence copy, verified")
        if evidence.state in (TAGGED, SHADOW, FAILED):
            found = self.retag(evidence)
            tagged = f"tagged {self._tag_key}={RELEASED_TAG}"
            if found is not None and evidence.state == SHADOW:
                return _release(RETAGGED, found, f"quarantine was off, nothing was moved; {tagged}")
            if found is not None:
                return _release(RETAGGED, found, tagged)
        return {"state": NOTHING, "detail": "the scanned content is gone: nothing to put back"}

    def _restore_copy(
        self, doc: dict[str, Any], evidence: Evidence, markers: list[str], n: int
    ) -> VersionInfo | None:
        bucket, key = doc["content"]["bucket"], doc["content"]["key"]
        assert evidence.bucket and evidence.key  # a moved evidence names its copy
        try:
            source = head_version(
                self._store, evidence.bucket, evidence.key, evidence.version_id, evidence.etag
            )
        except ObjectMissing as exc:
            raise NotReleasable(f"the evidence copy is gone, nothing to put back: {exc}") from exc
        restored = self._find_restored(bucket, key, markers, n, copied=source.last_modified)
        if restored == _DONE:
            return None
        if restored is None:
            tags = self._objects.get_tags(source.bucket, source.key, version_id=source.version_id)
            version = self._store.copy(
                source,
                bucket=bucket,
                key=key,
                metadata=restored_metadata(source.metadata, markers[n]),
                tags=restored_tags(tags, self._tag_key, QUARANTINED),
            )
            restored = self._store.head(bucket, key, version_id=version)
            log.info("release_copied", report_id=doc["report_id"], version_id=version)
        assert isinstance(restored, VersionInfo)
        self._verify(source, restored)
        self._tag_released(restored)
        return restored

    def _find_restored(
        self, bucket: str, key: str, markers: list[str], n: int, *, copied: dt.datetime | None
    ) -> VersionInfo | str | None:
        """The version an earlier run put back for step ``n``: the key's current one, its
        marker ``markers[n]``; _DONE when a later step's version is current; None when this
        step is still to do. NotReleasable when the current one is not ours and written
        after the evidence copy (``copied``): putting the old one back would hide it."""
        try:
            current = self._store.head(bucket, key)
        except ObjectMissing:
            return None
        raw = current.metadata.get(META_RELEASED)
        marker = decode_metadata_value(raw) if raw is not None else None
        if marker == markers[n]:
            return current
        if marker in markers:
            return _DONE if markers.index(marker) > n else None
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
        problems = checked_copy_problems(
            self._store, source, restored, expect_hold=False, retention_days=0
        )
        if problems:
            delete_version(self._store, restored)
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

    def retag(self, evidence: Evidence) -> VersionInfo | None:
        """Tag mode, shadow, a failed quarantine: the scanned version, tagged released."""
        if not evidence.bucket or not evidence.key:
            return None
        try:
            info = head_version(
                self._store, evidence.bucket, evidence.key, evidence.version_id, evidence.etag
            )
        except ObjectMissing:
            return None
        self._tag_released(info)
        return info


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
