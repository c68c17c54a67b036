"""S3 operations that quarantine and reports need, beyond the reads and tags of storage.py.

Server-side copy of one object version with its metadata and tags, Object Lock (legal
hold, retention) on the copy, a HEAD that reads the lock state and checksum back, the
delete of exactly one version, streamed digests and bounded reads for verification and
reporting, and JSON documents in the reports bucket.

Errors are translated at the same boundary as :mod:`edgematch.infra.storage` (its
``translated``), so callers only ever see the edgematch tree: ``ObjectMissing`` (gone,
or ``superseded:`` when an ``If-Match`` fails), ``BadInput`` (refused for good),
``ConfigurationError`` (access denied), ``ServerError``/``TransportError``/
``TransientError`` (worth another try). Messages carry locations, never object bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from botocore.exceptions import ClientError

from edgematch.errors import BadInput, ObjectMissing
from edgematch.infra.storage import quoted, translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectLockRetentionTypeDef

__all__ = ["EvidenceStore", "VersionInfo"]

#: Streamed reads go in chunks of this many bytes.
_CHUNK_BYTES: Final = 1 << 20
#: Whether a bucket has Object Lock is asked again after this many seconds.
_LOCK_CONFIG_TTL_S: Final = 300.0
# Headers a server-side copy with MetadataDirective=REPLACE would otherwise drop.
_KEPT_HEADERS: Final = {
    "ContentType": "ContentType",
    "ContentDisposition": "ContentDisposition",
    "ContentEncoding": "ContentEncoding",
    "ContentLanguage": "ContentLanguage",
    "CacheControl": "CacheControl",
}


@dataclass(frozen=True)
class VersionInfo:
    """What a HEAD says about one object version, lock state and checksum included.

    ``etag`` is without quotes; ``version_id`` is None for unversioned writes;
    ``retain_until`` is timezone-aware; ``checksum_sha256`` is S3's base64 full-object
    checksum when the object has one.
    """

    bucket: str
    key: str
    version_id: str | None
    size: int
    etag: str | None
    last_modified: dt.datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    legal_hold: bool = False
    lock_mode: str | None = None
    retain_until: dt.datetime | None = None
    checksum_sha256: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class EvidenceStore:
    """The S3 calls of quarantine and reporting, each raising only edgematch errors."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3
        self._lock_config: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------
    def head(
        self, bucket: str, key: str, *, version_id: str | None = None, if_match: str | None = None
    ) -> VersionInfo:
        """HEAD one version (or, with ``if_match``, the current object if its ETag matches).

        Raises ObjectMissing when it is gone (``superseded:`` when the ETag no longer
        matches), ConfigurationError when access is denied.
        """
        kwargs = _one_version(bucket, key, version_id=version_id, if_match=if_match)
        kwargs["ChecksumMode"] = "ENABLED"
        action = "s3:GetObjectVersion" if version_id else "s3:GetObject"
        with translated(action, bucket, key, version_id):
            response = self._s3.head_object(**kwargs)
        etag = response.get("ETag")
        returned_version = response.get("VersionId")
        return VersionInfo(
            bucket=bucket,
            key=key,
            version_id=None if returned_version in (None, "", "null") else returned_version,
            size=int(response.get("ContentLength", 0)),
            etag=(etag.strip('"') or None) if etag else None,
            last_modified=response.get("LastModified"),
            metadata=MappingProxyType(dict(response.get("Metadata", {}))),
            headers=MappingProxyType(
                {name: str(response[name]) for name in _KEPT_HEADERS if response.get(name)}  # type: ignore[literal-required]
            ),
            legal_hold=response.get("ObjectLockLegalHoldStatus") == "ON",
            lock_mode=response.get("ObjectLockMode"),
            retain_until=response.get("ObjectLockRetainUntilDate"),
            checksum_sha256=response.get("ChecksumSHA256"),
        )

    def sha256(self, bucket: str, key: str, *, version_id: str | None) -> str:
        """The hex SHA-256 of one version's bytes, streamed (memory stays one chunk)."""
        digest = hashlib.sha256()
        with translated("s3:GetObjectVersion", bucket, key, version_id):
            body = self._get(bucket, key, version_id)["Body"]
            try:
                for chunk in body.iter_chunks(_CHUNK_BYTES):
                    digest.update(chunk)
            finally:
                body.close()
        return digest.hexdigest()

    def read(self, bucket: str, key: str, *, version_id: str | None, max_bytes: int) -> bytes:
        """One version's bytes, at most ``max_bytes``; BadInput when it is larger."""
        with translated("s3:GetObjectVersion", bucket, key, version_id):
            response = self._get(bucket, key, version_id)
            body = response["Body"]
            try:
                if int(response.get("ContentLength", 0)) > max_bytes:
                    raise BadInput(f"s3://{bucket}/{key} is over {max_bytes} bytes")
                data: bytes = body.read(max_bytes + 1)
            finally:
                body.close()
        if len(data) > max_bytes:
            raise BadInput(f"s3://{bucket}/{key} is over {max_bytes} bytes")
        return data

    def presigned_get(
        self, bucket: str, key: str, *, version_id: str | None, expires_s: int
    ) -> str:
        """A URL that GETs exactly this version for ``expires_s`` seconds, signed with this
        process's credentials, on the configured endpoint (AWS, MinIO, moto). Nothing is
        sent: the signature is computed here. The URL is a bearer credential for the
        object: hand it to the person who asked, never to a log."""
        params: dict[str, str] = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        with translated("s3:GetObjectVersion (pre-signed)", bucket, key, version_id):
            url: str = self._s3.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_s
            )
        return url

    def object_lock_enabled(self, bucket: str) -> bool:
        """Whether ``bucket`` has Object Lock (asked again every few minutes)."""
        now = time.monotonic()
        with self._lock:
            cached = self._lock_config.get(bucket)
        if cached is not None and now - cached[1] < _LOCK_CONFIG_TTL_S:
            return cached[0]
        with translated("s3:GetBucketObjectLockConfiguration", bucket, "", None):
            try:
                response = self._s3.get_object_lock_configuration(Bucket=bucket)
                enabled = (
                    response.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                    == "Enabled"
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != (
                    "ObjectLockConfigurationNotFoundError"
                ):
                    raise
                enabled = False
        with self._lock:
            self._lock_config[bucket] = (enabled, now)
        return enabled

    # -- quarantine -----------------------------------------------------------------------
    def copy(
        self,
        source: VersionInfo,
        *,
        bucket: str,
        key: str,
        metadata: Mapping[str, str],
        tags: Mapping[str, str],
    ) -> str | None:
        """Server-side copy of exactly the ``source`` version; returns the copy's version id.

        The copy gets ``metadata`` and ``tags`` (replacing the source's, so pass them
        merged) and keeps the source's content headers. ``CopySourceIfMatch`` pins the
        bytes even without a version id: a source replaced meanwhile raises ObjectMissing
        (``superseded:``) instead of copying someone else's upload.
        """
        copy_source: dict[str, str] = {"Bucket": source.bucket, "Key": source.key}
        if source.version_id:
            copy_source["VersionId"] = source.version_id
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "CopySource": copy_source,
            "MetadataDirective": "REPLACE",
            "Metadata": dict(metadata),
            "TaggingDirective": "REPLACE",
            # A URL query; spaces as %20, not "+", which some stores would keep as "+".
            "Tagging": urlencode(dict(tags), quote_via=quote),
            # S3 computes a full-object SHA-256 of the copy, read back when verifying.
            "ChecksumAlgorithm": "SHA256",
            **{_KEPT_HEADERS[name]: value for name, value in source.headers.items()},
        }
        if source.etag:
            kwargs["CopySourceIfMatch"] = quoted(source.etag)
        with translated("s3:PutObject (copy)", bucket, key, None):
            response = self._s3.copy_object(**kwargs)
        version = response.get("VersionId")
        return None if version in (None, "", "null") else version

    def hold(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None,
        legal_hold: bool,
        retain_until: dt.datetime | None,
        mode: str = "GOVERNANCE",
    ) -> None:
        """Set a legal hold and/or a retention period on one version of a locked bucket.

        Done after the copy rather than in it: S3-compatible stores (moto among them)
        refuse lock headers on a copy without a Content-MD5 it cannot have.
        """
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        if legal_hold:
            with translated("s3:PutObjectLegalHold", bucket, key, version_id):
                self._s3.put_object_legal_hold(
                    Bucket=bucket, Key=key, LegalHold={"Status": "ON"}, **extra
                )
        if retain_until is not None:
            retention: ObjectLockRetentionTypeDef = {
                "Mode": "COMPLIANCE" if mode == "COMPLIANCE" else "GOVERNANCE",
                "RetainUntilDate": retain_until,
            }
            with translated("s3:PutObjectRetention", bucket, key, version_id):
                self._s3.put_object_retention(
                    Bucket=bucket,
                    Key=key,
                    Retention=retention,
                    **extra,
                )

    def delete(
        self, bucket: str, key: str, *, version_id: str | None, if_match: str | None
    ) -> None:
        """Delete exactly one version (or, unversioned, the object only if its ETag matches).

        Deleting by version id removes that version for good and leaves newer versions
        alone; no delete marker is written.
        """
        kwargs = _one_version(bucket, key, version_id=version_id, if_match=if_match)
        action = "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject"
        with translated(action, bucket, key, version_id):
            self._s3.delete_object(**kwargs)

    # -- reports --------------------------------------------------------------------------
    def put_json(
        self, bucket: str, key: str, doc: Mapping[str, Any], *, kms_key_id: str | None
    ) -> None:
        """Write ``doc`` as JSON, encrypted at rest (aws:kms with a key id, else AES256)."""
        body = json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/json",
            "ServerSideEncryption": "aws:kms" if kms_key_id else "AES256",
        }
        if kms_key_id:
            kwargs["SSEKMSKeyId"] = kms_key_id
        with translated("s3:PutObject", bucket, key, None):
            self._s3.put_object(**kwargs)

    def get_json(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The JSON document at ``key``; None when there is none."""
        try:
            with translated("s3:GetObject", bucket, key, None):
                body = self._get(bucket, key, None)["Body"]
                try:
                    raw = body.read()
                finally:
                    body.close()
        except ObjectMissing:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def list_keys(
        self, bucket: str, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[str]:
        """Keys under ``prefix`` in order, after ``start_after``; at most ``limit``."""
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        with translated("s3:ListBucket", bucket, prefix, None):
            while len(keys) < limit:
                response = self._s3.list_objects_v2(**kwargs)
                keys.extend(obj["Key"] for obj in response.get("Contents", []))
                token = response.get("NextContinuationToken")
                if not response.get("IsTruncated") or not token:
                    break
                kwargs["ContinuationToken"] = token
        return keys[:limit]

    def _get(self, bucket: str, key: str, version_id: str | None) -> Any:
        if version_id:
            return self._s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        return self._s3.get_object(Bucket=bucket, Key=key)


def _one_version(
    bucket: str, key: str, *, version_id: str | None, if_match: str | None
) -> dict[str, Any]:
    """The S3 arguments that name exactly one version: its id, or (unversioned) the
    current object only while its ETag is ``if_match``."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    elif if_match:
        kwargs["IfMatch"] = quoted(if_match)
    return kwargs
