"""Chaos: processes die and Redis goes away mid-run; nothing is lost, nothing acted on twice.

Each test runs the Procfile's real processes against a private redis-server, moto's
server and the sandbox, kills or stops something while work is in flight, and ends with
the scenario's ledger (tests/chaos/conftest.py): every upload has a result, no matched
content version has two quarantine copies or two reports.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
import redis

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, log_events, results_count, wait_settled

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

IMAGE = b"\xff\xd8 an image the platform stored "
QUARANTINE = "quarantine"
RecordLedger = Callable[..., dict[str, Any]]


def _check_effects(ledger: Mapping[str, Any], matches: int) -> None:
    """Every match quarantined once and reported once, and nothing dead-lettered.

    A step lock the fault stranded (its worker killed holding it, or its release lost in a
    Redis outage) runs out within EDGEMATCH_LOCK_TTL_S, and the step's retry waits for it.
    """
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
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


def _wait_all(pipe: LocalPipeline, keys: list[str], matches: int, timeout_s: float) -> None:
    """Every upload has a result and every match its report."""
    client = redis.Redis.from_url(pipe.redis.url)
    try:
        _wait(
            lambda: results_count(pipe, keys) == len(keys),
            timeout_s,
            f"{len(keys)} results",
        )
    except AssertionError as exc:
        # Say where the missing ones are, so an intermittent failure can be diagnosed.
        missing = len(keys) - results_count(pipe, keys)
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


def _children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``: a prefork worker's pool."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (name) state ppid …": the name may hold spaces and parentheses.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.append(int(entry.name))
    return sorted(found)


#: The worker processes the scenario kills, in order: a prefork child (its main process
#: sees it die and requeues its task), the main process alone (the consumer holding the
#: tasks; its children die with it), and the whole node (main process and children).
KILLS = ("child", "main process", "node")


# Alone: the verdicts' bound (60 s after the last kill) is on throughput.
@pytest.mark.alone
def test_worker_processes_sigkilled_three_times(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
    broker: str,
) -> None:
    """Three SIGKILLs of worker processes during 200 uploads, on the default settings: every
    upload gets the right verdict within 60 s of the last kill (30 s on RabbitMQ, which
    requeues a dead consumer's deliveries at once), no match is quarantined or reported
    twice, and no abandoned delivery is left for the broker to run again."""
    count = 200
    bound_s = 30 if broker == "rabbitmq" else 60
    # EDGEMATCH_RATE_LIMIT (docs/configuration.md: your subscription's quota): 20 a second.
    pipe = make_pipeline(rate=20.0, quarantine_bucket=QUARANTINE, broker=broker)
    hashes, known = _hashes("kill", count)
    pipe.add_known(hashes[k] for k in known)
    # Half the requests take a second: a kill finds batches in flight.
    pipe.sandbox_faults(slow_rate=0.5, slow_s=1.0)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    # Paced, so that uploads keep arriving through the kills: a pipeline that has scanned
    # everything takes no batch left to be killed with.
    uploading = uploader(pipe, hashes, 0.1)

    client = redis.Redis.from_url(pipe.redis.url)

    def leases() -> set[str]:
        return {str(batch_id) for batch_id in client.zrange(pipe.keys.leases, 0, -1)}

    killed: list[str] = []
    seen: set[str] = set()
    last_kill = time.monotonic()
    for kind in KILLS:
        # Some seconds after the last kill, so that the kills spread over the run, a batch
        # taken since (a dead worker's lease stays in the set until it runs out).
        time.sleep(max(0.0, last_kill + 5.0 - time.monotonic()))
        seen |= leases()
        _wait(lambda: bool(leases() - seen), 60, "a batch in flight")  # noqa: B023
        worker = pipe.processes.procs["worker"]
        if kind == "child":
            _wait(lambda: len(_children(worker.pid)) == 2, 30, "the pool")  # noqa: B023
            os.kill(_children(worker.pid)[0], signal.SIGKILL)
        elif kind == "main process":
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
            del pipe.processes.procs["worker"]
        else:
            pipe.processes.kill("worker")
        last_kill = time.monotonic()
        fault_end = time.time()
        killed.append(kind)
        if kind != "child":
            pipe.start_processes("worker", worker_args=["--concurrency", "2"])
    pipe.sandbox_faults(slow_rate=0.0)
    uploading.join(120)
    _wait_all(pipe, list(hashes), len(known), timeout_s=120)
    reported_s = time.time() - fault_end
    reclaimed = int(client.hget(pipe.keys.stats, "items_reclaimed") or 0)
    # Every delivery was acknowledged or handed back: none waits for the broker's hour.
    if broker == "redis":
        _wait(lambda: client.hlen(f"{pipe.keys.ns}:kombu:unacked") == 0, 30, "no delivery held")
    else:
        wait_settled(pipe, 30)
    client.close()
    handed = log_events(pipe, "deliveries_handed_back")

    ledger = record_ledger(
        pipe,
        "worker SIGKILL ×3: a child, a main process, a node",
        hashes,
        fault_end=fault_end,
        matches=known,
        notes=(
            f"kills: {', '.join(killed)}; {reclaimed} items reclaimed from dead leases; "
            f"{sum(e['restored'] for e in handed)} deliveries handed back, "
            f"{sum(e['dropped'] for e in handed)} dropped (task done); "
            f"every report {reported_s:.0f} s after the last kill"
        ),
    )
    assert killed == list(KILLS)
    _check_effects(ledger, len(known))
    assert ledger["wrong"] == 0, ledger
    assert ledger["verdicts_s"] is not None and ledger["verdicts_s"] <= bound_s, ledger
    # Polled, and the 1 s of _wait_all's settling.
    assert reported_s <= bound_s + 2.0, reported_s


def _stable(read: Callable[[], int], *, for_s: float = 1.0) -> int:
    """``read()`` once it has not changed for ``for_s`` seconds."""
    value, since = read(), time.monotonic()
    while time.monotonic() - since < for_s:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    return value


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
    # EDGEMATCH_RATE_LIMIT (docs/configuration.md: your subscription's quota): 20 a second.
    pipe = make_pipeline(rate=20.0, quarantine_bucket=QUARANTINE)
    # Messages a dead intake held come back after the queue's visibility timeout: SQS's
    # default, 30 s.
    sqs = pipe.sqs()
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
        # A receive may return fewer than the 10 sent (moto's, like SQS's): intake holds
        # what it got once the count stops growing.
        _wait(
            lambda: _sqs_attribute(pipe, "ApproximateNumberOfMessagesNotVisible") >= 1,
            20,
            "intake to hold a batch",
        )
        held = _stable(lambda: _sqs_attribute(pipe, "ApproximateNumberOfMessagesNotVisible"))
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
        matches=known,
        notes=f"{held} SQS messages received and not deleted when intake was killed",
    )
    assert 1 <= held <= 10
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["quarantined"] == ledger["reports"] == len(known)
    assert ledger["dead_letters"] == {}
    assert pipe.sandbox_stats()["items_total"] == len(keys)  # none scanned twice


# Alone: 100 uploads through a restart within the wait's two minutes is a throughput bound.
@pytest.mark.alone
def test_redis_restarted_mid_run(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],
) -> None:
    """Redis stops mid-run and comes back with its AOF: every process reconnects on its own."""
    # EDGEMATCH_RATE_LIMIT (docs/configuration.md: your subscription's quota): 20 a second;
    # Redis with AOF on, as deploy/README.md tells operators to run it.
    pipe = make_pipeline(rate=20.0, quarantine_bucket=QUARANTINE, redis_aof=True)
    hashes, known = _hashes("redis-restart", 100)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    uploading = uploader(pipe, hashes)
    keys = list(hashes)
    _wait(lambda: results_count(pipe, keys) >= 20, 60, "the first results")

    pipe.redis.stop()
    time.sleep(4.0)
    pipe.redis.start()
    fault_end = time.time()
    uploading.join(120)
    _wait_all(pipe, keys, len(known), timeout_s=120)

    ledger = record_ledger(
        pipe,
        "broker stopped and restarted mid-run",
        keys,
        fault_end=fault_end,
        matches=known,
        notes="Redis (the broker) stopped 4 s, restarted with its AOF",
    )
    _check_effects(ledger, len(known))
    for name in ("intake", "worker", "beat"):
        assert pipe.processes.procs[name].poll() is None, f"{name} exited"
