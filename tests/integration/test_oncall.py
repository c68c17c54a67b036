"""On-call tools on real parts: a private redis-server and in-process moto S3.

Replay against the real store and ingest's real idempotency keys; backfill against a
real (moto) listing and real Redis checkpoints; status from real Redis state.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from edgematch.config.settings import Settings
from edgematch.infra.heartbeat import Heartbeat, alive
from edgematch.ops import problems, screen, status
from edgematch.ops.backfill import Backfill, Checkpoint, Checkpoints, event_for
from edgematch.ops.listing import list_pages
from edgematch.pipeline import ingest as ingest_step
from edgematch.pipeline.backpressure import Backlog, Gate, backlog
from edgematch.pipeline.events import ObjectCreated
from edgematch.recovery.deadletters import Filter
from edgematch.recovery.replay import Replayer, identities
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
BUCKET = "uploads"
NS = "oncall"


@pytest.fixture
def rt(make_settings: MakeSettings, redis_client: redis.Redis) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(namespace=NS, intake_high_water=10))
    yield runtime
    runtime.close()


def _ingest(rt: Runtime, event: ObjectCreated) -> str:
    return ingest_step.ingest(
        rt,
        event,
        correlation_id="c",
        lane="live",
        publish=lambda r: None,
        start_pump=lambda p: None,
    )


def _event(key: str, **fields: Any) -> ObjectCreated:
    base: dict[str, Any] = {
        "bucket": BUCKET,
        "key": key,
        "version_id": None,
        "etag": None,
        "size": None,
        "event_time": None,
        "event_name": "ObjectCreated:Put",
        "sequencer": None,
        "source": "s3",
    }
    return ObjectCreated(**{**base, **fields})


# --- replay ---------------------------------------------------------------------------


def test_replay_forgets_exactly_what_ingest_remembered(rt: Runtime, s3: S3Client) -> None:
    """After a matcher give-up, forgetting the entry's identities lets ingest scan it again.

    The first event names the version by ETag only (as moto and MinIO do) and ingest
    remembers the version as read too: both spellings must be forgotten.
    """
    put = s3.put_object(Bucket=BUCKET, Key="a.jpg.bin", Body=os.urandom(HASH))
    etag = put["ETag"].strip('"')
    assert _ingest(rt, _event("a.jpg.bin", etag=etag)) == ingest_step.ADDED
    assert _ingest(rt, _event("a.jpg.bin", etag=etag)) == ingest_step.DUPLICATE
    version = put["VersionId"]
    pinned = _event("a.jpg.bin", version_id=version, etag=etag)
    assert _ingest(rt, pinned) == ingest_step.DUPLICATE
    for identity in identities(BUCKET, "a.jpg.bin", version, etag):
        rt.buffer.forget(identity)
    assert _ingest(rt, pinned) == ingest_step.ADDED
    assert _ingest(rt, _event("a.jpg.bin", etag=etag)) == ingest_step.DUPLICATE


def _item_letter(rt: Runtime, key: str) -> str:
    return rt.dead_letters.add(
        task="edgematch.match",
        queue=f"{NS}.match",
        reason="retries_exhausted",
        message="HTTP 503",
        args={"bucket": BUCKET, "key": key, "version_id": "v1", "etag": "e1"},
        attempts=3,
        correlation_id="corr-" + key,
        bucket=BUCKET,
        key=key,
        dedupe_id=f"item:{key}",
    ).id


class Sent:
    """A fake broker: the tasks enqueued, optionally failing."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, Any], str]] = []
        self.fail = False

    def __call__(self, name: str, kwargs: dict[str, Any], task_id: str) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.tasks.append((name, kwargs, task_id))


def test_replay_twice_rescans_once(rt: Runtime) -> None:
    """A fresh replay forgets and enqueues; a second one while under way only re-enqueues."""
    entry_id = _item_letter(rt, "b.bin")
    sent = Sent()
    forgotten: list[str] = []
    replayer = Replayer(
        rt.dead_letters, enqueue=sent, forget=forgotten.append, accepts=lambda name: True
    )
    entry = rt.dead_letters.get(entry_id)
    assert entry is not None
    first = replayer.replay([entry])
    assert first.replayed == [entry_id] and not first.again
    assert forgotten == list(identities(BUCKET, "b.bin", "v1", "e1"))
    name, kwargs, task_id = sent.tasks[0]
    assert name == "edgematch.ingest" and kwargs["replayed_from"] == entry_id
    assert kwargs["lane"] == "replay" and kwargs["correlation_id"] == "corr-b.bin"
    entry = rt.dead_letters.get(entry_id)
    assert entry is not None and (entry.state, entry.replay_task_id) == ("replaying", task_id)

    second = replayer.replay([entry])
    assert second.again == [entry_id] and not second.replayed
    assert len(forgotten) == 2  # nothing more forgotten: the first ingest may already run
    assert len(sent.tasks) == 2
    assert rt.dead_letters.resolve(entry_id) == "removed"


