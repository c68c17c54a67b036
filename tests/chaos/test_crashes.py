"""Chaos: processes die and Redis goes away mid-run; nothing is lost, nothing acted on twice.

Each test runs the Procfile's real processes against a private redis-server, moto's
server and the sandbox, kills or stops something while work is in flight, and ends with
the scenario's ledger (tests/chaos/conftest.py): every upload has a result, no matched
content version has two quarantine copies or two reports.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote_plus

import pytest
import redis

from edgematch.worker.localstack import FAST_RECOVERY, LocalPipeline
from edgematch.worker.localstack import wait_until as _wait

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

HASH = 924
IMAGE = b"\xff\xd8 an image the platform stored "
QUARANTINE = "quarantine"
MakePipeline = Callable[..., LocalPipeline]
RecordLedger = Callable[..., dict[str, Any]]


def _check_effects(ledger: Mapping[str, Any], matches: int) -> None:
    """Every match quarantined once and reported once, and nothing dead-lettered.

    A step lock the fault stranded (its worker killed holding it, or its release lost in a
    Redis outage) runs out within EDGEMATCH_LOCK_TTL_S, and the step's retry waits for it.
    """
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, ledger
    assert ledger["matches"] == matches
    assert ledger["quarantined"] == matches, ledger
    assert ledger["reports"] == matches, ledger
    assert sum(ledger["dead_letters"].values()) == 0, ledger


def _hashes(prefix: str, count: int, *, known_every: int = 10) -> tuple[dict[str, bytes], set[str]]:
    """``count`` random hash files under ``prefix``; every ``known_every``-th one a known hit."""
    hashes = {f"{prefix}/img-{i:04d}.jpg.bin": os.urandom(HASH) for i in range(count)}
    known = {key for i, key in enumerate(hashes) if i % known_every == 0}
    return hashes, known


def _upload(pipe: LocalPipeline, hashes: Mapping[str, bytes], every_s: float = 0.0) -> None:
    """Upload each content object and then its hash file, with one S3 client, one upload
    every ``every_s`` at most."""
    s3 = pipe.s3()
    for key, data in hashes.items():
        s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=IMAGE + key.encode())
        s3.put_object(Bucket=pipe.bucket, Key=key, Body=data)
        time.sleep(every_s)


@pytest.fixture
def uploader() -> Iterator[Callable[..., threading.Thread]]:
    """Upload in a background thread while the test breaks things; joined at the end."""
    threads: list[threading.Thread] = []

    def start(
        pipe: LocalPipeline, hashes: Mapping[str, bytes], every_s: float = 0.0
    ) -> threading.Thread:
        thread = threading.Thread(target=_upload, args=(pipe, hashes, every_s), daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.join(120)


def _results_count(client: redis.Redis, pipe: LocalPipeline, keys: list[str]) -> int:
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.exists(pipe.keys.result(pipe.bucket, key))
    return sum(int(n) for n in pipeline.execute())


def _wait_all(pipe: LocalPipeline, keys: list[str], matches: int, timeout_s: float) -> None:
    """Every upload has a result and every match its report."""
    client = redis.Redis.from_url(pipe.redis.url)
    try:
        _wait(
            lambda: _results_count(client, pipe, keys) == len(keys),
            timeout_s,
            f"{len(keys)} results",
        )
    except AssertionError as exc:
        # Say where the missing ones are, so an intermittent failure can be diagnosed.
        missing = len(keys) - _results_count(client, pipe, keys)
        letters = [json.loads(doc).get("reason") for doc in client.hvals(pipe.keys.dead_letters)]
        queues = {q: client.llen(pipe.keys.queue(q)) for q in ("ingest", "match", "results")}
        # Tasks a killed worker had taken wait in kombu's unacked hash until restored.
        ns = pipe.keys.ns
        unacked = [
            json.loads(raw)[0].get("headers", {}).get("task")
            for raw in client.hvals(f"{ns}:kombu:unacked")
        ]
        mutex_ttl = client.ttl(f"{ns}:kombu:unacked_mutex")
        journaled = client.zcard(f"{ns}:journal:at")
        raise AssertionError(
            f"{exc}: {missing} missing; buffer {client.zcard(pipe.keys.ready)} waiting, "
            f"{client.zcard(pipe.keys.leases)} leased; queues {queues}; unacked {unacked} "
            f"(restore mutex ttl {mutex_ttl} s); {journaled} journaled; "
            f"dead letters {letters}"
        ) from None
    finally:
        client.close()

    def reported() -> bool:
        # Or something was dead-lettered: the ledger then says what.
        client = redis.Redis.from_url(pipe.redis.url)
        try:
            letters = int(client.hlen(pipe.keys.dead_letters))
        finally:
            client.close()
        return len(pipe.reports()) >= matches or letters > 0

    _wait(reported, 60, f"{matches} reports")
    time.sleep(1.0)  # what a late redelivery would add, it adds now


def test_worker_sigkilled_five_times_mid_batch(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
) -> None:
    """Five SIGKILLs of the worker while its batches are in flight: every upload is scanned once."""
    count = 150  # the 500 take ~110 s here; see README, Reliability
    pipe = make_pipeline(
        rate=20.0,
        quarantine_bucket=QUARANTINE,
        # Five kills in a row can catch the same redelivered task three times, and a task
        # whose worker died that often is set aside as poison (worker/poison.py). Here the
        # kills are the test's, not the task's fault: allow more deliveries.
        settings={**FAST_RECOVERY, "EDGEMATCH_MAX_DELIVERIES": "8"},
    )
    hashes, known = _hashes("kill", count)
    pipe.add_known(hashes[k] for k in known)
    # A third of the requests take a second: a kill finds batches in flight.
    pipe.sandbox_faults(slow_rate=0.3, slow_s=1.0)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    # Paced, so that uploads keep arriving through all five kills: a pipeline that has
    # scanned everything takes no batch left to be killed with.
    uploading = uploader(pipe, hashes, 0.15)

    client = redis.Redis.from_url(pipe.redis.url)

    def leases() -> set[str]:
        return {str(batch_id) for batch_id in client.zrange(pipe.keys.leases, 0, -1)}

    kills = 0
    seen: set[str] = set()
    for _ in range(5):
        # A batch the current worker took: a lease id not seen before (a dead worker's
        # lease stays in the set until it runs out).
        _wait(lambda: bool(leases() - seen), 60, "a batch in flight")  # noqa: B023
        seen |= leases()
        pipe.processes.kill("worker")
        kills += 1
        pipe.start_processes("worker", worker_args=["--concurrency", "2"])
    fault_end = time.time()
    pipe.sandbox_faults(slow_rate=0.0)
    uploading.join(120)
    _wait_all(pipe, list(hashes), len(known), timeout_s=180)
    reclaimed = int(client.hget(pipe.keys.stats, "items_reclaimed") or 0)
    client.close()

    ledger = record_ledger(
        pipe,
        "worker SIGKILL ×5 mid-batch",
        hashes,
        fault_end=fault_end,
        notes=f"{kills} kills, {reclaimed} items reclaimed from dead leases",
    )
    assert kills == 5 and reclaimed >= 1
    _check_effects(ledger, len(known))


def _sqs_attribute(pipe: LocalPipeline, name: str) -> int:
    attributes = pipe.sqs().get_queue_attributes(QueueUrl=pipe.queue_url, AttributeNames=[name])
    return int(attributes["Attributes"][name])


def _record(bucket: str, key: str, head: Mapping[str, Any]) -> dict[str, Any]:
    """An S3 event record as real S3 writes it (key encoded with quote_plus, versionId set)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": quote_plus(key),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
                "versionId": head.get("VersionId"),
            },
        },
    }


