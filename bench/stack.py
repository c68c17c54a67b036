"""The shared infrastructure of one benchmark run: one private Redis, one moto server and
one sandbox (enforcing ``R``) for every phase, edgematch's and the baselines'.

Phases are separated by resetting the sandbox's counters (``POST /_sandbox/reset``) and
waiting out its one-second window, so each phase starts with the same initial burst.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
import kombu

from bench.measure import TreeCPU
from bench.motocount import CountingMotoServer
from devtools.localstack import LocalPipeline
from devtools.rabbitserver import RabbitServer
from edgematch.config.settings import Settings
from edgematch.infra.redisclient import redis_client
from edgematch.names import TASK_RECORD_RESULT, TASK_RECORD_RESULTS
from edgematch.pipeline.buffer import BatchBuffer
from edgematch.pipeline.items import Item

HASH_BYTES = 924  # an Edge V2 hash
#: The tasks on the results queue that carry results (the beat's flush_verdicts does not).
_RESULT_TASKS = frozenset({TASK_RECORD_RESULT, TASK_RECORD_RESULTS})


class CountingRedis:
    """A Redis connection for the benchmark's own look-ups that counts the commands it
    sends, so they can be taken out of the server's ``total_commands_processed``."""

    def __init__(self, url: str) -> None:
        self.client = redis_client(url)
        self.commands = 0

    def total_commands(self) -> int:
        self.commands += 1
        return int(self.client.info("stats")["total_commands_processed"])

    def commandstats(self) -> dict[str, int]:
        self.commands += 1
        raw: dict[str, Any] = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in raw.items()}

    def mget(self, keys: Sequence[str]) -> list[bytes | str | None]:
        self.commands += 1
        values: list[bytes | str | None] = self.client.mget(keys)
        return values

    def close(self) -> None:
        self.client.close()


