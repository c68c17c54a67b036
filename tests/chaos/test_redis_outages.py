"""Chaos: Redis restarts and fails over under load, on the default settings.

The Procfile's real processes (intake, worker, beat) against a private Redis that is both
the broker and the store — the default single-Redis setup — run with AOF on, as
``deploy/redis/redis.conf`` tells operators to run it. While uploads flow through the
pipeline, Redis is restarted (or, behind Sentinel, its master fails over). Every upload
must get its verdict, none may be dead-lettered, and none may be scanned twice: the
sandbox counts the API items it answered.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from devtools.devstack import SentinelGroup
from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.infra.redisclient import redis_client
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, results_count

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

IMAGE = b"\xff\xd8 an image the platform stored "
QUARANTINE = "quarantine"
RecordLedger = Callable[..., dict[str, Any]]


def _hashes(prefix: str, count: int, *, known_every: int = 10) -> tuple[dict[str, bytes], set[str]]:
    hashes = {f"{prefix}/img-{i:04d}.jpg.bin": os.urandom(HASH) for i in range(count)}
    known = {key for i, key in enumerate(hashes) if i % known_every == 0}
    return hashes, known


def _upload(pipe: LocalPipeline, hashes: Mapping[str, bytes], every_s: float) -> None:
    s3 = pipe.s3()
    for key, data in hashes.items():
        s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=IMAGE + key.encode())
        s3.put_object(Bucket=pipe.bucket, Key=key, Body=data)
        time.sleep(every_s)


@pytest.fixture
def uploader() -> Iterator[Callable[..., threading.Thread]]:
    """Upload in a background thread while the test breaks things; joined at the end."""
    threads: list[threading.Thread] = []

    def start(pipe: LocalPipeline, hashes: Mapping[str, bytes], every_s: float) -> threading.Thread:
        thread = threading.Thread(target=_upload, args=(pipe, hashes, every_s), daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    for thread in threads:
        thread.join(120)


def _diagnose(pipe: LocalPipeline, keys: list[str]) -> str:
    client = redis_client(pipe.redis.url)
    try:
        ns = pipe.keys.ns
        letters = [json.loads(doc).get("reason") for doc in client.hvals(pipe.keys.dead_letters)]
        queues = {q: client.llen(pipe.keys.queue(q)) for q in ("ingest", "match", "results")}
        unacked = [
            json.loads(raw)[0].get("headers", {}).get("task")
            for raw in client.hvals(f"{ns}:kombu:unacked")
        ]
        # The worker's last warnings and errors: what it was doing when it stopped.
        complaints = [
            line[:300]
            for line in pipe.log_lines("worker")
            if '"level": "error"' in line or '"level": "warning"' in line
        ][-15:]
        return (
            f"{len(keys) - results_count(pipe, keys)} missing; buffer "
            f"{client.zcard(pipe.keys.ready)} waiting, {client.zcard(pipe.keys.leases)} leased; "
            f"queues {queues}; unacked {unacked}; {client.zcard(f'{ns}:journal:at')} journaled; "
            f"dead letters {letters}; the worker's last complaints: " + "\n".join(complaints)
        )
    finally:
        client.close()


def _wait_all(pipe: LocalPipeline, keys: list[str], matches: int, timeout_s: float) -> None:
    """Every upload has a result and every match its report, or say where things stand."""
    try:
        _wait(lambda: results_count(pipe, keys) == len(keys), timeout_s, f"{len(keys)} results")
        _wait(lambda: len(pipe.reports()) >= matches, 120, f"{matches} reports")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_diagnose(pipe, keys)}") from None


def _requests_in_flight(pipe: LocalPipeline) -> None:
    """Make the API answer slowly (2 s, within the client's 10 s timeout) so that requests
    are in flight when the fault lands: their answers must be settled, not sent again."""
    pipe.sandbox_faults(slow_rate=1.0, slow_s=2.0)
    before = pipe.sandbox_stats()["requests_total"]
    _wait(lambda: pipe.sandbox_stats()["requests_total"] > before, 30, "a request in flight")


def test_redis_restarted_under_load_on_the_defaults(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
) -> None:
    """Redis (broker and store, AOF on) is restarted while uploads flow: every upload gets
    its verdict, nothing is dead-lettered, and the API sees each hash once."""
    pipe = make_pipeline(rate=10.0, quarantine_bucket=QUARANTINE, redis_aof=True)
    hashes, known = _hashes("restart", 100)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = list(hashes)
    uploading = uploader(pipe, hashes, 0.1)
    _wait(lambda: results_count(pipe, keys) >= 20, 120, "the first results")

    _requests_in_flight(pipe)
    pipe.redis.stop()
    time.sleep(10.0)
    pipe.redis.start()
    fault_end = time.time()
    pipe.sandbox_faults(slow_rate=0.0)
    uploading.join(120)
    _wait_all(pipe, keys, len(known), timeout_s=300)

    ledger = record_ledger(
        pipe,
        "Redis restarted 10 s under load, defaults",
        keys,
        fault_end=fault_end,
        matches=known,
    )
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, ledger
    assert ledger["dead_letters"] == {}, ledger
    assert ledger["quarantined"] == ledger["reports"] == len(known), ledger
    assert pipe.sandbox_stats()["items_total"] == len(keys)  # none scanned twice


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A master, two replicas and three sentinels (deploy/README.md); the master is started
    by the pipeline it is handed to."""
    group = SentinelGroup()
    yield group
    group.close()


def test_sentinel_master_failed_over_under_load_on_the_defaults(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
    sentinel_group: SentinelGroup,
) -> None:
    """Behind Sentinel (broker and store, sentinel:// URLs), the master goes down while
    uploads flow and a replica is promoted: every upload gets its verdict, nothing is
    dead-lettered, and the API sees each hash once."""
    group = sentinel_group
    # The settings for Redis behind Sentinel (docs/configuration.md: EDGEMATCH_REDIS_URL,
    # EDGEMATCH_BROKER_URL, EDGEMATCH_SENTINEL_MASTER).
    sentinel = {
        "EDGEMATCH_REDIS_URL": group.url,
        "EDGEMATCH_BROKER_URL": group.url,
        "EDGEMATCH_SENTINEL_MASTER": group.name,
    }
    pipe = make_pipeline(
        rate=10.0, quarantine_bucket=QUARANTINE, settings=sentinel, redis_server=group.master
    )
    group.start()
    hashes, known = _hashes("failover", 100)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = list(hashes)
    uploading = uploader(pipe, hashes, 0.1)
    _wait(lambda: results_count(pipe, keys) >= 20, 120, "the first results")

    _requests_in_flight(pipe)
    old = group.master.port
    pipe.redis.stop()  # the master's host goes away; the sentinels notice after 5 s
    _wait(lambda: group.master_port() not in (None, old), 90, "a replica promoted")
    new = group.master_port()
    assert new is not None
    pipe.redis = group.node(new)  # where the test itself reads from now on
    fault_end = time.time()
    pipe.sandbox_faults(slow_rate=0.0)
    uploading.join(120)
    _wait_all(pipe, keys, len(known), timeout_s=300)

    ledger = record_ledger(
        pipe,
        "Sentinel master down, replica promoted, defaults",
        keys,
        fault_end=fault_end,
        matches=known,
    )
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, ledger
    assert ledger["dead_letters"] == {}, ledger
    assert ledger["quarantined"] == ledger["reports"] == len(known), ledger
    assert pipe.sandbox_stats()["items_total"] == len(keys)  # none scanned twice
