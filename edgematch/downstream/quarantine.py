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

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

import redis

from edgematch.config.settings import Settings
from edgematch.downstream.evidence import EvidenceStore, VersionInfo
from edgematch.errors import ObjectMissing, PermanentError, TransientError
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable
from edgematch.infra.s3text import (
    MAX_METADATA_BYTES,
    decode_metadata_value,
    encode_metadata_value,
    fit_key,
    metadata_bytes,
)
from edgematch.infra.storage import MAX_TAGS, ObjectStore
from edgematch.pipeline.results import Result
from edgematch.pipeline.tagging import VerdictTags
from edgematch.recovery.locks import exclusive

log = get_logger(__name__)

MOVE, TAG, OFF = "move", "tag", "off"
#: Evidence states: where a matched content version ended up.
MOVED, TAGGED, SHADOW, CONTENT_MISSING, FAILED = (
    "moved",
    "tagged",
    "shadow",
    "content_missing",
    "failed",
)
QUARANTINED: Final = "quarantined"
# User metadata written on the copy; S3 keeps at most 2 KB of it (copy_metadata).
META_SOURCE: Final = "edgematch-source"
#: Instead of META_SOURCE when a long location leaves no room for it: SHA-256 of the URI.
META_SOURCE_SHA256: Final = "edgematch-source-sha256"
META_SOURCE_VERSION: Final = "edgematch-source-version-id"
META_SOURCE_ETAG: Final = "edgematch-source-etag"
META_SOURCE_SIZE: Final = "edgematch-source-size"
META_MATCH_IDS: Final = "edgematch-match-ids"
META_TRACKING_ID: Final = "edgematch-tracking-id"
META_CORRELATION_ID: Final = "edgematch-correlation-id"
_MAX_MATCH_IDS_CHARS: Final = 512


class CopyUnverified(TransientError):
    """The copy (or, in tag mode, the tag) does not read back right: keep the original, retry."""

    reason = "copy_unverified"


class QuarantineUnavailable(PermanentError):
    """The quarantine bucket is missing: a person must create it, then replay."""

    reason = "quarantine_unavailable"


