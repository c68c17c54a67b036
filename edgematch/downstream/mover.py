"""Move mode of the quarantine: copy the scanned version to the quarantine bucket, protect
and verify the copy, then delete exactly the scanned version of the original.

The copy is read back and verified (size, ETag or SHA-256, and with Object Lock its legal
hold and retention, see :func:`~edgematch.downstream.copies.copy_problems`) before the
original goes; a copy an earlier attempt made is found by what its metadata says of its
source, so a repeat verifies and carries on instead of copying again. An original that is
gone with a verified copy in place was moved by an earlier attempt.

Raises :class:`~edgematch.downstream.copies.CopyUnverified` (transient: the original
stays) and :class:`QuarantineUnavailable` (permanent: the quarantine bucket is missing),
besides the S3 errors of :class:`~edgematch.downstream.evidence.EvidenceStore`.

:func:`head_version`, :func:`delete_version` and :func:`checked_copy_problems` serve the
release's putting back (putback.py) and the reports' evidence reads too.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from edgematch.config.settings import Settings
from edgematch.downstream.copies import (
    META_SOURCE_ETAG,
    META_SOURCE_SIZE,
    META_SOURCE_VERSION,
    CopyUnverified,
    copy_metadata,
    copy_problems,
    copy_source_facts,
    copy_tags,
    quarantine_key,
)
from edgematch.downstream.custody import CONTENT_MISSING, MOVED, ContentVersion, Evidence
from edgematch.downstream.evidence import EvidenceStore, VersionInfo
from edgematch.errors import ObjectMissing, PermanentError
from edgematch.infra.logs import get_logger
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.results import Result

__all__ = [
    "MOVE",
    "Mover",
    "QuarantineUnavailable",
    "checked_copy_problems",
    "content_missing",
    "delete_version",
    "head_version",
]

log = get_logger(__name__)

MOVE = "move"


class QuarantineUnavailable(PermanentError):
    """The quarantine bucket is missing: a person must create it, then replay."""

    reason = "quarantine_unavailable"


def content_missing(content: ContentVersion, mode: str, why: str) -> Evidence:
    """Evidence for scanned content that is gone, logged: not an error."""
    # Deleted by its owner before we got to it (or replaced, unversioned): nothing is
    # left to serve or preserve; the report says so instead of failing forever.
    log.warning("quarantine_content_missing", bucket=content.bucket, key=content.key)
    return Evidence(
        state=CONTENT_MISSING,
        mode=mode,
        version_id=content.version_id,
        etag=content.etag,
        detail=f"the scanned content is gone: {why}"[:500],
    )


class Mover:
    """Moves one matched content version at a time into the quarantine bucket; its
    :meth:`head_scanned` also serves the tag mode."""

    def __init__(
        self,
        *,
        settings: Settings,
        evidence: EvidenceStore,
        objects: ObjectStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._store = evidence
        self._objects = objects
        self._clock = clock

    def move(self, content: ContentVersion, result: Result) -> Evidence:
        """Copy, protect and verify; then delete exactly the scanned version. Idempotent:
        a copy an earlier attempt made is found and verified instead of made again."""
        dest_bucket = self._s.quarantine_bucket
        assert dest_bucket is not None  # Settings refuses move without a bucket
        dest_key = quarantine_key(content)
        try:
            source = self.head_scanned(content)
        except ObjectMissing as exc:
            return self._source_gone(content, dest_bucket, dest_key, str(exc))
        locked = self._lock_enabled(dest_bucket)
        copy = self._existing_copy(dest_bucket, dest_key, source.version_id, source.etag)
        if copy is None:
            source_tags = self._objects.get_tags(
                content.bucket, content.key, version_id=source.version_id
            )
            version = self._store.copy(
                source,
                bucket=dest_bucket,
                key=dest_key,
                metadata=copy_metadata(source, result),
                tags=copy_tags(source_tags, self._s.result_tag),
            )
            copy = self._store.head(dest_bucket, dest_key, version_id=version)
        if locked:
            copy = self._protect(copy)
        problems = checked_copy_problems(
            self._store,
            source,
            copy,
            expect_hold=locked,
            retention_days=self._s.evidence_retention_days,
        )
        if problems:
            raise CopyUnverified(
                f"copy of {content.uri} at {copy.uri} is not verified ({'; '.join(problems)}); "
                "the original stays"
            )
        delete_version(self._store, source)
        return self._moved(copy, detail="copied, verified, original version deleted")

    def head_scanned(self, content: ContentVersion) -> VersionInfo:
        """The scanned version itself: by version id, else by ETag, else the current one."""
        return head_version(
            self._store, content.bucket, content.key, content.version_id, content.etag
        )

    def _lock_enabled(self, bucket: str) -> bool:
        """Whether the quarantine bucket has Object Lock; asked first, so that a missing
        quarantine bucket is named as such (not mistaken for missing content)."""
        try:
            return self._store.object_lock_enabled(bucket)
        except ObjectMissing as exc:
            raise QuarantineUnavailable(f"quarantine bucket {bucket!r}: {exc}") from exc

    def _existing_copy(
        self, bucket: str, key: str, source_version: str | None, source_etag: str | None
    ) -> VersionInfo | None:
        """The copy an earlier attempt made of this version, if it is the current one."""
        try:
            copy = self._store.head(bucket, key)
        except ObjectMissing:
            return None
        facts = copy_source_facts(copy)
        if source_version and facts.get(META_SOURCE_VERSION) == source_version:
            return copy
        if not source_version and source_etag and facts.get(META_SOURCE_ETAG) == source_etag:
            return copy
        return None

    def _protect(self, copy: VersionInfo) -> VersionInfo:
        """Legal hold plus retention on the copy, never shortening a retention it has."""
        days = self._s.evidence_retention_days
        until: dt.datetime | None = None
        if days > 0:
            until = dt.datetime.fromtimestamp(self._clock(), dt.UTC) + dt.timedelta(days=days)
            if copy.retain_until is not None and copy.retain_until >= until:
                until = None
        if copy.legal_hold and until is None:
            return copy
        self._store.hold(
            copy.bucket,
            copy.key,
            version_id=copy.version_id,
            legal_hold=not copy.legal_hold,
            retain_until=until,
            mode=copy.lock_mode or "GOVERNANCE",
        )
        return self._store.head(copy.bucket, copy.key, version_id=copy.version_id)

    def _source_gone(
        self, content: ContentVersion, dest_bucket: str, dest_key: str, why: str
    ) -> Evidence:
        copy = self._existing_copy(dest_bucket, dest_key, content.version_id, content.etag)
        if copy is None:
            return content_missing(content, MOVE, why)
        facts = copy_source_facts(copy)
        recorded_size = facts.get(META_SOURCE_SIZE)
        recorded_etag = facts.get(META_SOURCE_ETAG)
        locked = self._lock_enabled(dest_bucket)
        if locked:
            copy = self._protect(copy)
        stand_in = VersionInfo(
            bucket=content.bucket,
            key=content.key,
            version_id=content.version_id,
            size=int(recorded_size) if recorded_size and recorded_size.isdigit() else -1,
            etag=recorded_etag or None,
        )
        # The original's bytes are gone; what is left to compare is what the copy recorded
        # of them. A multipart ETag is no digest: then the store's own checksum of the
        # copy must exist (S3 computed it from the bytes it copied).
        digest_only = not recorded_etag or "-" in recorded_etag
        problems = copy_problems(
            stand_in,
            copy,
            expect_hold=locked,
            retention_days=self._s.evidence_retention_days,
            same_digest=bool(copy.checksum_sha256) if digest_only else None,
        )
        if problems:
            raise CopyUnverified(
                f"{content.uri} is gone and its copy at {copy.uri} is not verified "
                f"({'; '.join(problems)})"
            )
        return self._moved(
            copy, detail="the original was already gone: an earlier attempt moved it"
        )

    def _moved(self, copy: VersionInfo, *, detail: str) -> Evidence:
        return Evidence.naming(
            copy,
            state=MOVED,
            mode=MOVE,
            detail=detail,
            checksum_sha256=copy.checksum_sha256,
            legal_hold=copy.legal_hold,
            retain_until=copy.retain_until.isoformat() if copy.retain_until else None,
            original_deleted=True,
        )


def head_version(
    store: EvidenceStore, bucket: str, key: str, version_id: str | None, etag: str | None
) -> VersionInfo:
    """Exactly that version: by its version id, else the current object while its ETag is
    ``etag`` (else the current one). ObjectMissing once it is gone or superseded."""
    return store.head(bucket, key, version_id=version_id, if_match=None if version_id else etag)


def delete_version(store: EvidenceStore, info: VersionInfo) -> None:
    """Delete exactly that version: by its version id, else the object while its ETag is
    still the one read."""
    store.delete(
        info.bucket,
        info.key,
        version_id=info.version_id,
        if_match=None if info.version_id else info.etag,
    )


def checked_copy_problems(
    store: EvidenceStore,
    source: VersionInfo,
    copy: VersionInfo,
    *,
    expect_hold: bool,
    retention_days: int,
) -> list[str]:
    """Why ``copy`` cannot stand in for ``source`` (:func:`copy_problems`); empty when it
    is verified. Where the ETags differ, the bytes of both are read and compared."""
    same_digest = None
    if not (source.etag and copy.etag == source.etag):
        # Multipart and SSE-KMS ETags are not digests of the bytes: compare the bytes.
        same_digest = store.sha256(
            source.bucket, source.key, version_id=source.version_id
        ) == store.sha256(copy.bucket, copy.key, version_id=copy.version_id)
    return copy_problems(
        source,
        copy,
        expect_hold=expect_hold,
        retention_days=retention_days,
        same_digest=same_digest,
    )