class Stack:
    """LocalPipeline's parts, started once, with the helpers every phase needs."""

    def __init__(self, rate: float, *, broker: str = "redis") -> None:
        """``broker``: ``redis`` (the private Redis is the broker too) or ``rabbitmq`` (a
        private RabbitMQ node, devtools/rabbitserver.py)."""
        self.rate = rate
        self.broker = broker
        self.rabbit = RabbitServer() if broker == "rabbitmq" else None
        self.pipe = LocalPipeline(
            rate=rate,
            broker_url=self.rabbit.url if self.rabbit is not None else None,
            settings={
                # The benchmark's processes log as an operator's would (INFO, JSON lines).
                "EDGEMATCH_LOG_LEVEL": "INFO",
            },
        )
        # The same moto, counting the requests it serves by operation (bench/motocount.py).
        self.moto = CountingMotoServer()
        self.pipe.moto = self.moto
        self.http = httpx.Client(timeout=10)

    def start(self) -> Stack:
        if self.rabbit is not None:
            self.rabbit.start()
        self.pipe.start()
        self.redis = CountingRedis(self.pipe.redis.url)
        return self

    def close(self) -> None:
        self.http.close()
        self.redis.close()
        self.pipe.close()
        if self.rabbit is not None:
            self.rabbit.close()

    def server_cpu(self) -> dict[str, TreeCPU]:
        """CPU counters of the servers edgematch uses, started now: Redis, and RabbitMQ."""
        procs = {"redis": self.pipe.redis.proc}
        if self.rabbit is not None:
            procs["rabbitmq"] = self.rabbit.proc
        counters = {name: TreeCPU(proc.pid) for name, proc in procs.items() if proc is not None}
        for counter in counters.values():
            counter.start()
        return counters

    # -- the sandbox ------------------------------------------------------------------
    def sandbox_reset(self) -> None:
        """Clear the counters and let the one-second window empty (a fresh burst)."""
        self.http.post(f"{self.pipe.sandbox.root}/_sandbox/reset", json={}).raise_for_status()
        time.sleep(1.1)

    def set_rate(self, rate: float) -> None:
        """Make the sandbox admit ``rate`` requests a second from now on."""
        reply = self.http.post(f"{self.pipe.sandbox.root}/_sandbox/faults", json={"rate": rate})
        reply.raise_for_status()
        self.rate = rate

    # -- the test doubles' own counters ------------------------------------------------------
    def double_pids(self) -> dict[str, int]:
        """The process of each test double: moto (S3 and SQS), the sandbox, redis-server."""
        procs = {
            "moto": self.pipe.moto.proc,
            "sandbox": self.pipe.sandbox.proc,
            "redis": self.pipe.redis.proc,
        }
        return {name: proc.pid for name, proc in procs.items() if proc is not None}

    def moto_requests(self, *, reset: bool = False) -> dict[str, int]:
        """moto's requests by operation (``s3:GetObject`` …) since the last reset; ``reset``
        starts a new count."""
        url = f"{self.pipe.moto.url}/_bench/requests"
        reply = self.http.post(url) if reset else self.http.get(url)
        reply.raise_for_status()
        return {str(k): int(v) for k, v in reply.json().items()}

    def sandbox_stats(self) -> dict[str, Any]:
        reply = self.http.get(f"{self.pipe.sandbox.root}/_sandbox/stats")
        reply.raise_for_status()
        stats: dict[str, Any] = reply.json()
        return stats

    def purge_edgematch(self) -> None:
        """After a run (its processes stopped): drop what a capped run left behind, the
        events still in SQS and everything in edgematch's Redis database, so the next run
        starts from nothing."""
        sqs = self.pipe.sqs()
        # Received and deleted, not purged: moto allows one PurgeQueue a minute, as SQS does.
        while True:
            got = sqs.receive_message(
                QueueUrl=self.pipe.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not got:
                break
            sqs.delete_message_batch(
                QueueUrl=self.pipe.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
        self.redis.client.flushdb()
        if self.rabbit is not None:
            self._purge_queues()

    def _purge_queues(self) -> None:
        """Empty edgematch's RabbitMQ queues (a capped run leaves tasks in them)."""
        assert self.rabbit is not None
        with kombu.Connection(self.rabbit.url) as conn:
            for name in self.rabbit.queue_counts(self.rabbit.url):
                channel: Any = conn.channel()
                try:
                    channel.queue_purge(name)
                finally:
                    channel.close()

    # -- uploads ------------------------------------------------------------------------
    def upload(self, s3: Any, key: str, data: bytes | None = None, *, bucket: str = "") -> None:
        """Upload a content object and then its hash file, as a platform does.

        The hash file names the content version it was computed from (``content-version-id``
        metadata), as the README recommends: ingest then needs no HEAD of the content
        object to pin the version quarantine would act on.
        """
        bucket = bucket or self.pipe.bucket
        content = s3.put_object(
            Bucket=bucket,
            Key=key.removesuffix(".bin"),
            Body=b"image bytes",
            Tagging="owner=platform",
        )
        pinned = {"content-version-id": content["VersionId"]} if content.get("VersionId") else {}
        s3.put_object(Bucket=bucket, Key=key, Body=data or os.urandom(HASH_BYTES), Metadata=pinned)

    def upload_many(
        self,
        keys: Sequence[str],
        *,
        threads: int = 8,
        data: Callable[[str], bytes | None] = lambda key: None,
    ) -> None:
        """:meth:`upload` for each key (``data(key)``: its hash bytes, None for random ones)."""
        s3 = self.pipe.s3()
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda key: self.upload(s3, key, data(key)), keys))

    def push_items(
        self, keys: Sequence[str], *, bucket: str, lane: str = "live", env: dict[str, str]
    ) -> None:
        """Put an item for each key straight into the batch buffer, as ingest would (random
        hash bytes, content key = the key without ``.bin``); ``env``: the processes'."""
        buffer = BatchBuffer(self.redis.client, Settings.from_env(env))
        for key in keys:
            etag = uuid.uuid4().hex
            item = Item.new(
                bucket=bucket,
                key=key,
                version_id=None,
                etag=etag,
                content_bucket=bucket,
                content_key=key.removesuffix(".bin"),
                data=os.urandom(HASH_BYTES),
                correlation_id=uuid.uuid4().hex,
                lane=lane,
            )
            buffer.push(item, f"{bucket}/{key}#{etag}")

    # -- results ------------------------------------------------------------------------
    def results(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The recorded results among ``keys`` (one MGET, counted)."""
        names = list(keys)
        if not names:
            return {}
        rk = self.pipe.keys
        values = self.redis.mget([rk.result(self.pipe.bucket, k) for k in names])
        return {k: json.loads(v) for k, v in zip(names, values, strict=True) if v is not None}

    def queued_results(self) -> dict[str, dict[str, Any]]:
        """Results still waiting in the results queue (no worker consumes it), by hash key.

        Each entry is a kombu message whose base64 JSON body is ``[args, kwargs, embed]``;
        a ``record_results`` task carries the results of one request, ``record_result``
        one. The beat's ``flush_verdicts`` (every EDGEMATCH_VERDICT_LOG_FLUSH_S) shares the
        queue and carries none.
        """
        self.redis.commands += 1
        return results_in(self.redis.client.lrange(self.pipe.keys.queue("results"), 0, -1))

    def wait_results(
        self,
        keys: Sequence[str],
        *,
        deadline: float,
        poll_s: float = 0.25,
        on_poll: Any = None,
    ) -> dict[str, dict[str, Any]]:
        """Poll until every key has a result or ``deadline`` (time.monotonic) passes."""
        found: dict[str, dict[str, Any]] = {}
        pending = list(keys)
        while pending and time.monotonic() < deadline:
            found.update(self.results(pending))
            pending = [k for k in pending if k not in found]
            if on_poll is not None:
                on_poll(found)
            if pending:
                time.sleep(poll_s)
        return found


def results_in(messages: Iterable[bytes | str]) -> dict[str, dict[str, Any]]:
    """The results the kombu messages of the results queue carry, by hash key (see
    :meth:`Stack.queued_results`); a message of another task is passed over."""
    found: dict[str, dict[str, Any]] = {}
    for message in messages:
        envelope = json.loads(message)
        if envelope.get("headers", {}).get("task") not in _RESULT_TASKS:
            continue
        _, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        for result in kwargs.get("results") or [kwargs["result"]]:
            found[result["key"]] = result
    return found
