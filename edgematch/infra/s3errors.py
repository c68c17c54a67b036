"""S3 and botocore errors translated into the edgematch tree: the one mapping, used by every
module that calls S3 (storage, evidence, listing).

Raised (from :mod:`edgematch.errors`):

* :class:`ObjectMissing` — NoSuchKey, NoSuchVersion, 404, NoSuchBucket, a version that is
  a delete marker (MethodNotAllowed), or an object replaced since the event named it
  (the message then starts with ``superseded:``); its ``delete_marker`` is set when S3
  answered that the current version is a delete marker (``x-amz-delete-marker: true``);
* :class:`BadInput` — requests S3 refuses for good (InvalidArgument, KeyTooLongError,
  InvalidObjectState …) and requests botocore refuses to send;
* :class:`ConfigurationError` — AccessDenied/403 and refused or missing credentials: a
  person must fix IAM or the credential chain;
* :class:`ServerError` — SlowDown and 5xx; :class:`TransportError` — timeouts, refused
  or dropped connections; :class:`TransientError` — any other S3 or botocore error
  (its code is in the message).

Messages never carry object bytes or credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import structlog
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
from botocore.exceptions import ConnectionError as BotoConnectionError

from edgematch.errors import (
    BadInput,
    ConfigurationError,
    EdgematchError,
    ObjectMissing,
    ServerError,
    TransientError,
    TransportError,
)

__all__ = ["translated"]

log = structlog.get_logger(__name__)

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
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        marker = str(headers.get("x-amz-delete-marker", "")).lower() == "true"
        return ObjectMissing(
            f"{where} does not exist ({code}{', a delete marker' if marker else ''})",
            delete_marker=marker,
        )
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
