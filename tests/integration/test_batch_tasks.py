"""The batch tasks (``ingest_many``, ``record_results``) on a private redis-server and
in-process moto S3: what they do themselves, and what they hand to single-item tasks.

The tasks run in this process (Celery's ``apply``); what they would enqueue is recorded
in place of the broker, since the hand-over is what is under test here (the real worker
runs them end to end in tests/e2e).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from edgematch import runtime as runtime_module
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.errors import ServerError
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.ingest import event_to_args
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import CLEAN, Result
from edgematch.recovery.poison import Deliveries, counter_ttl_s
from edgematch.runtime import Runtime
from edgematch.tasks import steps
from edgematch.tasks.enqueue import enqueue_events
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
BUCKET = "uploads"
NS = "batchtest"
Sent = list[tuple[str, dict[str, Any], float]]


@pytest.fixture
def rt(
    make_settings: MakeSettings,
    redis_client: redis.Redis,
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Runtime]:
    runtime = Runtime(make_settings(namespace=NS))
    monkeypatch.setattr(runtime_module, "_current", runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def sent(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """What the tasks enqueue through the runtime's publisher, in order: (task name, kwargs,
    countdown)."""
    record: Sent = []

    def send(task: Any, kwargs: dict[str, Any], *, countdown: float = 0.0) -> None:
        record.append((task.name, kwargs, countdown))

    monkeypatch.setattr(rt.publisher, "send", send)
    return record


def _upload(s3: S3Client, key: str) -> dict[str, Any]:
    s3.put_object(Bucket=BUCKET, Key=key.removesuffix(".bin"), Body=b"image")
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(HASH))
    obj = ObjectCreated(
        bucket=BUCKET,
        key=key,
        version_id=put.get("VersionId"),
        etag=put["ETag"].strip('"'),
        size=HASH,
        event_time=None,
        event_name="ObjectCreated:Put",
        sequencer=None,
        source="s3",
    )
    return {"event": event_to_args(obj), "correlation_id": f"corr-{key}"}


def _buffered(rt: Runtime) -> list[Item]:
    """The items the buffer holds, as stored in Redis."""
    return [Item.from_json(raw) for raw in rt.redis.hvals(rt.buffer.keys.items)]


def _buffered_keys(rt: Runtime) -> list[str]:
    return sorted(item.key for item in _buffered(rt))


def test_ingest_many_buffers_every_event_of_the_batch(
    rt: Runtime, s3: S3Client, sent: Sent
) -> None:
    """Ten events in one task: ten items in the buffer, each with its own correlation id."""
    events = [_upload(s3, f"{n}.jpg.bin") for n in range(10)]
    outcome = steps.ingest_many.apply(kwargs={"events": events}, task_id="batch-1").get()
    assert outcome == {"added": 10}
    items = _buffered(rt)
    assert sorted(i.key for i in items) == sorted(f"{n}.jpg.bin" for n in range(10))
    assert {i.correlation_id for i in items} == {f"corr-{n}.jpg.bin" for n in range(10)}
    assert [name for name, _, _ in sent if name != "edgematch.match"] == []
    # Delivered again (as after a lost acknowledgement): nothing is buffered twice.
    again = steps.ingest_many.apply(kwargs={"events": events}, task_id="batch-2").get()
    assert again == {"duplicate": 10}


def _fail_read(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, failing_key: str, error: Exception
) -> None:
    """Reading the hash file ``failing_key`` raises ``error``; the others read as usual."""
    read = rt.store.read_hash

    def read_or_fail(bucket: str, key: str, **kw: Any) -> Any:
        if key == failing_key:
            raise error
        return read(bucket, key, **kw)

    monkeypatch.setattr(rt.store, "read_hash", read_or_fail)


def test_a_transient_failure_hands_that_event_alone_to_a_retrying_ingest_task(
    rt: Runtime, s3: S3Client, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One read throttled: the others are buffered, that one gets its own delayed task."""
    events = [_upload(s3, f"{n}.jpg.bin") for n in range(3)]
    _fail_read(rt, monkeypatch, "1.jpg.bin", ServerError("SlowDown: reduce your request rate"))
    outcome = steps.ingest_many.apply(kwargs={"events": events}, task_id="batch-1").get()
    assert outcome == {"added": 2, "retry": 1}
    assert _buffered_keys(rt) == ["0.jpg.bin", "2.jpg.bin"]
    (handed,) = [(n, kw, c) for n, kw, c in sent if n == "edgematch.ingest"]
    assert handed[1] == {**events[1], "lane": "live"}
    assert handed[2] > 0
    assert rt.dead_letters.list() == []


