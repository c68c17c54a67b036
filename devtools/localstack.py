"""A whole local pipeline on real parts: private Redis, moto S3/SQS, the sandbox, the Procfile.

Used by ``scripts/demo``, the end-to-end tests and the benchmarks, so that all three run
the pipeline exactly the way an operator would: the same processes, configured only
through environment variables.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx

from devtools.devstack import (
    MotoServer,
    Processes,
    RedisServer,
    SandboxServer,
    aws_env,
    free_port,
    temp_dir,
    wait_for_port,
)
from devtools.senders import ceph_notification, deliver, minio_notification
from edgematch.infra.keys import Keys
from edgematch.infra.redisclient import redis_client

SANDBOX_KEY = "local-sandbox-key"
#: Keys made per scanned hash, by the prefix after the namespace, and the setting whose
#: window each lives for: nothing else may grow with the number of hashes scanned.
PER_HASH_KEYS = {
    "seen": "EDGEMATCH_IDEMPOTENCY_TTL_S",
    "result": "EDGEMATCH_RESULT_TTL_S",
    "result-content": "EDGEMATCH_RESULT_TTL_S",
    "result-item": "EDGEMATCH_RESULT_TTL_S",
}
#: Keys made per matched content (or per distinct matched hash), and their window.
PER_MATCH_KEYS = {
    "match-cache": "EDGEMATCH_MATCH_CACHE_TTL_S",
    "quarantine": "EDGEMATCH_IDEMPOTENCY_TTL_S",
    "report": "EDGEMATCH_IDEMPOTENCY_TTL_S",
    # Per matched match id: the flood guard's distinct objects, at most the limit + 1.
    "flood": "EDGEMATCH_FLOOD_WINDOW_S",
}


@dataclass
class KeyKind:
    """The keys of one kind in Redis: how many, their bytes (``MEMORY USAGE``), the longest
    TTL among them (s; -1 when one has none)."""

    count: int = 0
    bytes: int = 0
    max_ttl_s: int = 0
    names: list[str] = field(default_factory=list)


class LocalPipeline:
    """Start the parts, create the bucket and queue, wire S3 notifications to SQS.

    With ``intake="webhook"`` the bucket sends nothing to SQS: ``upload`` posts each hash
    file's notification to ``edgematch webhook`` itself, as MinIO would (``notify_as``:
    ``minio`` or ``ceph``), and ``start_processes`` runs webhook in place of intake.
    """

    def __init__(
        self,
        *,
        rate: float = 10.0,
        bucket: str = "uploads",
        queue: str = "edgematch-events",
        settings: Mapping[str, str] | None = None,
        redis_aof: bool = False,
        sandbox_args: list[str] | None = None,
        versioned: bool = True,
        quarantine_bucket: str | None = None,
        object_lock: bool = True,
        reports_bucket: str = "edgematch-reports",
        intake: str = "sqs",
        notify_as: str = "minio",
        broker_url: str | None = None,
    ) -> None:
        """``quarantine_bucket``: created (with Object Lock unless ``object_lock`` is
        False) and set as EDGEMATCH_QUARANTINE_BUCKET; without it quarantine tags.
        ``reports_bucket`` is always created and set as EDGEMATCH_REPORTS_BUCKET.
        ``broker_url``: EDGEMATCH_BROKER_URL (a RabbitMQ virtual host of
        devtools/rabbitserver.py); without it the broker is the private Redis."""
        self.rate = rate
        self.bucket = bucket
        self.quarantine_bucket = quarantine_bucket
        self.object_lock = object_lock
        self.reports_bucket = reports_bucket
        self.queue_name = queue
        self.extra_settings = dict(settings or {})
        self.versioned = versioned
        if intake not in ("sqs", "webhook"):
            raise ValueError(f"intake is sqs or webhook, not {intake!r}")
        self.intake = intake
        self.notify_as = notify_as
        self.broker_url = broker_url
        self.webhook_port = free_port()
        self.webhook_token = secrets.token_hex(16)
        self._http = httpx.Client(timeout=30.0)
        self._tmp = temp_dir("edgematch-local-")
        self.dir = self._tmp.__enter__()
        self.known_file = self.dir / "known.txt"
        self.known_file.write_text("", encoding="utf-8")
        self.redis = RedisServer(appendonly=redis_aof)
        self.moto = MotoServer()
        self.sandbox = SandboxServer(
            key=SANDBOX_KEY, rate=rate, known_file=self.known_file, extra=sandbox_args
        )
        self.processes: Processes | None = None
        self.queue_url = ""
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    @property
    def keys(self) -> Keys:
        return Keys(self.extra_settings.get("EDGEMATCH_NAMESPACE", "edgematch"))

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> LocalPipeline:
        self.redis.start()
        self.moto.start()
        self.sandbox.start()
        self._create_bucket_and_queue()
        self.processes = Processes(self.env(), log_dir=self.dir)
        return self

    def close(self) -> None:
        if self.processes is not None:
            self.processes.stop_all()
        self._http.close()
        self.sandbox.close()
        self.moto.close()
        self.redis.close()
        self._tmp.__exit__(None, None, None)

    def __enter__(self) -> LocalPipeline:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def start_processes(self, *names: str, worker_args: list[str] | None = None) -> None:
        assert self.processes is not None
        door = "webhook" if self.intake == "webhook" else "intake"
        for name in names or (door, "worker", "beat"):
            self.processes.start(name, extra_args=worker_args if name == "worker" else None)
        if "webhook" in names or (not names and door == "webhook"):
            wait_for_port(self.webhook_port)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/"

    # -- configuration ---------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment every process gets: only documented variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "AWS_"))}
        env.update(aws_env(self.moto.url))
        env.update(
            {
                "EDGEMATCH_REDIS_URL": self.redis.url,
                "EDGEMATCH_API_URL": self.sandbox.url,
                "EDGEMATCH_SUBSCRIPTION_KEY": SANDBOX_KEY,
                "EDGEMATCH_RATE_LIMIT": str(self.rate),
                "EDGEMATCH_SQS_QUEUE_URL": self.queue_url,
                "EDGEMATCH_INTAKE_WAIT_S": "1",
                "EDGEMATCH_LOG_FORMAT": "json",
                "EDGEMATCH_REPORTS_BUCKET": self.reports_bucket,
                "EDGEMATCH_WEBHOOK_HOST": "127.0.0.1",
                "EDGEMATCH_WEBHOOK_PORT": str(self.webhook_port),
                "EDGEMATCH_WEBHOOK_TOKEN": self.webhook_token,
            }
        )
        if self.quarantine_bucket:
            env["EDGEMATCH_QUARANTINE_BUCKET"] = self.quarantine_bucket
        if self.broker_url:
            env["EDGEMATCH_BROKER_URL"] = self.broker_url
        env.update(self.extra_settings)
        return env

    def s3(self) -> Any:
        return self._client("s3")

    def sqs(self) -> Any:
        return self._client("sqs")

    def _client(self, service: str) -> Any:
        """One boto3 client per service for the pipeline's life, made on first use under a
        lock (boto3's default session is not safe to make clients from in two threads at
        once). A client is safe to share between threads; making one costs milliseconds of
        CPU, which the tests' polls paid ten times a second."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.moto.url,
                    region_name="us-east-1",
                    aws_access_key_id="edgematch-local",
                    aws_secret_access_key="edgematch-local",
                )
            return self._clients[service]

    def _create_bucket_and_queue(self) -> None:
        s3, sqs = self.s3(), self.sqs()
        self.queue_url = sqs.create_queue(QueueName=self.queue_name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.create_bucket(Bucket=self.reports_bucket)
        if self.quarantine_bucket:
            # Object Lock turns versioning on: a copy can be held, and never overwritten.
            s3.create_bucket(
                Bucket=self.quarantine_bucket, ObjectLockEnabledForBucket=self.object_lock
            )
        s3.create_bucket(Bucket=self.bucket)
        if self.versioned:
            s3.put_bucket_versioning(
                Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"}
            )
        if self.intake == "webhook":
            return  # upload() posts the notifications itself
        s3.put_bucket_notification_configuration(
            Bucket=self.bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".bin"}]}},
                    }
                ]
            },
        )

    # -- the sandbox ---------------------------------------------------------------------
    def add_known(self, hashes: Iterable[bytes]) -> None:
        digests = [hashlib.sha256(h).hexdigest() for h in hashes]
        httpx.post(
            f"{self.sandbox.root}/_sandbox/known", json={"sha256": digests}, timeout=5
        ).raise_for_status()

    def sandbox_stats(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.sandbox.root}/_sandbox/stats", timeout=5)
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats

    def sandbox_faults(self, **faults: Any) -> dict[str, Any]:
        reply = httpx.post(f"{self.sandbox.root}/_sandbox/faults", json=faults, timeout=5)
        reply.raise_for_status()
        config: dict[str, Any] = reply.json()
        return config

    # -- uploads and results -----------------------------------------------------------
    def upload(
        self,
        key: str,
        hash_bytes: bytes,
        *,
        content: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        notify: bool = True,
        shape: str | None = None,
    ) -> dict[str, Any] | None:
        """Upload a content object (optional) and then its hash file, as a platform would.

        With the webhook intake (and ``notify``), the hash file's notification is then
        delivered to it as MinIO delivers (sent again until accepted), in ``shape``'s form
        (minio or ceph; default ``notify_as``). Returns that body.
        """
        s3 = self.s3()
        content_key = key[: -len(".bin")] if key.endswith(".bin") else key
        if content is not None:
            s3.put_object(
                Bucket=self.bucket, Key=content_key, Body=content, Tagging="owner=platform"
            )
        put = s3.put_object(
            Bucket=self.bucket, Key=key, Body=hash_bytes, Metadata=dict(metadata or {})
        )
        if self.intake != "webhook":
            return None
        body = self.notification(
            key,
            version_id=put.get("VersionId"),
            etag=put.get("ETag"),
            size=len(hash_bytes),
            shape=shape,
        )
        if notify:
            self.deliver(body)
        return body

    # -- the webhook ---------------------------------------------------------------------
    def notification(
        self,
        key: str,
        *,
        version_id: str | None,
        etag: str | None,
        size: int,
        shape: str | None = None,
        bucket: str | None = None,
    ) -> dict[str, Any]:
        """The body ``shape`` (default ``notify_as``: minio or ceph) would POST for ``key``."""
        build = ceph_notification if (shape or self.notify_as) == "ceph" else minio_notification
        return build(bucket or self.bucket, key, version_id=version_id, etag=etag, size=size)

    def post(self, body: dict[str, Any] | bytes, *, token: str | None = None) -> httpx.Response:
        """POST ``body`` once to the webhook, with the pipeline's token (or ``token``)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self._http.post(
            self.webhook_url,
            content=content,
            headers={
                "Authorization": f"Bearer {token or self.webhook_token}",
                "Content-Type": "application/json",
            },
        )

    def deliver(self, body: dict[str, Any] | bytes, timeout_s: float = 120.0) -> list[int]:
        """POST ``body`` until accepted, as MinIO does; the statuses seen."""
        return deliver(
            self._http, self.webhook_url, body, token=self.webhook_token, timeout_s=timeout_s
        )

    def result(self, key: str, bucket: str | None = None) -> dict[str, Any] | None:
        client = redis_client(self.redis.url)
        try:
            raw = client.get(self.keys.result(bucket or self.bucket, key))
        finally:
            client.close()
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def results(self, keys: Iterable[str], bucket: str | None = None) -> dict[str, dict[str, Any]]:
        """The recorded results of those of ``keys`` (in ``bucket``) that have one: one
        connection and one round trip for all of them."""
        names = list(keys)
        client = redis_client(self.redis.url)
        try:
            reply = client.pipeline(transaction=False)
            for key in names:
                reply.get(self.keys.result(bucket or self.bucket, key))
            raws = reply.execute()
        finally:
            client.close()
        return {
            key: json.loads(raw) for key, raw in zip(names, raws, strict=True) if raw is not None
        }

    def wait_for_results(
        self, keys: Iterable[str], timeout_s: float = 60.0, bucket: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The recorded results of ``keys`` (in ``bucket``), waiting up to ``timeout_s``.

        Each poll reads every pending key in one round trip: a connection per key per poll
        (a few ms of CPU each) kept a core busy while hundreds of results were awaited, on
        the machine the pipeline under test shares."""
        pending = set(keys)
        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            found.update(self.results(pending, bucket))
            pending.difference_update(found)
            if pending:
                time.sleep(0.1)
        return found

    def reports(self) -> list[dict[str, Any]]:
        """Every report document in the reports bucket, in key order."""
        s3 = self.s3()
        docs: list[dict[str, Any]] = []
        listing = s3.list_objects_v2(Bucket=self.reports_bucket, Prefix="reports/")
        for obj in listing.get("Contents", []):
            body = s3.get_object(Bucket=self.reports_bucket, Key=obj["Key"])["Body"].read()
            docs.append({**json.loads(body), "key": obj["Key"]})
        return docs

    def redis_footprint(self) -> dict[str, KeyKind]:
        """Every key of the namespace by kind: the per-hash and per-match prefixes of
        PER_HASH_KEYS and PER_MATCH_KEYS, and ``other`` (queues, buffer, stats …)."""
        ns = self.keys.ns
        kinds: dict[str, KeyKind] = {}
        client = redis_client(self.redis.url)
        try:
            for raw in client.scan_iter(match="*", count=1000):
                name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                prefix = name.removeprefix(f"{ns}:").split(":", 1)[0]
                kind = prefix if prefix in PER_HASH_KEYS or prefix in PER_MATCH_KEYS else "other"
                entry = kinds.setdefault(kind, KeyKind())
                entry.count += 1
                entry.bytes += int(client.memory_usage(name) or 0)
                ttl = int(client.ttl(name))
                entry.max_ttl_s = (
                    -1 if ttl == -1 or entry.max_ttl_s == -1 else max(entry.max_ttl_s, ttl)
                )
                if kind == "other":
                    entry.names.append(name)
        finally:
            client.close()
        return kinds

    def verdict_log(self) -> list[dict[str, Any]]:
        """Every line of the verdict log (in the reports bucket, as by default), in key order."""
        s3 = self.s3()
        docs: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.reports_bucket, Prefix="verdicts/"
        ):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=self.reports_bucket, Key=obj["Key"])["Body"].read()
                for line in gzip.decompress(body).decode("utf-8").splitlines():
                    docs.append({**json.loads(line), "_object": obj["Key"]})
        return docs

    def exists(self, bucket: str, key: str) -> bool:
        """Whether ``key`` has a current version in ``bucket``."""
        listing = self.s3().list_objects_v2(Bucket=bucket, Prefix=key)
        return any(obj["Key"] == key for obj in listing.get("Contents", []))

    def log_lines(self, name: str) -> list[str]:
        path: Path = self.dir / f"{name}.log"
        return (
            path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
        )


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, *, poll_s: float = 0.1
) -> None:
    """Poll ``predicate`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
