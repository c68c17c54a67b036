"""What MinIO and Ceph RGW POST to a webhook, and how MinIO sends it again: for the demo,
the tests and the benchmark (a development tool; nothing here runs in production).

The bodies follow the senders' source (tests/samples/notifications/README.md says where
each field comes from): MinIO wraps one S3-shaped record in ``{"EventName", "Key",
"Records"}`` with the key ``url.QueryEscape``d; Ceph RGW sends ``{"Records": [record]}``
with the key as it is, ``opaqueData`` and its own ``eventName`` values (no ``s3:``).
:func:`deliver` retries a refused notification the way MinIO's ``queue_dir`` store does: the
same body again every 3 seconds until a 2xx answer (``internal/store/store.go``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

import httpx

#: MinIO's store retries a failed send after this long (``retryInterval``), whatever the
#: answer said (it reads no Retry-After).
MINIO_RETRY_S = 3.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def minio_notification(
    bucket: str,
    key: str,
    *,
    version_id: str | None,
    etag: str | None,
    size: int,
    event: str = "s3:ObjectCreated:Put",
) -> dict[str, Any]:
    """The body MinIO's webhook target POSTs for one event (``event.Log``)."""
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe=""),
        "size": size,
        "eTag": (etag or "").strip('"'),
        "contentType": "application/octet-stream",
        "userMetadata": {"content-type": "application/octet-stream"},
        "sequencer": uuid.uuid4().hex[:16].upper(),
    }
    if version_id:
        obj["versionId"] = version_id
    record = {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": _now(),
        "eventName": event,
        "userIdentity": {"principalId": "platform"},
        "requestParameters": {"principalId": "platform", "region": "", "sourceIPAddress": ""},
        "responseElements": {
            "content-length": str(size),
            "x-amz-id-2": uuid.uuid4().hex,
            "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
            "x-minio-deployment-id": "00000000-0000-4000-8000-000000000000",
            "x-minio-origin-endpoint": "http://127.0.0.1:9000",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "platform"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
        "source": {"host": "", "port": "", "userAgent": "MinIO (linux; amd64)"},
    }
    return {"EventName": event, "Key": f"{bucket}/{key}", "Records": [record]}


def ceph_notification(
    bucket: str,
    key: str,
    *,
    version_id: str | None,
    etag: str | None,
    size: int,
    event: str = "ObjectCreated:Put",
    opaque_data: str = "edgematch",
) -> dict[str, Any]:
    """The body Ceph RGW's HTTP endpoint POSTs for one event (``rgw_pubsub_s3_event``)."""
    record = {
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "awsRegion": "default",
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "eventName": event,
        "userIdentity": {"principalId": "platform"},
        "requestParameters": {"sourceIPAddress": ""},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex, "x-amz-id-2": "1-default"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "edgematch",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "platform"},
                "arn": f"arn:aws:s3:default::{bucket}",
                "id": f"{uuid.uuid4()}.1.1",
            },
            "object": {
                "key": key,
                "size": size,
                "eTag": (etag or "").strip('"'),
                "versionId": version_id or "",
                "sequencer": uuid.uuid4().hex[:16].upper(),
                "metadata": [],
                "tags": [],
            },
        },
        "eventId": uuid.uuid4().hex,
        "opaqueData": opaque_data,
    }
    return {"Records": [record]}


def deliver(
    client: httpx.Client,
    url: str,
    body: dict[str, Any] | bytes,
    *,
    token: str,
    timeout_s: float,
    retry_s: float = MINIO_RETRY_S,
) -> list[int]:
    """POST ``body`` until it is answered 2xx, every ``retry_s`` as MinIO does; the statuses
    seen, in order (0 for a connection error). Raises TimeoutError after ``timeout_s``."""
    content = body if isinstance(body, bytes) else httpx.Request("POST", url, json=body).content
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    seen: list[int] = []
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = client.post(url, content=content, headers=headers).status_code
        except httpx.TransportError:
            status = 0
        seen.append(status)
        if 200 <= status < 300:
            return seen
        if time.monotonic() + retry_s > deadline:
            raise TimeoutError(f"not accepted after {len(seen)} tries: {seen[-5:]}")
        time.sleep(retry_s)
