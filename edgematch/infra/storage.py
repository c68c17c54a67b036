"""S3 operations edgematch needs — read a hash file, read and merge tags — raising only
edgematch errors: botocore's are translated at the one boundary, :mod:`s3errors`.

Raised (from :mod:`edgematch.errors`), besides what :func:`s3errors.translated` raises:
:class:`BadInput` for an empty or oversized hash file, a tag set S3 would refuse (over 10
tags, over-long key or value) and an unusable ``content-key``/``content-bucket``;
:class:`ObjectMissing` with a ``superseded:`` message for an object replaced since the
event named it. Messages never carry object bytes or credentials.

The clients are built by :mod:`edgematch.infra.s3clients`. The hot path's three calls —
the hash file's GET, the tags' GET and PUT — go through :mod:`edgematch.infra.s3wire`:
signed and sent without botocore's client pipeline where the bucket allows it, through
the client otherwise, with the same answers and errors.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from edgematch.errors import BadInput
from edgematch.infra.s3answers import UnreadableAnswer
from edgematch.infra.s3clients import make_s3_client, make_sqs_client
from edgematch.infra.s3errors import translated
from edgematch.infra.s3text import decode_metadata_value, key_problem
from edgematch.infra.s3wire import S3Wire
from edgematch.infra.versions import KeyVersion, key_versions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, TaggingTypeDef


# The clients (s3clients.py) and the error translation (s3errors.py) have modules of their
# own; they are re-exported here for the callers that name them through the store.
__all__ = [
    "MAX_TAGS",
    "KeyVersion",
    "ObjectInfo",
    "ObjectStore",
    "content_location",
    "make_s3_client",
    "make_sqs_client",
    "quoted",
    "translated",
]

#: S3 allows at most 10 tags on an object.
MAX_TAGS: Final = 10
_MAX_TAG_KEY_CHARS: Final = 128
_MAX_TAG_VALUE_CHARS: Final = 256


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD says about one object. ``etag`` without quotes; ``last_modified`` as
    the store gave it (S3: whole seconds)."""

    bucket: str
    key: str
    size: int
    etag: str | None
    version_id: str | None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    content_type: str | None = None
    last_modified: dt.datetime | None = None


