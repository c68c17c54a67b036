"""S3 operations edgematch needs — read a hash file, read and merge tags — with errors
translated into the edgematch tree at this one boundary.

Raised (from :mod:`edgematch.errors`):

* :class:`ObjectMissing` — NoSuchKey, NoSuchVersion, 404, NoSuchBucket, a version that is
  a delete marker (MethodNotAllowed), or an object replaced since the event named it
  (the message then starts with ``superseded:``);
* :class:`BadInput` — empty or oversized hash file, a tag set S3 would refuse (over 10
  tags, over-long key or value), an unusable ``content-key``/``content-bucket``, and
  requests S3 refuses for good (InvalidArgument, KeyTooLongError, InvalidObjectState …);
* :class:`ConfigurationError` — AccessDenied/403 and refused or missing credentials: a
  person must fix IAM or the credential chain;
* :class:`ServerError` — SlowDown and 5xx; :class:`TransportError` — timeouts, refused
  or dropped connections; :class:`TransientError` — any other S3 or botocore error
  (its code is in the message).

Endpoints come from boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL_SQS``; with a custom endpoint botocore addresses buckets path-style,
which MinIO and moto need. Messages never carry object bytes or credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from edgematch.errors import (
    BadInput,
    ConfigurationError,
    EdgematchError,
    ObjectMissing,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.infra.s3text import decode_metadata_value, key_problem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef, TaggingTypeDef
    from mypy_boto3_sqs import SQSClient

    from edgematch.config.settings import Settings

__all__ = [
    "MAX_TAGS",
    "ObjectInfo",
    "ObjectStore",
    "content_location",
    "make_s3_client",
    "make_sqs_client",
]

log = structlog.get_logger(__name__)

#: S3 allows at most 10 tags on an object.
MAX_TAGS: Final = 10
_MAX_TAG_KEY_CHARS: Final = 128
_MAX_TAG_VALUE_CHARS: Final = 256
# Three attempts in all. botocore's Config key "max_attempts" counts retries (3 would
# mean 4 attempts); "total_max_attempts" counts attempts, like AWS_MAX_ATTEMPTS does.
_TOTAL_ATTEMPTS: Final = 3
# botocore's own default; clients are shared by the threads of one worker process.
_MIN_POOL_CONNECTIONS: Final = 10
# A long poll answers after up to intake_wait_s seconds; the socket must outlast it.
_SQS_READ_MARGIN_S: Final = 10.0

_MISSING_CODES: Final = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
_SUPERSEDED_CODES: Final = frozenset({"PreconditionFailed", "412"})
_DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }
)
_THROTTLE_CODES: Final = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "503", "500", "RequestTimeout"}
)
# Refused for good: retrying the same request cannot succeed.
_REFUSED_CODES: Final = frozenset(
    {"InvalidArgument", "InvalidTag", "KeyTooLongError", "InvalidObjectState", "InvalidRequest"}
)


def make_s3_client(settings: Settings) -> S3Client:
    """An S3 client with bounded retries and timeouts. Endpoint and region from boto3's env."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": _TOTAL_ATTEMPTS},
        # S3 calls spend the same task lease as the API call, so share its bounds.
        connect_timeout=settings.api_connect_timeout_s,
        read_timeout=settings.api_timeout_s,
        # Room for every item of every pump's batch to be read or tagged at once.
        max_pool_connections=max(_MIN_POOL_CONNECTIONS, settings.match_pumps * settings.batch_size),
    )
    client: S3Client = _client("s3", config)
    return client


def make_sqs_client(settings: Settings) -> SQSClient:
    """An SQS client whose read timeout outlasts the intake long poll."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": _TOTAL_ATTEMPTS},
        connect_timeout=settings.api_connect_timeout_s,
        read_timeout=settings.intake_wait_s + _SQS_READ_MARGIN_S,
        max_pool_connections=_MIN_POOL_CONNECTIONS,
    )
    client: SQSClient = _client("sqs", config)
    return client


def _client(service: Literal["s3", "sqs"], config: Config) -> Any:
    try:
        return boto3.client(service, config=config)
    except NoRegionError:
        raise ConfigurationError(
            f"AWS_DEFAULT_REGION (or AWS_REGION) is required: no region is configured for {service}"
        ) from None


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD says about one object. ``etag`` without quotes."""

    bucket: str
    key: str
    size: int
    etag: str | None
    version_id: str | None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    content_type: str | None = None