def test_replay_skips_what_cannot_be_replayed(rt: Runtime) -> None:
    """Malformed SQS messages and tasks without replayed_from are skipped with a reason."""
    sqs_id = rt.dead_letters.add(
        task="edgematch.intake", queue="sqs", reason="malformed_event", message="not JSON",
        args={"message_id": "m1", "body_excerpt": "{"}, dedupe_id="sqs:m1",
    ).id  # fmt: skip
    other = rt.dead_letters.add(
        task="edgematch.report", queue=f"{NS}.reports", reason="unexpected", message="x",
        args={"result": {}},
    ).id  # fmt: skip
    sent = Sent()
    replayer = Replayer(
        rt.dead_letters,
        enqueue=sent,
        forget=lambda i: None,
        accepts=lambda name: name != "edgematch.report",
    )
    report = replayer.replay(rt.dead_letters.list())
    assert set(report.skipped) == {sqs_id, other}
    assert "replayed_from" in report.skipped[other]
    assert not sent.tasks


def test_enqueue_failure_leaves_the_entry_failed(rt: Runtime) -> None:
    """A broker that refuses the task stops the run and leaves the entry as it was."""
    entry_id = _item_letter(rt, "c.bin")
    sent = Sent()
    sent.fail = True
    replayer = Replayer(
        rt.dead_letters, enqueue=sent, forget=lambda i: None, accepts=lambda n: True
    )
    report = replayer.replay(rt.dead_letters.list())
    assert report.error is not None and "broker down" in report.error
    entry = rt.dead_letters.get(entry_id)
    assert entry is not None and entry.state == "failed"


def test_replay_is_paced(rt: Runtime) -> None:
    """--rate N spaces enqueues 1/N s apart."""
    for n in range(4):
        _item_letter(rt, f"r{n}.bin")
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    replayer = Replayer(
        rt.dead_letters, enqueue=Sent(), forget=lambda i: None, accepts=lambda n: True,
        rate_per_s=2.0, sleep=sleep, clock=lambda: now[0],
    )  # fmt: skip
    replayer.replay(rt.dead_letters.list())
    assert slept == [0.5, 0.5, 0.5]


def test_backlog_counts_queues_and_buffer(rt: Runtime) -> None:
    """The shared backlog reads the ingest and background queues and the buffer; a live
    ingest task weighs the ten hash files it may carry."""
    keys = rt.buffer.keys
    rt.redis.rpush(keys.queue("ingest"), "t1", "t2")
    rt.redis.rpush(keys.queue("background"), "t3")
    current = backlog(rt)
    assert (current.ingest, current.background, current.buffered) == (2, 1, 0)
    assert current.of("live") == 20 and current.of("backfill") == 21


# --- backfill ---------------------------------------------------------------------------


def _fill(s3: S3Client, count: int) -> list[str]:
    keys = [f"old/{n:03d}.jpg.bin" for n in range(count)]
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"h" * HASH)
        s3.put_object(Bucket=BUCKET, Key=key.removesuffix(".bin"), Body=b"image")
    s3.put_object(Bucket=BUCKET, Key="elsewhere/x.bin", Body=b"h")
    return keys


def test_listing_streams_pages_in_key_order(s3: S3Client) -> None:
    """The listing comes in pages of the asked size, resumable after a key."""
    keys = _fill(s3, 5)
    pages = list(list_pages(s3, BUCKET, "old/", page_size=3))
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    listed = [obj.key for page in pages for obj in page]
    assert listed == sorted(listed) and set(keys) <= set(listed)
    after = [o.key for p in list_pages(s3, BUCKET, "old/", start_after=keys[3]) for o in p]
    assert keys[4] in after and keys[3] not in after


def test_interrupted_backfill_resumes_from_redis(rt: Runtime, s3: S3Client) -> None:
    """A backfill stopped after 2 pages resumes from its Redis checkpoint: each key once."""
    keys = _fill(s3, 12)
    checkpoints = Checkpoints(rt.redis, NS)
    enqueued: list[str] = []

    def pages(after: str | None) -> Any:
        return list_pages(s3, BUCKET, "old/", start_after=after, page_size=5)

    def run(max_pages: int | None) -> Checkpoint:
        cp = checkpoints.load(BUCKET, "old/") or Checkpoint(bucket=BUCKET, prefix="old/")
        return Backfill(
            cp, checkpoints=checkpoints, pages=pages, enqueue=lambda e, c: enqueued.append(e.key),
            suffix=".bin",
        ).run(max_pages=max_pages)  # fmt: skip

    first = run(2)
    assert first.finished_at is None and first.listed == 10 and len(enqueued) == 5
    saved = checkpoints.load(BUCKET, "old/")
    assert saved is not None and saved.after == first.after and saved.enqueued == 5
    assert rt.redis.ttl(rt.buffer.keys.backfill(BUCKET, "old/")) > 0
    final = run(None)
    assert sorted(enqueued) == keys and len(enqueued) == len(set(enqueued))
    assert final.finished_at is not None and final.enqueued == 12 and final.skipped == 12


