"""Chaos: a misbehaving API, a wrong key, repeated and reordered events, a burst.

The Procfile's real processes against a private redis-server, moto's server and the
sandbox, whose faults are switched at runtime; each test ends with its ledger
(tests/chaos/conftest.py): every upload has a result, no effect happens twice.
"""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import redis

from devtools.localstack import SANDBOX_KEY, LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.config.settings import Settings
from tests.support.hashes import HASH
from tests.support.pipelines import (
    MakePipeline,
    dead_letters,
    log_events,
    next_second,
    results_count,
    wait_settled,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

IMAGE = b"\xff\xd8 an image the platform stored "
QUARANTINE = "quarantine"
RecordLedger = Callable[..., dict[str, Any]]

#: Every scenario runs on the default settings, but for EDGEMATCH_RATE_LIMIT: docs/configuration.md
#: tells operators to set it to their subscription's quota; these pipelines have 20 a second.
RATE = 20.0


def _client(pipe: LocalPipeline) -> redis.Redis:
    return redis.Redis.from_url(pipe.redis.url)


def _wait_all(pipe: LocalPipeline, keys: list[str], matches: int, timeout_s: float) -> None:
    """Every upload has a result and every match its report."""
    _wait(lambda: results_count(pipe, keys) == len(keys), timeout_s, f"{len(keys)} results")
    _wait(lambda: len(pipe.reports()) >= matches, 60, f"{matches} reports")
    time.sleep(1.0)  # what a late redelivery would add, it adds now


def _upload(pipe: LocalPipeline, hashes: Mapping[str, bytes]) -> None:
    s3 = pipe.s3()
    for key, data in hashes.items():
        s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=IMAGE + key.encode())
        s3.put_object(Bucket=pipe.bucket, Key=key, Body=data)


def _silence_notifications(pipe: LocalPipeline) -> None:
    """Stop the bucket's own events: the test sends the events itself."""
    pipe.s3().put_bucket_notification_configuration(
        Bucket=pipe.bucket, NotificationConfiguration={}
    )


def _record(bucket: str, key: str, head: Mapping[str, Any]) -> dict[str, Any]:
    """An S3 event record as real S3 writes it (key encoded with quote_plus, versionId set)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
                "versionId": head.get("VersionId"),
                "sequencer": f"{time.time_ns():X}",
            },
        },
    }


def _put_hash(
    pipe: LocalPipeline, key: str, data: bytes, metadata: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Write a hash file and return the event S3 would send for this write."""
    s3 = pipe.s3()
    put = s3.put_object(Bucket=pipe.bucket, Key=key, Body=data, Metadata=dict(metadata or {}))
    head = s3.head_object(Bucket=pipe.bucket, Key=key, VersionId=put["VersionId"])
    return {"Records": [_record(pipe.bucket, key, head)]}


def _send(pipe: LocalPipeline, bodies: list[str]) -> None:
    sqs = pipe.sqs()
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        reply = sqs.send_message_batch(
            QueueUrl=pipe.queue_url,
            Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(chunk)],
        )
        assert not reply.get("Failed"), reply