class ObjectStore:
    """The S3 calls edgematch makes, each raising only edgematch errors."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def head(
        self, bucket: str, key: str, *, version_id: str | None = None, if_match: str | None = None
    ) -> ObjectInfo:
        """HEAD one object (one version when given; with ``if_match``, the current object
        only while its ETag is that). ObjectMissing when it is gone (``superseded:`` when
        the ETag differs)."""
        return self._head(bucket, key, version_id=version_id, if_match=if_match)

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
            if version_id:
                response = self._s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
            elif if_match:
                response = self._s3.get_object(Bucket=bucket, Key=key, IfMatch=quoted(if_match))
            else:
                response = self._s3.get_object(Bucket=bucket, Key=key)
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
        etag = response.get("ETag")
        returned_version = response.get("VersionId")
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            size=len(data),
            etag=(etag.strip('"') or None) if etag else None,
            # "null" pins nothing, as in _head.
            version_id=None if returned_version in (None, "", "null") else returned_version,
            metadata=MappingProxyType(dict(response.get("Metadata", {}))),
            content_type=response.get("ContentType"),
        )
        return info, data

    def get_tags(self, bucket: str, key: str, *, version_id: str | None = None) -> dict[str, str]:
        """The object's tags as a dict. ObjectMissing when the object is gone."""
        action = "s3:GetObjectVersionTagging" if version_id else "s3:GetObjectTagging"
        with translated(action, bucket, key, version_id):
            if version_id:
                response = self._s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)
            else:
                response = self._s3.get_object_tagging(Bucket=bucket, Key=key)
        return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}

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
                self._s3.put_object_tagging(
                    Bucket=bucket, Key=key, VersionId=version_id, Tagging=tag_set
                )
            else:
                self._s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set)
        return merged

    def _head(
        self, bucket: str, key: str, *, version_id: str | None, if_match: str | None
    ) -> ObjectInfo:
        action = "s3:GetObjectVersion" if version_id else "s3:GetObject"
        response: HeadObjectOutputTypeDef
        with translated(action, bucket, key, version_id):
            if version_id:
                response = self._s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
            elif if_match:
                response = self._s3.head_object(Bucket=bucket, Key=key, IfMatch=quoted(if_match))
            else:
                response = self._s3.head_object(Bucket=bucket, Key=key)
        etag = response.get("ETag")
        returned_version = response.get("VersionId")
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=response.get("ContentLength", 0),
            etag=(etag.strip('"') or None) if etag else None,
            # "null" is the version of unversioned writes, overwritten in place: it
            # pins nothing, so it is treated as no version (see events._version_id).
            version_id=None if returned_version in (None, "", "null") else returned_version,
            metadata=MappingProxyType(dict(response.get("Metadata", {}))),
            content_type=response.get("ContentType"),
        )


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


# --- error translation -----------------------------------------------------------------


@contextmanager
def translated(action: str, bucket: str, key: str, version_id: str | None) -> Iterator[None]:
    """Turn botocore exceptions raised inside into edgematch errors: the one mapping of S3
    errors, used by every module that calls S3 (storage, evidence, listing)."""
    try:
        yield
    except ClientError as exc:
        raise _from_client_error(exc, action, bucket, key, version_id) from exc
    except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
        raise ConfigurationError(f"S3 client is not configured: {exc}") from exc
    except (HTTPClientError, BotoConnectionError, IncompleteReadError) as exc:
        raise TransportError(f"{action} on s3://{bucket}/{key}: {type(exc).__name__}") from exc
    except ParamValidationError as exc:
        raise BadInput(f"{action} on s3://{bucket}/{key}: invalid request: {exc}") from exc
    except (CredentialRetrievalError, BotoCoreError) as exc:
        raise TransientError(f"{action} on s3://{bucket}/{key}: {type(exc).__name__}") from exc


def _from_client_error(  # noqa: PLR0911 - one return per row of the translation
    exc: ClientError, action: str, bucket: str, key: str, version_id: str | None
) -> EdgematchError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or "unknown"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    where = f"s3://{bucket}/{key}" + (f" version {version_id}" if version_id else "")

    if code in _MISSING_CODES:
        return ObjectMissing(f"{where} does not exist ({code})")
    if code == "NoSuchBucket":
        # Kept with ObjectMissing, not ConfigurationError: bucket names come from events,
        # and a bucket deleted after its event is as gone as a deleted object.
        return ObjectMissing(f"bucket {bucket!r} does not exist (NoSuchBucket)")
    if code == "MethodNotAllowed":
        return ObjectMissing(f"{where} is a delete marker (MethodNotAllowed)")
    if code in _SUPERSEDED_CODES:
        log.info("s3.superseded", bucket=bucket, key=key)
        return ObjectMissing(f"superseded: {where} no longer holds the object the event named")
    if code in _DENIED_CODES:
        log.warning("s3.access_denied", action=action, bucket=bucket, code=code)
        return ConfigurationError(
            f"edgematch lacks permission for {action} on {where} ({code}); grant it in IAM "
            "or the bucket policy. Without s3:ListBucket, S3 also answers 403 for a missing "
            "object."
        )
    if code in _THROTTLE_CODES or (isinstance(status, int) and status >= 500):
        return ServerError(f"{action} on {where}: S3 answered {code}", status_code=status)
    if code in _REFUSED_CODES:
        message = str(error.get("Message", ""))[:120]
        return BadInput(f"{action} on {where} refused: {code}: {message}")
    return TransientError(f"{action} on {where}: S3 answered {code} (HTTP {status})")


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
