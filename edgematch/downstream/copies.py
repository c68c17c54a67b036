"""The quarantined copy: where it goes, what it carries, and when it stands in for the
original. Pure functions, tested without S3.

A copy carries the original's metadata and tags plus where it came from and why (the
``edgematch-*`` metadata below, ``<result-tag>=quarantined``); it is verified by size and
ETag or SHA-256 (and, with Object Lock, its hold and retention) before the original goes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Final

from edgematch.downstream.custody import ContentVersion
from edgematch.downstream.evidence import VersionInfo
from edgematch.errors import TransientError
from edgematch.infra.s3text import (
    MAX_METADATA_BYTES,
    decode_metadata_value,
    encode_metadata_value,
    fit_key,
    metadata_bytes,
)
from edgematch.infra.storage import MAX_TAGS
from edgematch.pipeline.results import Result

__all__ = [
    "META_CORRELATION_ID",
    "META_MATCH_IDS",
    "META_SOURCE",
    "META_SOURCE_ETAG",
    "META_SOURCE_SHA256",
    "META_SOURCE_SIZE",
    "META_SOURCE_VERSION",
    "META_TRACKING_ID",
    "QUARANTINED",
    "CopyUnverified",
    "copy_metadata",
    "copy_problems",
    "copy_source_facts",
    "copy_tags",
    "quarantine_key",
]

#: The value of the result tag on quarantined content and on its copy.
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
