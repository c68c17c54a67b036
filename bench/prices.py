"""Providers' published list prices, to turn a run's requests into a cost per million hashes.

Prices as listed on 2026-12-03 for AWS us-east-1 (https://aws.amazon.com/s3/pricing/,
"Requests & data retrievals", S3 Standard; https://aws.amazon.com/sqs/pricing/, standard
queues, after the free tier), checked that day against a secondary summary of the S3
request tiers (c3x.dev, "S3 request fees explained": PUT, COPY, POST, LIST $0.005 per
1,000; GET, HEAD, SELECT $0.0004 per 1,000). Object tagging is billed twice: the
``PutObjectTagging`` request as a PUT, and every stored tag each month ($0.01 per 10,000
tags a month, S3 pricing, "Management & insights"). SQS bills each 64 KB chunk of a request
as a request: edgematch's receives and deletes (10 messages of under 2 KB each) are one.

MinIO and Ceph RGW on one's own hardware bill no request; their cost is the CPU and disks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

PRICES_DATE: Final = "2026-12-03"
PRICES_SOURCE: Final = (
    "https://aws.amazon.com/s3/pricing/ (S3 Standard, us-east-1), "
    "https://aws.amazon.com/sqs/pricing/ (standard queue)"
)

#: USD per request.
S3_TIER1_PER_REQUEST: Final = 0.005 / 1000  # PUT, COPY, POST, LIST (and PUT tagging)
S3_TIER2_PER_REQUEST: Final = 0.0004 / 1000  # GET, HEAD, SELECT and all other requests
S3_TAG_PER_MONTH: Final = 0.01 / 10_000  # one stored tag, one month
SQS_PER_REQUEST: Final = 0.40 / 1_000_000  # one 64 KB chunk of a standard-queue request

#: S3 operations billed at the first tier; DELETE is free; the rest are at the second.
S3_TIER1: Final = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "UploadPart",
        "PutObjectTagging",
        "PutBucketTagging",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "DeleteObjects",
    }
)
S3_FREE: Final = frozenset({"DeleteObject"})
SQS_OPERATIONS: Final = frozenset(
    {
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "SendMessage",
        "SendMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "GetQueueUrl",
        "GetQueueAttributes",
        "CreateQueue",
        "DeleteQueue",
        "PurgeQueue",
    }
)


def request_price(operation: str) -> float:
    """USD for one request named ``s3:<Operation>`` or ``sqs:<Operation>``. Pure."""
    service, _, name = operation.partition(":")
    if service == "sqs":
        return SQS_PER_REQUEST
    if name in S3_FREE:
        return 0.0
    return S3_TIER1_PER_REQUEST if name in S3_TIER1 else S3_TIER2_PER_REQUEST


def is_paid(operation: str) -> bool:
    return request_price(operation) > 0.0


def cost_per_million(per_hash: Mapping[str, float]) -> float:
    """USD for a million hashes making ``per_hash`` requests of each operation. Pure."""
    return 1_000_000 * sum(n * request_price(op) for op, n in per_hash.items())


def tags_per_million_per_month(tags_per_hash: float) -> float:
    """USD a month for the tags a million hashes leave stored. Pure."""
    return 1_000_000 * tags_per_hash * S3_TAG_PER_MONTH
