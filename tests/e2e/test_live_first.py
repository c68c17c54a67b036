"""Live uploads first: a backfill backlog saturating the quota does not hold a live upload back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis

from devtools import rabbitserver
from devtools.localstack import LocalPipeline, wait_until
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

RATE = 2.0
LINGER_S = 0.25


def test_live_upload_overtakes_a_backfill_backlog(make_pipeline: MakePipeline) -> None:
    """With hundreds of backfill hashes waiting, a live upload is sent within one request slot."""
    pipe = make_pipeline(rate=RATE)
    s3 = pipe.s3()
    s3.create_bucket(Bucket="archive")  # no notifications: only a backfill finds these
    backlog = 200
    for i in range(backlog):  # 200 hashes at 2 requests/s: a 20-second backlog
        s3.put_object(Bucket="archive", Key=f"old/{i:04d}.bin", Body=os.urandom(HASH))
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "3"])
    backfill = subprocess.Popen(
        [sys.executable, "-m", "edgematch.ops.cli", "backfill", "s3://archive/old/"],
        env=pipe.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    client = redis.Redis.from_url(pipe.redis.url)
    deadline = time.monotonic() + 60
    while client.zcard(pipe.keys.ready_lane("backfill")) < 50 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.zcard(pipe.keys.ready_lane("backfill")) >= 50, "no backlog formed"

    lives = [f"live/{n}.bin" for n in range(3)]
    for key in lives:
        pipe.upload(key, os.urandom(HASH))
        time.sleep(0.7)
    results = pipe.wait_for_results(lives, timeout_s=60)
    still_waiting = client.zcard(pipe.keys.ready_lane("backfill"))
    client.close()

    assert set(results) == set(lives)
    assert still_waiting > 0, "the backlog was gone before the live uploads: no contention"
    assert backfill.wait(60) == 0
    old_keys = [f"old/{i:04d}.bin" for i in range(backlog)]
    olds = pipe.wait_for_results(old_keys, timeout_s=150, bucket="archive")
    assert len(olds) == backlog
    old_waits = sorted(d["scanned_at"] - d["enqueued_at"] for d in olds.values())
    median_old = old_waits[len(old_waits) // 2]
    for doc in results.values():
        waited = doc["scanned_at"] - doc["enqueued_at"]
        # Buffered to answered: one slot (1/R), the request, and a busy machine's noise;
        # a backfill item waits its turn in a queue of hundreds.
        assert waited <= LINGER_S + 1 / RATE + 1.5, f"live item waited {waited:.2f} s"
        assert waited < median_old / 3, f"live {waited:.2f} s vs backfill {median_old:.2f} s"


def _queue_ingest(pipe: LocalPipeline, *, backfill: int, live: int) -> None:
    """Queue ``backfill`` backfill ingest tasks, then ``live`` live ones (one upload each),
    and start a one-process worker serving both queues."""
    s3 = pipe.s3()
    s3.create_bucket(Bucket="archive")  # no notifications: only a backfill finds these
    for i in range(backfill):
        s3.put_object(Bucket="archive", Key=f"old/{i:04d}.bin", Body=os.urandom(HASH))
    subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", "backfill", "s3://archive/old/"],
        env=pipe.env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    client = redis.Redis.from_url(pipe.redis.url)
    assert client.llen(pipe.keys.queue("background")) == backfill
    pipe.start_processes("intake")
    for n in range(1, live + 1):  # one task each: the next upload once this one is queued
        pipe.upload(f"live/{n}.bin", os.urandom(HASH))
        wait_until(lambda: client.llen(pipe.keys.queue("ingest")) == n, 60, "intake")  # noqa: B023
    client.close()
    pipe.start_processes(
        "worker", worker_args=["--concurrency", "1", "--queues", "ingest,background"]
    )


def _ingested_lanes(pipe: LocalPipeline) -> list[str]:
    """The lane of each hash the worker buffered, in order."""
    return [
        json.loads(line)["lane"]
        for line in pipe.log_lines("worker")
        if '"event": "ingest_buffered"' in line
    ]


def test_a_worker_takes_live_ingest_before_queued_backfill_ingest(
    make_pipeline: MakePipeline,
) -> None:
    """Thirty backfill ingest tasks queued, then two live uploads' tasks: a one-process
    worker serving both queues runs both live ones first (kombu's default round robin
    would alternate, taking a backfill task among the first two)."""
    pipe = make_pipeline(rate=10.0)
    _queue_ingest(pipe, backfill=30, live=2)
    wait_until(lambda: len(_ingested_lanes(pipe)) >= 3, 60, "three hashes ingested")
    assert _ingested_lanes(pipe)[:3] == ["live", "live", "backfill"]


def test_backfill_ingest_keeps_its_share_while_live_ingest_is_queued(
    make_pipeline: MakePipeline,
) -> None:
    """Twelve live ingest tasks and thirty backfill ones queued: a one-process worker takes
    a backfill task on its tenth fetch (EDGEMATCH_BACKGROUND_MIN_SHARE 0.1), not only once
    live ingest has run dry. Strict order would starve backfills for as long as live
    uploads keep coming."""
    pipe = make_pipeline(rate=10.0)
    live = 12
    _queue_ingest(pipe, backfill=30, live=live)
    wait_until(lambda: _ingested_lanes(pipe).count("live") == live, 60, "every live hash ingested")
    seen = _ingested_lanes(pipe)
    last_live = len(seen) - 1 - seen[::-1].index("live")
    # One or two of the first twelve-odd fetches were background's (a fetch or two
    # at start-up find nothing yet); live came first in all the others.
    assert seen[:5] == ["live"] * 5, seen
    assert 1 <= seen[:last_live].count("backfill") <= 2, seen


def test_on_rabbitmq_a_worker_runs_queued_live_ingest_before_held_backfills(
    make_pipeline: MakePipeline,
) -> None:
    """RabbitMQ pushes: a two-process worker serving ingest and background holds backfill
    tasks beside live ones, and a live task is sent only once the one before it is
    acknowledged. Thirty backfill ingest tasks queued, then twelve live ones: the live ones
    all run before any backfill beyond background's minimum share (one take in ten, and the
    one or two a process may take at start-up before live ones arrive). A live consumer
    holding one task per process, as before, alternates: backfill, live, backfill, live."""
    pipe = make_pipeline(rate=10.0, broker="rabbitmq")
    assert pipe.broker_url is not None
    node = rabbitserver.serving(pipe.broker_url)
    vhost = pipe.broker_url.rsplit("/", 1)[-1]
    s3 = pipe.s3()
    s3.create_bucket(Bucket="archive")  # no notifications: only a backfill finds these
    backfill, live = 30, 12
    for i in range(backfill):
        s3.put_object(Bucket="archive", Key=f"old/{i:04d}.bin", Body=os.urandom(HASH))
    subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", "backfill", "s3://archive/old/"],
        env=pipe.env(),
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert node.ready(pipe.broker_url, pipe.keys.queue("background")) == backfill
    pipe.start_processes("intake")
    ingest = pipe.keys.queue("ingest")
    for n in range(1, live + 1):  # one task each: the next upload once this one is queued
        pipe.upload(f"live/{n}.bin", os.urandom(HASH))
        wait_until(lambda: node.ready(node.url_of(vhost), ingest) == n, 60, "intake")  # noqa: B023
    pipe.start_processes(
        "worker", worker_args=["--concurrency", "2", "--queues", "ingest,background"]
    )
    wait_until(lambda: _ingested_lanes(pipe).count("live") == live, 90, "every live hash ingested")
    seen = _ingested_lanes(pipe)
    last_live = len(seen) - 1 - seen[::-1].index("live")
    # Up to two at start-up (both processes free before the first live task arrives) and
    # one minimum-share take among the first dozen; live in all the others.
    assert seen[:last_live].count("backfill") <= 3, seen
