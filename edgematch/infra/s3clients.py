"""The boto3 clients edgematch uses, S3 and SQS, with bounded retries and timeouts.

Endpoints come from boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL_SQS``; with a custom endpoint botocore addresses buckets path-style,
which MinIO and moto need. Raises :class:`~edgematch.errors.ConfigurationError` when no
region is configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from edgematch.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from edgematch.config.settings import Settings

__all__ = ["make_s3_client", "make_sqs_client"]

# Three attempts in all. botocore's Config key "max_attempts" counts retries (3 would
# mean 4 attempts); "total_max_attempts" counts attempts, like AWS_MAX_ATTEMPTS does.
_TOTAL_ATTEMPTS: Final = 3
# botocore's own default; clients are shared by the threads of one worker process.
_MIN_POOL_CONNECTIONS: Final = 10
# A long poll answers after up to intake_wait_s seconds; the socket must outlast it.
_SQS_READ_MARGIN_S: Final = 10.0


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
