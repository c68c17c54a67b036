"""Listing a bucket prefix page by page, for ``edgematch backfill``.

One ListObjectsV2 call per page, yielded as it arrives: memory holds one page (at most
``page_size`` keys, 1000 by default) whatever the prefix holds. Keys come in UTF-8 binary
order, which is what ``StartAfter`` resumes from. Errors are translated at the storage
boundary (``storage.translated``): AccessDenied is a ConfigurationError (grant
``s3:ListBucket``), NoSuchBucket an ObjectMissing, throttling a ServerError.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edgematch.infra.storage import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAX_PAGE = 1000  # ListObjectsV2 returns at most 1000 keys a call


@dataclass(frozen=True)
class Listed:
    """One object as the listing shows it. ``etag`` without quotes; ``size`` in bytes."""

    key: str
    etag: str | None
    size: int
    last_modified: datetime


def list_pages(
    s3: S3Client,
    bucket: str,
    prefix: str,
    *,
    start_after: str | None = None,
    page_size: int = MAX_PAGE,
) -> Iterator[list[Listed]]:
    """Pages of the objects under ``prefix`` whose key sorts after ``start_after``."""
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
    if start_after:
        request["StartAfter"] = start_after
    while True:
        with translated("s3:ListBucket", bucket, prefix, None):
            reply = s3.list_objects_v2(**request)
        yield [
            Listed(
                key=item["Key"],
                etag=(item.get("ETag") or "").strip('"') or None,
                size=int(item.get("Size", 0)),
                last_modified=item["LastModified"],
            )
            for item in reply.get("Contents", [])
        ]
        token = reply.get("NextContinuationToken")
        if not reply.get("IsTruncated") or not token:
            return
        request = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        request["ContinuationToken"] = token
