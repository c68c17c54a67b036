"""The versions of one key, newest first: ListObjectVersions on exactly that key.

S3 lists the versions of a key in the order they were stored, newest first, in two lists
per page (``Versions`` and ``DeleteMarkers``); the order between a version and a delete
marker is only their ``LastModified``, which S3 keeps to the second. ``Prefix`` is the key
itself, so keys that merely start with it (``pic.jpg.bin`` after ``pic.jpg``) come after
all of its versions: the listing stops at the first other key.

Needs ``s3:ListBucketVersions`` on the bucket. Raises edgematch errors only
(:func:`s3errors.translated`): ``ConfigurationError`` when the listing is refused,
``TransientError`` and its kinds for what is worth retrying, ``ObjectMissing`` for a
missing bucket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edgematch.infra.s3errors import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["KeyVersion", "key_versions"]

_PAGE: Final = 100


@dataclass(frozen=True)
class KeyVersion:
    """One version (or delete marker) of a key. ``etag`` without quotes."""

    version_id: str
    last_modified: dt.datetime
    etag: str | None = None
    delete_marker: bool = False


def key_versions(s3: S3Client, bucket: str, key: str) -> Iterator[KeyVersion]:
    """The versions and delete markers of exactly ``key``, newest first, one page at a
    time (a caller that stops early reads no further page)."""
    marker: dict[str, Any] = {}
    while True:
        with translated("s3:ListBucketVersions", bucket, key, None):
            page = s3.list_object_versions(Bucket=bucket, Prefix=key, MaxKeys=_PAGE, **marker)
        entries = [_entry(v, False) for v in page.get("Versions", []) if v.get("Key") == key]
        entries += [_entry(m, True) for m in page.get("DeleteMarkers", []) if m.get("Key") == key]
        # Stable: on a tie within the second, each list keeps S3's own order.
        entries.sort(key=lambda e: e.last_modified, reverse=True)
        yield from entries
        other_key = any(
            v.get("Key") != key for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        )
        if other_key or not page.get("IsTruncated"):
            return
        marker = {
            "KeyMarker": page.get("NextKeyMarker", ""),
            "VersionIdMarker": page.get("NextVersionIdMarker", ""),
        }


def _entry(doc: Mapping[str, Any], delete_marker: bool) -> KeyVersion:
    etag = doc.get("ETag")
    return KeyVersion(
        version_id=str(doc.get("VersionId") or "null"),
        last_modified=doc["LastModified"],
        etag=(etag.strip('"') or None) if etag else None,
        delete_marker=delete_marker,
    )