def test_backfill_waits_for_room(rt: Runtime, s3: S3Client) -> None:
    """At the mark the backfill pauses; stopped while paused, nothing more is enqueued."""
    _fill(s3, 3)
    rt.redis.rpush(rt.buffer.keys.queue("background"), *[f"t{n}" for n in range(8)])
    enqueued: list[str] = []
    stop_after_pause: list[int] = []
    cp = Checkpoint(bucket=BUCKET, prefix="old/")
    stop = threading.Event()

    def paused(current: Backlog, mark: int) -> None:
        stop_after_pause.append(current.total)
        stop.set()

    gate = Gate(
        lambda: backlog(rt), lane="backfill", high_water=rt.settings.intake_high_water,
        stop=stop, on_pause=paused,
    )  # fmt: skip
    out = Backfill(
        cp, checkpoints=Checkpoints(rt.redis, NS),
        pages=lambda after: list_pages(s3, BUCKET, "old/", start_after=after),
        enqueue=lambda e, c: enqueued.append(e.key), suffix=".bin", gate=gate, stop=stop,
    ).run()  # fmt: skip
    assert stop_after_pause == [8] and enqueued == []
    assert out.finished_at is None and out.enqueued == 0


def test_backfill_event_reaches_ingest(rt: Runtime, s3: S3Client) -> None:
    """A backfill event for an object already scanned is a duplicate: no second scan."""
    put = s3.put_object(Bucket=BUCKET, Key="seen.bin", Body=os.urandom(HASH))
    etag = put["ETag"].strip('"')
    assert _ingest(rt, _event("seen.bin", version_id=put["VersionId"], etag=etag)) == "added"
    (listed,) = next(iter(list_pages(s3, BUCKET, "seen")))
    assert _ingest(rt, event_for(BUCKET, listed)) == ingest_step.DUPLICATE


# --- status and heartbeats --------------------------------------------------------------


def test_heartbeats_list_live_processes(rt: Runtime) -> None:
    """A started heartbeat is listed with its role and age; a stopped one is gone."""
    beat = Heartbeat(rt.redis, NS, "worker", queues=[f"{NS}.ingest"], interval_s=0.05).start()
    time.sleep(0.2)
    (seen,) = alive(rt.redis, NS)
    assert (seen.role, seen.pid, seen.queues) == ("worker", os.getpid(), (f"{NS}.ingest",))
    assert seen.age_s is not None and 0 <= seen.age_s < 1
    beat.stop()
    assert alive(rt.redis, NS) == []


def test_status_snapshot_and_problems(rt: Runtime) -> None:
    """Status reads depths, breaker, dead letters and processes, and names what is wrong."""
    keys = rt.buffer.keys
    rt.redis.rpush(keys.queue("results"), "t1", "t2", "t3")
    rt.buffer.open_breaker(30)
    rt.dead_letters.add(
        task="edgematch.ingest", queue=f"{NS}.ingest", reason="poison", message="m", args={}
    )
    rt.dead_letters.add(
        task="edgematch.match", queue=f"{NS}.match", reason="item_rejected", message="m", args={}
    )
    snap = status.collect(rt)
    assert snap.queues["results"] == 3 and snap.queues["ingest"] == 0
    assert snap.breaker_open and 25 < snap.breaker_probe_in_s <= 30
    assert snap.dead_letters["by_reason"] == {"poison": 1, "item_rejected": 1}
    assert snap.rate_limit == 5 and snap.rate_used == 0
    whats = " | ".join(p.what for p in problems.assess(snap))
    assert "no worker process" in whats and "no beat process" in whats
    assert "subscription key" in whats and "poison 1" in whats
    assert "item_rejected" not in whats

    beats = [
        Heartbeat(rt.redis, NS, role, pid=pid).start()
        for pid, role in enumerate(("worker", "intake", "beat"), start=1)
    ]
    rt.buffer.close_breaker()
    rt.dead_letters.purge(Filter(reason="poison"))
    try:
        snap = status.collect(rt)
        assert {w["role"] for w in snap.workers} == {"worker", "intake", "beat"}
        assert problems.assess(snap) == []
        assert "healthy" in screen.render(snap, [])
    finally:
        for beat in beats:
            beat.stop()