def test_sandbox_faults_every_kind(
    make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """5xx, answers slower than the timeout, drops, 3004s and a 429 burst: everything is scanned."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    hashes = {f"faults/img-{i:03d}.jpg.bin": os.urandom(HASH) for i in range(100)}
    known = {k for n, k in enumerate(hashes) if n % 10 == 0}
    pipe.add_known(hashes[k] for k in known)
    # First every kind of fault, often, until each has happened; then rarer, so that an
    # item fails an attempt about 13 % of the time: giving up on one of the 100 within the
    # default 8 attempts is then a 1-in-1000 event at worst (three attempts failed in the
    # first phase, 0.6^3 × 0.13^5 × 100), not a flaky test. Slow answers outlast the
    # default API timeout (10 s).
    pipe.sandbox_faults(
        fail_rate=0.3, slow_rate=0.15, slow_s=11.0, drop_rate=0.15, item_3004_rate=0.15, seed=6
    )
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = list(hashes)
    _upload(pipe, hashes)

    def every_kind() -> bool:
        stats = pipe.sandbox_stats()
        by_status = stats["by_http_status"]
        return bool(
            by_status.get("500", 0) + by_status.get("503", 0) > 0
            and stats["dropped_total"] > 0
            and stats["items_by_code"].get("3004", 0) > 0
        )

    _wait(every_kind, 90, "a 5xx, a dropped connection and a 3004")
    pipe.sandbox_faults(fail_rate=0.05, slow_rate=0.03, drop_rate=0.03, item_3004_rate=0.03)
    _wait(lambda: results_count(pipe, keys) >= 50, 90, "half the results")
    # A 429 burst: the sandbox admits 2 requests a second, against a pool of 20, until it has
    # refused one (about a second; longer when the machine is busy and the pool sends less).
    pipe.sandbox_faults(rate=2)
    _wait(lambda: pipe.sandbox_stats()["by_http_status"].get("429", 0) > 0, 60, "a 429")
    pipe.sandbox_faults(rate=20)
    _wait(lambda: results_count(pipe, keys) >= 80, 90, "most results")
    pipe.sandbox_faults(fail_rate=0.0, slow_rate=0.0, drop_rate=0.0, item_3004_rate=0.0)
    fault_end = time.time()
    _wait_all(pipe, keys, len(known), timeout_s=120)

    stats = pipe.sandbox_stats()
    by_status = stats["by_http_status"]
    retried = {e.get("reason") for e in log_events(pipe, "batch_transient")}
    ledger = record_ledger(
        pipe,
        "sandbox 5xx, slow, drops, 3004 (30/15/15/15 %, then 5/3/3/3 %), 429 burst",
        keys,
        fault_end=fault_end,
        matches=known,
        notes=(
            f"{stats['requests_total']} requests: "
            + ", ".join(f"{n}×{code}" for code, n in by_status.items())
            + f", {stats['dropped_total']} dropped, "
            + f"{stats['items_by_code'].get('3004', 0)} items answered 3004"
        ),
    )
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["matches"] == ledger["quarantined"] == ledger["reports"] == len(known)
    assert ledger["dead_letters"] == {}
    assert by_status.get("500", 0) + by_status.get("503", 0) > 0 and by_status.get("429", 0) > 0
    assert stats["dropped_total"] > 0 and stats["items_by_code"].get("3004", 0) > 0
    assert {"server_error", "transport"} <= retried  # 5xx, and timeouts and drops
    verdicts = {pipe.result(k)["verdict"] for k in keys}  # type: ignore[index]
    assert verdicts == {"clean", "match"}


def test_wrong_key_then_fixed(make_pipeline: MakePipeline, record_ledger: RecordLedger) -> None:
    """A refused key opens the breaker and dead-letters nothing; fixed, everything is scanned."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    probe_s = Settings().breaker_probe_s  # the default, 30 s
    pipe.sandbox_faults(key="a-key-that-is-not-ours")
    hashes = {f"key/img-{i:02d}.jpg.bin": os.urandom(HASH) for i in range(30)}
    known = {k for n, k in enumerate(hashes) if n % 6 == 0}
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = list(hashes)
    _upload(pipe, hashes)

    client = _client(pipe)
    _wait(lambda: client.exists(pipe.keys.breaker) == 1, 30, "the breaker to open")
    opened = time.time()
    assert dead_letters(pipe) == []
    assert results_count(pipe, keys) == 0
    # Every upload is ingested and waits in the buffer (the last ingest tasks may still be
    # on their way when a probe is refused: the breaker opens on the first batch).
    _wait(lambda: client.hlen(pipe.keys.items) == len(keys), 30, "every item to wait")
    assert dead_letters(pipe) == [] and results_count(pipe, keys) == 0
    waiting = client.hlen(pipe.keys.items)

    pipe.sandbox_faults(key=SANDBOX_KEY)
    fault_end = time.time()
    _wait_all(pipe, keys, len(known), timeout_s=probe_s + 60)
    breaker_open = client.exists(pipe.keys.breaker)
    client.close()

    refused = pipe.sandbox_stats()["by_http_status"]["401"]
    ledger = record_ledger(
        pipe,
        "wrong subscription key, then fixed",
        keys,
        fault_end=fault_end,
        matches=known,
        notes=f"{refused} requests refused (401) while the breaker probed; {waiting} items waited",
    )
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["dead_letters"] == {}
    assert ledger["matches"] == ledger["quarantined"] == ledger["reports"] == len(known)
    assert waiting == len(keys) and breaker_open == 0
    # The requests in flight when the first refusal opened the breaker (one per pump at
    # most), then one probe every 30 s at most, not a storm of refused requests.
    assert refused <= Settings().match_pumps + (fault_end - opened) / probe_s


def test_repeated_and_reordered_events(
    make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """Each event thrice, v2's before v1's: one scan per upload, each version its own verdict."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    _silence_notifications(pipe)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    s3 = pipe.s3()

    # Five uploads (two known hits), each event delivered three times, in shuffled order.
    hashes = {f"thrice/img-{i}.jpg.bin": os.urandom(HASH) for i in range(5)}
    known = {"thrice/img-0.jpg.bin", "thrice/img-3.jpg.bin"}
    bodies: list[str] = []
    for key, data in hashes.items():
        s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=IMAGE + key.encode())
        bodies += [json.dumps(_put_hash(pipe, key, data))] * 3

    # Two versions of one key: v1 a known hit, v2 clean. Each hash file pins the content
    # version it stands for; v2's event arrives first.
    content_key, hash_key = "order/pic.jpg", "order/pic.jpg.bin"
    v1_hash, v2_hash = os.urandom(HASH), os.urandom(HASH)
    pipe.add_known([*(hashes[k] for k in known), v1_hash])
    c1 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v1 " + IMAGE)["VersionId"]
    e1 = _put_hash(pipe, hash_key, v1_hash, {"content-version-id": c1})
    c2 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v2 " + IMAGE)["VersionId"]
    e2 = _put_hash(pipe, hash_key, v2_hash, {"content-version-id": c2})

    random.Random(6).shuffle(bodies)
    _send(pipe, bodies)
    _send(pipe, [json.dumps(e2)])
    _send(pipe, [json.dumps(e1)])
    keys = [*hashes, hash_key, hash_key]
    _wait_all(pipe, list(hashes), len(known), timeout_s=60)
    _wait(lambda: len(log_events(pipe, "report_recorded")) >= 3, 60, "v1's report")
    wait_settled(pipe)

    ledger = record_ledger(
        pipe,
        "each event ×3; v2's event before v1's",
        keys,
        fault_end=None,
        expected={
            **{k: "match" if k in known else "clean" for k in hashes},
            hash_key: ["match", "clean"],
        },
        notes="20 events for 7 uploads (the same event 3 times; 2 versions of one key reversed)",
    )
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["matches"] == ledger["quarantined"] == ledger["reports"] == 3
    assert ledger["dead_letters"] == {}
    assert pipe.sandbox_stats()["items_total"] == 7  # one API item per upload
    assert len(log_events(pipe, "ingest_duplicate")) == 10

    # v1 (the match) is in quarantine and gone from the bucket; v2 is current, tagged clean.
    versions = s3.list_object_versions(Bucket=pipe.bucket, Prefix=content_key)["Versions"]
    assert [v["VersionId"] for v in versions if v["Key"] == content_key] == [c2]
    tags = s3.get_object_tagging(Bucket=pipe.bucket, Key=content_key, VersionId=c2)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"edgematch-status": "clean"}
    target = f"{pipe.bucket}/{content_key}"
    (copy,) = s3.list_object_versions(Bucket=QUARANTINE, Prefix=target)["Versions"]
    head = s3.head_object(Bucket=QUARANTINE, Key=target, VersionId=copy["VersionId"])
    assert head["Metadata"]["edgematch-source-version-id"] == c1
    (report,) = [r for r in pipe.reports() if r["content"]["key"] == content_key]
    assert report["content"]["version_id"] == c1
    verdicts = {(e["key"], e["verdict"]) for e in log_events(pipe, "result_recorded")}
    assert {(hash_key, "match"), (hash_key, "clean")} <= verdicts


def test_unpinned_versions_out_of_order_quarantine_the_scanned_version(
    make_pipeline: MakePipeline,
) -> None:
    """Without content-version-id, v1's match still quarantines v1, not the newer v2.

    v2 is written in a later second than v1's hash file (S3 keeps LastModified to the
    second), so the evidence is unambiguous; the same second is test_unpinned_versions.py's.
    """
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    _silence_notifications(pipe)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    s3 = pipe.s3()
    content_key, hash_key = "unpinned/pic.jpg", "unpinned/pic.jpg.bin"
    v1_hash = os.urandom(HASH)
    pipe.add_known([v1_hash])
    c1 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v1 " + IMAGE)["VersionId"]
    e1 = _put_hash(pipe, hash_key, v1_hash)
    next_second()
    c2 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v2 " + IMAGE)["VersionId"]
    e2 = _put_hash(pipe, hash_key, os.urandom(HASH))
    _send(pipe, [json.dumps(e2)])
    _send(pipe, [json.dumps(e1)])
    _wait(lambda: len(pipe.reports()) == 1, 60, "v1's report")
    wait_settled(pipe)
    (report,) = pipe.reports()
    versions = s3.list_object_versions(Bucket=pipe.bucket, Prefix=content_key)["Versions"]
    assert report["content"]["version_id"] == c1
    assert report["evidence"]["state"] == "moved"
    assert report["evidence"]["ambiguity"] is None
    assert [v["VersionId"] for v in versions if v["Key"] == content_key] == [c2]
    target = f"{pipe.bucket}/{content_key}"
    (copy,) = s3.list_object_versions(Bucket=QUARANTINE, Prefix=target)["Versions"]
    head = s3.head_object(Bucket=QUARANTINE, Key=target, VersionId=copy["VersionId"])
    assert head["Metadata"]["edgematch-source-version-id"] == c1


def _files_in(raw: bytes) -> int:
    """Hash files one queued ingest task (a kombu message on Redis) carries."""
    message = json.loads(raw)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    _args, kwargs, _embed = json.loads(body)
    return len(kwargs["events"]) if "events" in kwargs else 1


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_thousand_event_burst_against_small_high_water(
    make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """1000 events at once against a high-water mark of 50: backlog and intake memory bounded."""
    high_water, receive_batch, per_message = 50, 10, 4
    distinct = 250
    # EDGEMATCH_INTAKE_HIGH_WATER, the documented knob for bounding the backlog (and so
    # intake's and Redis's memory): here far below its default, so that the burst presses
    # against it.
    pipe = make_pipeline(
        rate=RATE,
        quarantine_bucket=QUARANTINE,
        settings={"EDGEMATCH_INTAKE_HIGH_WATER": str(high_water)},
    )
    assert Settings().intake_batch == receive_batch
    _silence_notifications(pipe)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    s3 = pipe.s3()
    hashes = {f"burst/img-{i:04d}.jpg.bin": os.urandom(HASH) for i in range(distinct)}
    known = {k for n, k in enumerate(hashes) if n % 25 == 0}
    pipe.add_known(hashes[k] for k in known)
    records: list[dict[str, Any]] = []
    for key, data in hashes.items():
        if key in known:
            s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=IMAGE)
        records += _put_hash(pipe, key, data)["Records"]
    # 1000 events: each object's event four times, shuffled, four records a message.
    burst = [records[n % len(records)] for n in range(1000)]
    random.Random(7).shuffle(burst)
    bodies = [
        json.dumps({"Records": burst[n : n + per_message]})
        for n in range(0, len(burst), per_message)
    ]

    intake_pid = pipe.processes.procs["intake"].pid
    time.sleep(1.0)
    rss_before = _rss_kib(intake_pid)
    client = _client(pipe)
    peak = {"backlog": 0, "rss_kib": rss_before}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            # Hash files, not tasks: an ingest_many task carries a receive's worth.
            reply = client.pipeline(transaction=True)
            reply.lrange(pipe.keys.queue("ingest"), 0, -1)
            for lane in pipe.keys.ready_lanes:
                reply.zcard(lane)
            tasks, *buffered = reply.execute()
            files = sum(_files_in(raw) for raw in tasks) + sum(int(n) for n in buffered)
            peak["backlog"] = max(peak["backlog"], files)
            peak["rss_kib"] = max(peak["rss_kib"], _rss_kib(intake_pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    sent_at = time.time()
    _send(pipe, bodies)
    try:
        _wait_all(pipe, list(hashes), len(known), timeout_s=150)
        _wait(lambda: len(log_events(pipe, "ingest_duplicate")) >= 1000 - distinct, 60, "repeats")
    finally:
        done.set()
        sampler.join(5)
    client.close()

    bound = high_water + receive_batch * per_message
    growth_kib = peak["rss_kib"] - rss_before
    ledger = record_ledger(
        pipe,
        f"1000-event burst, high water {high_water}",
        hashes,
        fault_end=sent_at,
        matches=known,
        notes=(
            f"{len(bodies)} messages of {per_message} events naming {distinct} objects; "
            f"peak backlog {peak['backlog']} (bound {bound}); "
            f"intake RSS {rss_before // 1024} MiB, peak +{growth_kib} KiB"
        ),
    )
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["matches"] == ledger["quarantined"] == ledger["reports"] == len(known)
    assert pipe.sandbox_stats()["items_total"] == distinct
    # Intake receives only below the mark, and at most one batch of messages at a time.
    assert peak["backlog"] <= bound
    assert peak["backlog"] >= high_water // 2  # the burst did press against the mark
    # Intake holds one receive batch at a time: 10 messages, at most 256 KiB each for real
    # SQS (2.5 MiB); everything else it allocates is the same for every message. The
    # bound adds room for allocator noise (measured: +1.5 MiB over a 64 MiB process).
    assert growth_kib < 8 * 1024