class ObjectStore:
    """The S3 calls edgematch makes, each raising only edgematch errors."""

    def __init__(self, s3: S3Client, *, lean: bool = True) -> None:
        """``lean=False`` sends every call through the boto3 client (for comparison)."""
        self._s3 = s3
        self._wire = S3Wire(s3, lean=lean)

    def head(
        self, bucket: str, key: str, *, version_id: str | None = None, if_match: str | None = None
    ) -> ObjectInfo:
        """HEAD one object (one version when given; with ``if_match``, the current object
        only while its ETag is that). ObjectMissing when it is gone (``superseded:`` when
        the ETag differs)."""
        return self._head(bucket, key, version_id=version_id, if_match=if_match)

    def versions(self, bucket: str, key: str) -> Iterator[KeyVersion]:
        """Every version and delete marker of exactly ``key``, newest first, read page by
        page as the caller goes on (s3:ListBucketVersions; see :mod:`versions`)."""
        return key_versions(self._s3, bucket, key)

    def read_hash(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None,
        max_bytes: int,
        expected_etag: str | None = None,
        expected_size: int | None = None,
    ) -> tuple[ObjectInfo, bytes]:
        """Read a hash file of 1 to ``max_bytes`` bytes: the write the event named.

        The size is checked before any byte is downloaded: on a HEAD, or — when the event
        announced a size within the limit (``expected_size``) and names the write by version
        id or ETag — on the event, and the HEAD is skipped (one S3 request instead of two).
        The GET is pinned to the write: by version id when there is one, otherwise by
        ``If-Match`` on ``expected_etag`` (or the HEAD's ETag). When the key now holds
        other bytes than the event announced, the event's object no longer exists: we
        raise ObjectMissing with a ``superseded:`` message rather than scan bytes the
        event did not name — the newer write brings its own event. The GET's own length
        is checked before its body is read, and the body is read to at most
        ``max_bytes + 1`` bytes, so a hash file that grew is refused, not loaded.
        """
        # With a version id the bytes are immutable; If-Match would only add a way to fail.
        if_match = expected_etag if version_id is None else None
        if (
            expected_size is not None
            and 0 < expected_size <= max_bytes
            and (version_id or if_match)
        ):
            return self._get_hash(
                bucket, key, version_id=version_id, if_match=if_match, max_bytes=max_bytes
            )
        info = self._head(bucket, key, version_id=version_id, if_match=if_match)
        if info.size == 0:
            raise BadInput(f"empty hash file: s3://{bucket}/{key}")
        if info.size > max_bytes:
            raise BadInput(f"hash file is {info.size} bytes, over the limit of {max_bytes}")

        pin_version = version_id or info.version_id
        pin_etag = None if pin_version else (expected_etag or info.etag)
        _, data = self._get_hash(
            bucket, key, version_id=pin_version, if_match=pin_etag, max_bytes=max_bytes
        )
        return info, data

    def _get_hash(
        self, bucket: str, key: str, *, version_id: str | None, if_match: str | None, max_bytes: int
    ) -> tuple[ObjectInfo, bytes]:
        """GET a hash file pinned by version id or If-Match; refuse it past ``max_bytes``."""
        action = "s3:GetObjectVersion" if version_id else "s3:GetObject"
        with translated(action, bucket, key, version_id):
            response = self._wire.get_object(**_pinned(bucket, key, version_id, if_match))
            stream = response["Body"]
            try:
                # The object may differ from what the HEAD or the event said; refuse
                # before reading.
                if response.get("ContentLength", 0) > max_bytes:
                    raise BadInput(
                        f"hash file is {response['ContentLength']} bytes, over the limit of "
                        f"{max_bytes}"
                    )
                data = stream.read(max_bytes + 1)
            finally:
                stream.close()
        if len(data) > max_bytes:
            raise BadInput(
                f"hash file grew past the limit of {max_bytes} bytes between HEAD and GET"
            )
        if not data:
            raise BadInput(f"empty hash file: s3://{bucket}/{key}")
        return _object_info(bucket, key, response, size=len(data)), data

    def get_tags(self, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, str]:
        """The object's tags as a dict. ObjectMissing when the object is gone."""
        action = "s3:GetObjectVersionTagging" if version_id else "s3:GetObjectTagging"
        with translated(action, bucket, key, version_id):
            if version_id:
                response = self._wire.get_object_tagging(
                    Bucket=bucket, Key=key, VersionId=version_id
                )
            else:
                response = self._wire.get_object_tagging(Bucket=bucket, Key=key)
            if "TagSet" not in response:
                # Not S3's tagging answer (botocore leaves the member out): never "no tags".
                raise UnreadableAnswer(detail="a tagging answer without its TagSet")
        return {tag["Key"]: tag["Value"] for tag in response["TagSet"]}

    def merge_tags(
        self,
        bucket: str,
        key: str,
        tags: Mapping[str, str],
        *,
        version_id: str | None = None,
        unless: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> dict[str, str]:
        """Overlay ``tags`` on the object's tags and write the result back; return it.

        Other tags are kept: S3 only replaces whole tag sets, so we read, merge and
        write. S3 has no conditional tagging, so a tag written by someone else between
        our read and write is lost; callers that share objects must keep their own
        writes idempotent (edgematch's verdict tags take a lock, see tagging.py).
        Nothing is written when the merge changes nothing, or when ``unless`` says so of
        the tags the object has (which are then returned). BadInput when the merged set
        would exceed 10 tags or a tag is too long; ObjectMissing when the object is gone.
        """
        _check_tags(tags)
        existing = self.get_tags(bucket, key, version_id=version_id)
        if unless is not None and unless(existing):
            return existing
        merged = {**existing, **tags}
        if len(merged) > MAX_TAGS:
            kept = len(existing.keys() - tags.keys())
            raise BadInput(
                f"tagging s3://{bucket}/{key} would give it {len(merged)} tags ({kept} "
                f"of others, {len(tags)} of ours); S3 allows at most {MAX_TAGS}"
            )
        if merged == existing:
            return merged
        tag_set: TaggingTypeDef = {"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]}
        action = "s3:PutObjectVersionTagging" if version_id else "s3:PutObjectTagging"
        with translated(action, bucket, key, version_id):
            if version_id:
                self._wire.put_object_tagging(
                    Bucket=bucket, Key=key, VersionId=version_id, Tagging=tag_set
                )
            else:
                self._wire.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set)
        return merged

    def _head(
        self, bucket: str, key: str, *, version_id: str | None, if_match: str | None
    ) -> ObjectInfo:
        action = "s3:GetObjectVersion" if version_id else "s3:GetObject"
        response: HeadObjectOutputTypeDef
        with translated(action, bucket, key, version_id):
            response = self._s3.head_object(**_pinned(bucket, key, version_id, if_match))
        return _object_info(bucket, key, response, size=response.get("ContentLength", 0))


def content_location(
    info: ObjectInfo, *, suffix: str, allowed_buckets: Collection[str] = ()
) -> tuple[str, str]:
    """The (bucket, key) of the content object that a hash file stands for.

    Named by the hash object's user metadata ``content-key`` and ``content-bucket``
    (default: the hash object's bucket), RFC 2047 encoded-words decoded — the form S3
    returns a unicode value in, and the only way to name a unicode key in metadata —
    and other text taken literally (a ``%`` is a ``%``); without ``content-key`` it is
    the hash key minus ``suffix`` (``photos/cat.jpg.bin`` → ``photos/cat.jpg``). The
    hash object's own bucket is always allowed; another content bucket only when it is
    in ``allowed_buckets``. Raises BadInput on an empty key, a key with NUL or a ``.``
    or ``..`` segment, a hash key without the suffix, or a bucket not allowed.
    """
    metadata = {k.lower(): decode_metadata_value(v) for k, v in info.metadata.items()}
    bucket = metadata.get("content-bucket", info.bucket)
    if not bucket:
        raise BadInput(f"empty content-bucket metadata on s3://{info.bucket}/{info.key}")
    if bucket != info.bucket and bucket not in allowed_buckets:
        raise BadInput(f"content-bucket {bucket!r} of s3://{info.bucket}/{info.key} is not allowed")
    if "content-key" in metadata:
        key = metadata["content-key"]
        origin = "content-key metadata"
    else:
        if not suffix or not info.key.endswith(suffix):
            raise BadInput(f"hash key {info.key!r} does not end with {suffix!r}")
        key = info.key[: -len(suffix)]
        origin = "hash key minus its suffix"
    problem = key_problem(key)
    if problem:
        raise BadInput(f"content location from {origin} refused: {problem}")
    return bucket, key


def _check_tags(tags: Mapping[str, str]) -> None:
    for tag_key, value in tags.items():
        if not tag_key or len(tag_key) > _MAX_TAG_KEY_CHARS:
            raise BadInput(f"tag key {tag_key[:40]!r} must have 1 to 128 characters")
        if len(value) > _MAX_TAG_VALUE_CHARS:
            raise BadInput(f"value of tag {tag_key!r} has over 256 characters")
        if tag_key.startswith("aws:"):
            raise BadInput(f"tag key {tag_key!r}: the aws: prefix is reserved")
    if len(tags) > MAX_TAGS:
        raise BadInput(f"{len(tags)} tags requested; S3 allows at most {MAX_TAGS}")


def quoted(etag: str) -> str:
    """``etag`` in the double quotes S3 expects in ``If-Match`` headers, whether or not it
    came with them. Pure."""
    return f'"{etag.strip(chr(34))}"'


def _pinned(bucket: str, key: str, version_id: str | None, if_match: str | None) -> Any:
    """The arguments of a GET or HEAD of one version, or of the current object while its
    ETag is ``if_match``, or of the current object."""
    if version_id:
        return {"Bucket": bucket, "Key": key, "VersionId": version_id}
    if if_match:
        return {"Bucket": bucket, "Key": key, "IfMatch": quoted(if_match)}
    return {"Bucket": bucket, "Key": key}


def _object_info(bucket: str, key: str, response: Mapping[str, Any], *, size: int) -> ObjectInfo:
    """What a GET or HEAD answer says of the object."""
    etag = response.get("ETag")
    returned_version = response.get("VersionId")
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=size,
        etag=(etag.strip('"') or None) if etag else None,
        # "null" is the version of unversioned writes, overwritten in place: it
        # pins nothing, so it is treated as no version (see eventfields.version_id).
        version_id=None if returned_version in (None, "", "null") else returned_version,
        metadata=MappingProxyType(dict(response.get("Metadata", {}))),
        content_type=response.get("ContentType"),
        last_modified=response.get("LastModified"),
    )