@dataclass(frozen=True)
class ContentVersion:
    """The content object version a result scanned (its version id or ETag as of ingest)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @classmethod
    def of(cls, result: Result) -> ContentVersion:
        return cls(
            result.content_bucket,
            result.content_key,
            result.content_version_id,
            result.content_etag,
        )

    @property
    def identity(self) -> str:
        """Stable name of this version: one quarantine and one report each."""
        if self.version_id:
            tail = self.version_id
        elif self.etag:
            tail = f"etag:{self.etag}"
        else:
            tail = "unknown"
        return f"{self.bucket}\x00{self.key}\x00{tail}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Evidence:
    """Where a matched content version is now, and how that was established.

    ``bucket``/``key``/``version_id`` name the preserved bytes: the quarantined copy
    (``moved``), the tagged original (``tagged``), the untouched original (``shadow``,
    ``failed``), or nothing (``content_missing``). ``at`` is a Unix time in seconds.
    """

    state: str
    mode: str
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    checksum_sha256: str | None = None
    legal_hold: bool = False
    retain_until: str | None = None
    original_deleted: bool = False
    detail: str | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evidence:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    @classmethod
    def failed(cls, content: ContentVersion, *, mode: str, reason: str) -> Evidence:
        """A quarantine that gave up: the original stays where it was, tagged ``match``."""
        return cls(
            state=FAILED,
            mode=mode,
            bucket=content.bucket,
            key=content.key,
            version_id=content.version_id,
            etag=content.etag,
            detail=reason[:500],
        )


def quarantine_key(content: ContentVersion) -> str:
    """Where the copy goes in the quarantine bucket: ``<source-bucket>/<content-key>``.

    Shortened (with a digest of the key, see :func:`s3text.fit_key`) when that passes
    S3's 1,024 bytes, as a 1,024-byte content key does: the copy's metadata and the
    report still name the whole source.
    """
    return fit_key(f"{content.bucket}/", content.key)


def copy_problems(
    source: VersionInfo,
    copy: VersionInfo,
    *,
    expect_hold: bool,
    retention_days: int,
    same_digest: bool | None = None,
) -> list[str]:
    """Why ``copy`` cannot stand in for ``source``; empty when it is verified. Pure.

    The bytes must be the same: equal size, and an equal ETag or (when ETags differ, as
    for multipart or SSE-KMS sources) ``same_digest`` True, the SHA-256 of both compared
    by the caller. With Object Lock the copy must carry a legal hold and, when
    ``retention_days`` > 0, be retained at least that many days after it was written.
    """
    problems: list[str] = []
    if copy.size != source.size:
        problems.append(f"size {copy.size} bytes, the original has {source.size}")
    if not (source.etag and copy.etag == source.etag) and same_digest is not True:
        problems.append("neither the ETag nor the SHA-256 matches the original")
    if expect_hold:
        if not copy.legal_hold:
            problems.append("no legal hold")
        if retention_days > 0:
            written = copy.last_modified or dt.datetime.now(dt.UTC)
            # A minute of slack for clock skew between our host and the store.
            wanted = written + dt.timedelta(days=retention_days) - dt.timedelta(minutes=1)
            if copy.retain_until is None or copy.retain_until < wanted:
                problems.append(f"not retained for {retention_days} days")
    return problems


def copy_metadata(source: VersionInfo, result: Result) -> dict[str, str]:
    """The copy's user metadata: the original's, plus where it came from and why. Pure.

    Every value is ASCII, as S3 requires (other text RFC 2047-encoded, see
    :mod:`edgematch.infra.s3text`; read ours back with :func:`copy_source_facts` or
    ``decode_metadata_value``), and the whole stays within S3's 2 KB. What verification
    needs (the source's version, ETag and size) and the correlation id always go, then
    the original's own metadata; the source's location, the tracking id and the match
    ids only as far as they fit — the location, when it does not, as the SHA-256 of
    ``s3://bucket/key`` (the report names it whole).
    """
    metadata = _kept_metadata(source.metadata)
    essential = {
        META_SOURCE_VERSION: source.version_id or "",
        META_SOURCE_ETAG: source.etag or "",
        META_SOURCE_SIZE: str(source.size),
        META_CORRELATION_ID: result.correlation_id,
    }
    metadata.update({k: encode_metadata_value(v) for k, v in essential.items() if v})

    def fits(name: str, value: str) -> bool:
        return metadata_bytes({**metadata, name: value}) <= MAX_METADATA_BYTES

    source_uri = encode_metadata_value(source.uri)
    if fits(META_SOURCE, source_uri):
        metadata[META_SOURCE] = source_uri
    else:
        digest = hashlib.sha256(source.uri.encode("utf-8")).hexdigest()
        if fits(META_SOURCE_SHA256, digest):
            metadata[META_SOURCE_SHA256] = digest
    tracking = encode_metadata_value(result.tracking_id or "")
    if tracking and fits(META_TRACKING_ID, tracking):
        metadata[META_TRACKING_ID] = tracking
    ids = list(result.match_ids)
    while ids:
        value = encode_metadata_value(",".join(ids))
        if len(value) <= _MAX_MATCH_IDS_CHARS and fits(META_MATCH_IDS, value):
            metadata[META_MATCH_IDS] = value
            break
        ids.pop()
    return metadata


def _kept_metadata(original: Mapping[str, str]) -> dict[str, str]:
    """The original's metadata as a copy can carry it.

    S3 returns unicode values RFC 2047-encoded, which go back as they are (S3 decodes them
    again). A store that returns raw UTF-8 hands botocore latin-1 text, which botocore
    would refuse to send: that is recovered and encoded. A name that is not ASCII cannot
    be an HTTP header at all and is left out.
    """
    kept: dict[str, str] = {}
    for name, value in original.items():
        if not name.isascii():
            continue
        if value.isascii():
            kept[name] = value
            continue
        try:
            text = value.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            text = value
        kept[name] = encode_metadata_value(text)
    return kept


def copy_source_facts(copy: VersionInfo) -> dict[str, str]:
    """What a copy's metadata says of its source (version, ETag, size …), decoded."""
    ours = (META_SOURCE, META_SOURCE_VERSION, META_SOURCE_ETAG, META_SOURCE_SIZE)
    return {
        name: decode_metadata_value(copy.metadata[name]) for name in ours if name in copy.metadata
    }


def copy_tags(source_tags: Mapping[str, str], tag_key: str) -> dict[str, str]:
    """The copy's tags: the original's with ``tag_key=quarantined``. Pure.

    S3 allows 10 tags; when the original already has 10 others, the copy keeps them
    as they are (the copy's bucket is closed anyway).
    """
    merged = {**source_tags, tag_key: QUARANTINED}
    return merged if len(merged) <= MAX_TAGS else dict(source_tags)


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
        self._store = evidence
        self._objects = objects
        self._r = client
        self._k = Keys(settings.namespace)
        self._clock = clock
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
        """Quarantine the content version ``result`` scanned. Idempotent; see the module doc."""
        content = ContentVersion.of(result)
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
            evidence = self._move(content, result) if self.mode == MOVE else self._tag(content)
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
        return Evidence(
            state=SHADOW,
            mode=OFF,
            bucket=content.bucket,
            key=content.key,
            version_id=content.version_id,
            etag=content.etag,
            detail=f"shadow mode: {would}; nothing was touched",
        )

    def _tag(self, content: ContentVersion) -> Evidence:
        # Under the content's tag lock: a result being recorded at the same moment must
        # not write its verdict over ours (tagging.py).
        with self._tags.lock(content.bucket, content.key):
            try:
                source = self._head_scanned(content)
            except ObjectMissing as exc:
                return self._missing(content, str(exc))
            written = self._tags.write(
                content.bucket, content.key, QUARANTINED, version_id=source.version_id
            )
            if written is None:
                return self._missing(content, f"{content.uri} was deleted while being tagged")
            # Read back: the bucket policy only protects what really carries the tag.
            now = self._objects.get_tags(content.bucket, content.key, version_id=source.version_id)
        if now.get(self._s.result_tag) != QUARANTINED:
            raise CopyUnverified(f"{content.uri} does not carry {self._s.result_tag}={QUARANTINED}")
        return Evidence(
            state=TAGGED,
            mode=TAG,
            bucket=content.bucket,
            key=content.key,
            version_id=source.version_id,
            etag=source.etag,
            size=source.size,
            detail=f"tagged {self._s.result_tag}={QUARANTINED}; the bucket policy denies reads",
        )

    def _move(self, content: ContentVersion, result: Result) -> Evidence:
        dest_bucket = self._s.quarantine_bucket
        assert dest_bucket is not None  # Settings refuses move without a bucket
        dest_key = quarantine_key(content)
        try:
            source = self._head_scanned(content)
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
        same_digest = None
        if not (source.etag and copy.etag == source.etag):
            # Multipart and SSE-KMS ETags are not digests of the bytes: compare the bytes.
            same_digest = self._store.sha256(
                source.bucket, source.key, version_id=source.version_id
            ) == self._store.sha256(copy.bucket, copy.key, version_id=copy.version_id)
        problems = copy_problems(
            source,
            copy,
            expect_hold=locked,
            retention_days=self._s.evidence_retention_days,
            same_digest=same_digest,
        )
        if problems:
            raise CopyUnverified(
                f"copy of {content.uri} at {copy.uri} is not verified ({'; '.join(problems)}); "
                "the original stays"
            )
        self._store.delete(
            content.bucket,
            content.key,
            version_id=source.version_id,
            if_match=None if source.version_id else source.etag,
        )
        return self._moved(copy, detail="copied, verified, original version deleted")

    # -- steps ----------------------------------------------------------------------------
    def _head_scanned(self, content: ContentVersion) -> VersionInfo:
        """The scanned version itself: by version id, else by ETag, else the current one."""
        if_match = None if content.version_id else content.etag
        return self._store.head(
            content.bucket, content.key, version_id=content.version_id, if_match=if_match
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
            return self._missing(content, why)
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
        return Evidence(
            state=MOVED,
            mode=MOVE,
            bucket=copy.bucket,
            key=copy.key,
            version_id=copy.version_id,
            etag=copy.etag,
            size=copy.size,
            checksum_sha256=copy.checksum_sha256,
            legal_hold=copy.legal_hold,
            retain_until=copy.retain_until.isoformat() if copy.retain_until else None,
            original_deleted=True,
            detail=detail,
        )

    def _missing(self, content: ContentVersion, why: str) -> Evidence:
        # Deleted by its owner before we got to it (or replaced, unversioned): nothing is
        # left to serve or preserve; the report says so instead of failing forever.
        log.warning("quarantine_content_missing", bucket=content.bucket, key=content.key)
        return Evidence(
            state=CONTENT_MISSING,
            mode=self.mode,
            version_id=content.version_id,
            etag=content.etag,
            detail=f"the scanned content is gone: {why}"[:500],
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