def test_intake_sigkilled_while_holding_messages(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
) -> None:
    """SIGKILL of intake between receiving messages and enqueueing them: SQS gives them back."""
    pipe = make_pipeline(rate=20.0, quarantine_bucket=QUARANTINE, settings=FAST_RECOVERY)
    # Messages a dead intake held come back after the queue's visibility timeout.
    sqs = pipe.sqs()
    sqs.set_queue_attributes(QueueUrl=pipe.queue_url, Attributes={"VisibilityTimeout": "3"})
    hashes, known = _hashes("intake-kill", 40, known_every=8)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    keys = list(hashes)
    _upload(pipe, {k: hashes[k] for k in keys[:10]})
    _wait_all(pipe, keys[:10], len(known & set(keys[:10])), timeout_s=60)

    # The other 30 are written without the bucket's own events; their events are sent in
    # batches of 10, so that intake receives a whole batch at once.
    s3 = pipe.s3()
    s3.put_bucket_notification_configuration(Bucket=pipe.bucket, NotificationConfiguration={})
    _upload(pipe, {k: hashes[k] for k in keys[10:]})
    bodies = [
        json.dumps(
            {"Records": [_record(pipe.bucket, k, s3.head_object(Bucket=pipe.bucket, Key=k))]}
        )
        for k in keys[10:]
    ]
    # Writes to Redis pause: intake receives a batch and blocks enqueueing its first task.
    admin = redis.Redis.from_url(pipe.redis.url)
    admin.client_pause(15000, all=False)
    try:
        sqs.send_message_batch(
            QueueUrl=pipe.queue_url,
            Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[:10])],
        )
        _wait(
            lambda: _sqs_attribute(pipe, "ApproximateNumberOfMessagesNotVisible") >= 10,
            10,
            "intake to hold a batch",
        )
        held = _sqs_attribute(pipe, "ApproximateNumberOfMessagesNotVisible")
        pipe.processes.kill("intake")
    finally:
        admin.client_unpause()
        admin.close()
    fault_end = time.time()
    for start in (10, 20):
        sqs.send_message_batch(
            QueueUrl=pipe.queue_url,
            Entries=[
                {"Id": str(n), "MessageBody": body}
                for n, body in enumerate(bodies[start : start + 10])
            ],
        )
    pipe.start_processes("intake")
    _wait_all(pipe, keys, len(known), timeout_s=90)

    ledger = record_ledger(
        pipe,
        "intake SIGKILL holding messages",
        keys,
        fault_end=fault_end,
        notes=f"{held} SQS messages received and not deleted when intake was killed",
    )
    assert held == 10
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, ledger
    assert ledger["quarantined"] == ledger["reports"] == len(known)
    assert ledger["dead_letters"] == {}
    assert pipe.sandbox_stats()["items_total"] == len(keys)  # none scanned twice


def test_redis_restarted_mid_run(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
) -> None:
    """Redis stops mid-run and comes back with its AOF: every process reconnects on its own."""
    pipe = make_pipeline(
        rate=20.0, quarantine_bucket=QUARANTINE, settings=FAST_RECOVERY, redis_aof=True
    )
    pipe.sqs().set_queue_attributes(QueueUrl=pipe.queue_url, Attributes={"VisibilityTimeout": "5"})
    hashes, known = _hashes("redis-restart", 100)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    uploading = uploader(pipe, hashes)
    client = redis.Redis.from_url(pipe.redis.url)
    keys = list(hashes)
    _wait(lambda: _results_count(client, pipe, keys) >= 20, 60, "the first results")
    client.close()

    pipe.redis.stop()
    time.sleep(4.0)
    pipe.redis.start()
    fault_end = time.time()
    uploading.join(120)
    _wait_all(pipe, keys, len(known), timeout_s=120)

    ledger = record_ledger(pipe, "Redis stopped 4 s, restarted (AOF)", keys, fault_end=fault_end)
    _check_effects(ledger, len(known))
    for name in ("intake", "worker", "beat"):
        assert pipe.processes.procs[name].poll() is None, f"{name} exited"