def test_a_bug_in_one_event_hands_it_over_at_once(
    rt: Runtime, s3: S3Client, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error: its own ingest task runs it at once (and dead-letters it there)."""
    events = [_upload(s3, f"{n}.jpg.bin") for n in range(2)]
    _fail_read(rt, monkeypatch, "0.jpg.bin", ValueError("a bug"))
    outcome = steps.ingest_many.apply(kwargs={"events": events}, task_id="batch-1").get()
    assert outcome == {"added": 1, "handed_over": 1}
    handed = [(kw["event"]["key"], c) for n, kw, c in sent if n == "edgematch.ingest"]
    assert handed == [("0.jpg.bin", 0.0)]


def test_a_redelivered_batch_is_split_into_single_tasks(
    rt: Runtime, s3: S3Client, sent: Sent
) -> None:
    """A batch whose worker died is not run again as a whole: one task per event instead."""
    events = [_upload(s3, f"{n}.jpg.bin") for n in range(3)]
    s = rt.settings
    deliveries = Deliveries(
        rt.redis, s.namespace, ttl_s=counter_ttl_s(s.visibility_timeout_s, s.max_deliveries)
    )
    deliveries.begin("batch-1", 0)  # the start that died
    outcome = steps.ingest_many.apply(kwargs={"events": events}, task_id="batch-1").get()
    assert outcome == "split"
    assert _buffered_keys(rt) == []
    singles = [kw for name, kw, _ in sent if name == "edgematch.ingest"]
    assert singles == [{**e, "lane": "live"} for e in events]
    assert not rt.redis.exists(rt.buffer.keys.deliveries("batch-1"))


def _result(n: int, lane: str = "live", content_etag: str | None = None) -> dict[str, Any]:
    """The clean result of hash file ``<n>.jpg.bin``, for the content with ``content_etag``
    (as ingest noted it)."""
    item = Item.new(
        bucket=BUCKET,
        key=f"{n}.jpg.bin",
        version_id=None,
        etag=f"etag{n}",
        content_bucket=BUCKET,
        content_key=f"{n}.jpg",
        data=os.urandom(HASH),
        correlation_id=f"corr-{n}",
        lane=lane,
        content_etag=content_etag,
    )
    return Result.for_item(item, verdict=CLEAN).to_dict()


def test_record_results_records_and_tags_each_and_hands_over_a_failure(
    rt: Runtime, s3: S3Client, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four results of one request: recorded and tagged; one tag write throttled → its own task."""
    etags = [
        s3.put_object(Bucket=BUCKET, Key=f"{n}.jpg", Body=b"image", Tagging="owner=platform")[
            "ETag"
        ].strip('"')
        for n in range(4)
    ]
    merge = rt.store.merge_tags

    def flaky(bucket: str, key: str, tags: dict[str, str], **kw: Any) -> Any:
        if key == "3.jpg":
            raise ServerError("SlowDown")
        return merge(bucket, key, tags, **kw)

    monkeypatch.setattr(rt.store, "merge_tags", flaky)
    docs = [_result(n, content_etag=etags[n]) for n in range(4)]
    outcome = steps.record_results.apply(kwargs={"results": docs}, task_id="r-1").get()
    assert outcome == {"recorded": 3, "retry": 1}
    for n in range(3):
        tags = s3.get_object_tagging(Bucket=BUCKET, Key=f"{n}.jpg")["TagSet"]
        assert {t["Key"]: t["Value"] for t in tags} == {
            "owner": "platform",
            rt.settings.result_tag: CLEAN,
        }
        assert rt.results.get(BUCKET, f"{n}.jpg.bin") is not None
    (handed,) = [(kw, c) for name, kw, c in sent if name == "edgematch.record_result"]
    assert handed[0] == {"result": docs[3], "correlation_id": "corr-3"}
    assert handed[1] > 0
    # The same batch again changes nothing (recording is idempotent).
    monkeypatch.setattr(rt.store, "merge_tags", merge)
    again = steps.record_results.apply(kwargs={"results": docs[:3]}, task_id="r-2").get()
    assert again == {"repeat": 3}


def test_one_result_goes_as_a_single_task_and_more_as_one_batch(sent: Sent) -> None:
    """publish_results: one request's results in one task; enqueue_events: ≤ 10 per task."""
    steps.publish_results([Result.from_dict(_result(0))])
    steps.publish_results([Result.from_dict(_result(n)) for n in range(5)])
    assert [(name, len(kw.get("results", [kw.get("result")]))) for name, kw, _ in sent] == [
        ("edgematch.record_result", 1),
        ("edgematch.record_results", 5),
    ]
    sent.clear()
    events = [({"bucket": BUCKET, "key": f"{n}.bin"}, f"c{n}") for n in range(23)]
    enqueue_events(events, "live")
    enqueue_events(events[:1], "live")
    assert [(name, len(kw.get("events", [kw.get("event")]))) for name, kw, _ in sent] == [
        ("edgematch.ingest_many", 10),
        ("edgematch.ingest_many", 10),
        ("edgematch.ingest_many", 3),
        ("edgematch.ingest", 1),
    ]
    assert sent[0][1]["events"][0] == {"event": events[0][0], "correlation_id": "c0"}


def test_a_request_with_a_live_result_goes_to_the_live_results_queue(
    make_settings: MakeSettings,
) -> None:
    """Mixed lanes in one request (4 live + 1 backfill): its results do not wait behind a
    backfill's; a request of background results only goes to the background queue."""
    (route,) = celery_config(make_settings(namespace=NS))["task_routes"]
    mixed = {"results": [_result(0), _result(1, lane="backfill")]}
    background = {"results": [_result(0, lane="backfill"), _result(1, lane="replay")]}
    assert route("edgematch.record_results", (), mixed, {}) == {"queue": f"{NS}.results"}
    assert route("edgematch.record_results", (), background, {}) == {"queue": f"{NS}.background"}
    assert route("edgematch.ingest_many", (), {"lane": "backfill"}, {}) == {
        "queue": f"{NS}.background"
    }
