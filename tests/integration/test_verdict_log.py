"""The verdict log on in-process moto S3 and a private redis-server.

Recording a result stages its line in the same Redis script; a flush writes staged lines to
the object store, an object per scan hour, and lets them go only once written; a write that
fails, or a flusher that never finishes, leaves its batch to be written again to the same
object; the log is read back by ``edgematch result`` and ``edgematch verdicts`` (each result
once); ``edgematch migrate-results`` moves an earlier release's results into it.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis

from edgematch.config.settings import Settings
from edgematch.infra.keys import Keys
from edgematch.infra.logstore import LogObjects, Unreadable
from edgematch.ops.history import lookup, summarise
from edgematch.ops.migrate import migrate
from edgematch.ops.progress import Progress
from edgematch.pipeline.logpaths import PREFIX, hour_of, partition
from edgematch.pipeline.results import CLEAN, MATCH, Result
from edgematch.pipeline.resultstore import LogBehind
from edgematch.runtime import Runtime

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

LOG_BUCKET = "edgematch-reports"
NS = "vlog"
MakeSettings = Callable[..., Settings]
HOUR = 3600.0


@pytest.fixture
def rt(make_settings: MakeSettings, s3: S3Client, redis_client: redis.Redis) -> Iterator[Runtime]:
    """A runtime whose verdict log is in LOG_BUCKET (the reports bucket, as by default)."""
    s3.create_bucket(Bucket=LOG_BUCKET)
    runtime = Runtime(make_settings(namespace=NS, reports_bucket=LOG_BUCKET))
    yield runtime
    runtime.close()


def _result(n: int, *, scanned_at: float, verdict: str = CLEAN, **changes: Any) -> Result:
    result = Result(
        item_id=f"item-{n:04d}",
        verdict=verdict,
        bucket="uploads",
        key=f"photos/p{n}.jpg.bin",
        version_id=f"hv{n}",
        etag=f"he{n}",
        content_bucket="uploads",
        content_key=f"photos/p{n}.jpg",
        is_match=verdict == MATCH,
        correlation_id=f"corr-{n}",
        attempts=1,
        scanned_at=scanned_at,
        content_version_id=f"cv{n}",
    )
    return dataclasses.replace(result, **changes)


def _log_keys(s3: S3Client) -> list[str]:
    listing = s3.list_objects_v2(Bucket=LOG_BUCKET, Prefix=PREFIX)
    return [entry["Key"] for entry in listing.get("Contents", [])]


def _lines(s3: S3Client, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=LOG_BUCKET, Key=key)["Body"].read()
    return [json.loads(line) for line in gzip.decompress(body).decode().splitlines()]


def _staged(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in client.lrange(Keys(NS).log_staged, 0, -1)]


def test_recording_stages_the_first_recording_of_each_item_only(
    rt: Runtime, redis_client: redis.Redis
) -> None:
    """The line is staged by the same script that records: a repeat stages nothing, a
    superseded result (not recorded as current) is staged with current false."""
    now = time.time()
    first = _result(1, scanned_at=now)
    assert rt.results.commit(first, record=True, expected_item=None, decision="first") is True
    assert rt.results.commit(first, record=True, expected_item="item-0001") is False
    older = _result(2, scanned_at=now, key=first.key, etag="older")
    assert rt.results.commit(older, record=False, expected_item="item-0001", decision="x") is True
    staged = _staged(redis_client)
    assert [(d["item_id"], d["current"], d["decision"]) for d in staged] == [
        ("item-0001", True, "first"),
        ("item-0002", False, "x"),
    ]
    assert staged[0]["recorded_at"] >= now and staged[0]["schema"] == "edgematch.result/v1"
    # What Redis keeps per hash lives for the hot window, under digests.
    hot = Keys(NS).result("uploads", first.key)
    assert 0 < redis_client.ttl(hot) <= rt.settings.result_ttl_s
    assert first.key not in hot


def test_a_flush_writes_one_object_per_scan_hour_and_lets_the_lines_go(
    rt: Runtime, s3: S3Client, redis_client: redis.Redis
) -> None:
    """Lines scanned in two hours go to two objects of one batch, in their partitions; the
    staging area is empty after; the objects are gzip JSON Lines, encrypted at rest."""
    now = time.time()
    results = [_result(n, scanned_at=now - (HOUR if n % 2 else 0)) for n in range(10)]
    for result in results:
        rt.results.commit(result, record=True, expected_item=None)
    flushed = rt.verdict_log.flush(budget_s=30)
    assert (flushed.objects, flushed.lines, flushed.failed) == (2, 10, False)
    keys = _log_keys(s3)
    assert sorted(k.split("/")[1:3] for k in keys) == sorted(
        partition(hour_of(t)).strip("/").split("/") for t in (now, now - HOUR)
    )
    assert len({k.rsplit("-", 1)[1] for k in keys}) == 1  # one batch
    written = {d["item_id"]: d for key in keys for d in _lines(s3, key)}
    assert written.keys() == {r.item_id for r in results}
    for key in keys:
        assert all(
            hour_of(d["scanned_at"]) == hour_of(_lines(s3, key)[0]["scanned_at"])
            for d in _lines(s3, key)
        )
        head = s3.head_object(Bucket=LOG_BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
    assert rt.verdict_log.backlog().staged == 0
    assert redis_client.hlen(Keys(NS).log_batches) == redis_client.zcard(Keys(NS).log_leases) == 0
    assert rt.verdict_log.flush(budget_s=30).objects == 0  # nothing left: no empty object


def test_a_batch_never_written_is_written_again_to_the_same_object(
    rt: Runtime, s3: S3Client, redis_client: redis.Redis
) -> None:
    """A flush that took a batch and died before writing it (or whose write the store
    refused) leaves it leased; once the lease runs out, the next flush writes that very
    batch, under its own name, before anything newer — and each line exactly once."""
    now = time.time()
    for n in range(3):
        rt.results.commit(_result(n, scanned_at=now), record=True, expected_item=None)
    # A flusher takes the batch and is killed before its PUT: nothing else of it happens.
    taken = next(rt.verdict_log._batches(time.monotonic() + 30))
    assert len(taken.lines) == 3 and rt.verdict_log.backlog().staged == 0
    rt.results.commit(_result(3, scanned_at=now), record=True, expected_item=None)
    # While the lease holds, another flush writes only what came since.
    assert rt.verdict_log.flush(budget_s=30).lines == 1
    # The lease runs out (as LEASE_S later): the batch is taken again, whole.
    redis_client.zadd(Keys(NS).log_leases, {taken.id: 0})
    assert rt.verdict_log.flush(budget_s=30).lines == 3
    keys = _log_keys(s3)
    assert any(taken.id in key for key in keys)
    items = [d["item_id"] for key in keys for d in _lines(s3, key)]
    assert sorted(items) == [f"item-{n:04d}" for n in range(4)]


def test_a_write_the_store_refuses_is_retried_not_lost(
    make_settings: MakeSettings, s3: S3Client, redis_client: redis.Redis
) -> None:
    """The log's bucket is missing: the flush fails, the lines stay in Redis; once the
    bucket is there and the lease has run out, they are written."""
    runtime = Runtime(make_settings(namespace=NS, reports_bucket=LOG_BUCKET))
    try:
        runtime.results.commit(_result(1, scanned_at=time.time()), record=True, expected_item=None)
        flushed = runtime.verdict_log.flush(budget_s=30)
        assert flushed.failed and flushed.lines == 0
        assert redis_client.hlen(Keys(NS).log_batches) == 1
        s3.create_bucket(Bucket=LOG_BUCKET)
        leased = [
            cast("bytes", m).decode() for m in redis_client.zrange(Keys(NS).log_leases, 0, -1)
        ]
        redis_client.zadd(Keys(NS).log_leases, dict.fromkeys(leased, 0))  # as LEASE_S later
        assert runtime.verdict_log.flush(budget_s=30).lines == 1
        assert [d["item_id"] for k in _log_keys(s3) for d in _lines(s3, k)] == ["item-0001"]
    finally:
        runtime.close()


def test_flushes_run_once_an_interval_for_the_whole_pool(rt: Runtime) -> None:
    """The second of two flushes asked within EDGEMATCH_VERDICT_LOG_FLUSH_S does not run."""
    rt.results.commit(_result(1, scanned_at=time.time()), record=True, expected_item=None)
    first = rt.verdict_log.flush_if_due(budget_s=30)
    rt.results.commit(_result(2, scanned_at=time.time()), record=True, expected_item=None)
    assert first is not None and first.lines == 1
    assert rt.verdict_log.flush_if_due(budget_s=30) is None
    assert rt.verdict_log.backlog().staged == 1


def test_recording_stops_when_the_log_is_that_far_behind(
    make_settings: MakeSettings, s3: S3Client, redis_client: redis.Redis
) -> None:
    """Past EDGEMATCH_VERDICT_LOG_MAX_STAGED staged lines, a new result is refused (and
    retried by its task) with nothing written; a repeat still goes through."""
    # EDGEMATCH_VERDICT_LOG_MAX_STAGED (docs/configuration.md) at 2, to reach it quickly.
    runtime = Runtime(
        make_settings(namespace=NS, reports_bucket=LOG_BUCKET, verdict_log_max_staged=2)
    )
    try:
        now = time.time()
        first = _result(1, scanned_at=now)
        runtime.results.commit(first, record=True, expected_item=None)
        runtime.results.commit(_result(2, scanned_at=now), record=True, expected_item=None)
        with pytest.raises(LogBehind, match="EDGEMATCH_VERDICT_LOG_MAX_STAGED"):
            runtime.results.commit(_result(3, scanned_at=now), record=True, expected_item=None)
        assert runtime.results.current("uploads", "photos/p3.jpg.bin") is None
        assert runtime.results.commit(first, record=True, expected_item="item-0001") is False
        assert redis_client.llen(Keys(NS).log_staged) == 2
    finally:
        runtime.close()


def test_verdicts_counts_each_result_once(rt: Runtime, s3: S3Client) -> None:
    """Lines written twice (the same item in two objects of its hour) count once; results
    outside the range are not counted; counts by verdict, lane, bucket and day."""
    now = time.time()
    results = [
        _result(n, scanned_at=now - 60 * n, verdict=MATCH if n % 5 == 0 else CLEAN)
        for n in range(20)
    ]
    for result in results:
        rt.results.commit(result, record=True, expected_item=None)
    rt.verdict_log.flush(budget_s=30)
    # A result delivered again after its marker expired is staged (and written) again.
    rt.results._r.delete(Keys(NS).result_item("item-0003"))
    rt.results._r.delete(Keys(NS).result("uploads", "photos/p3.jpg.bin"))
    rt.results.commit(results[3], record=True, expected_item=None)
    rt.verdict_log.flush(budget_s=30)
    copies = [d["item_id"] for k in _log_keys(s3) for d in _lines(s3, k)]
    assert copies.count("item-0003") == 2

    objects = rt.verdict_log.objects
    assert objects is not None
    tally = summarise(objects, now - 2 * HOUR, now + 1, stream=io.StringIO())
    assert tally.results == 20 and tally.repeats == 1
    assert dict(tally.by_verdict) == {CLEAN: 16, MATCH: 4}
    assert dict(tally.by_lane) == {"live": 20} and dict(tally.by_bucket) == {"uploads": 20}
    assert sum(sum(day.values()) for day in tally.by_day.values()) == 20
    recent = summarise(objects, now - 5 * 60 - 1, now + 1, stream=io.StringIO())
    assert recent.results == 6  # scanned 0 to 5 minutes ago


def test_result_is_found_in_the_log_once_its_hot_entry_has_expired(
    rt: Runtime, s3: S3Client, redis_client: redis.Redis
) -> None:
    """With its Redis keys gone (as the hot window would), ``edgematch result`` finds the
    result in the log from the content object's upload, by hash or content location, with
    the content's tag beside it."""
    s3.put_object(Bucket="uploads", Key="photos/p7.jpg", Body=b"image", Tagging="x=y")
    s3.put_object(Bucket="uploads", Key="photos/p7.jpg.bin", Body=b"h" * 924)
    rt.store.merge_tags("uploads", "photos/p7.jpg", {"edgematch-status": "clean"})
    result = _result(7, scanned_at=time.time())
    rt.results.commit(result, record=True, expected_item=None)
    hot = rt.results.get("uploads", "photos/p7.jpg")
    assert hot is not None and hot["item_id"] == result.item_id
    rt.verdict_log.flush(budget_s=30)
    redis_client.delete(
        Keys(NS).result("uploads", result.key), Keys(NS).content_result("uploads", "photos/p7.jpg")
    )
    assert rt.results.get("uploads", result.key) is None

    for uri_key in (result.key, result.content_key):
        found = lookup(rt, "uploads", uri_key, since=None, until=None, stream=io.StringIO())
        assert found is not None, uri_key
        assert found["item_id"] == result.item_id and found["verdict"] == CLEAN
        assert found["lookup"]["source"] == "verdict log"
        assert found["lookup"]["tag"] == "clean"
        assert found["lookup"]["object"].startswith(f"s3://{LOG_BUCKET}/{PREFIX}")
    nothing = lookup(rt, "uploads", "photos/none.jpg", since=None, until=None, stream=io.StringIO())
    assert nothing is None


def test_migrate_results_moves_an_earlier_release_s_keys_to_the_log(
    rt: Runtime, s3: S3Client, redis_client: redis.Redis
) -> None:
    """Old result keys (by location, 90 days) are written to the log and deleted with their
    pointers; old idempotency keys deleted; old markers shortened; this release's keys left
    alone; the old results are found by ``edgematch result`` before and after."""
    now = time.time()
    k = Keys(NS)
    old = _result(1, scanned_at=now - 3 * 86_400).to_dict() | {"recorded_at": now - 3 * 86_400}
    redis_client.set(k.legacy_result("uploads", old["key"]), json.dumps(old), ex=80 * 86_400)
    redis_client.set(
        k.legacy_content_result("uploads", old["content_key"]), f"uploads/{old['key']}", ex=999
    )
    redis_client.set(f"{NS}:seen:" + "ab" * 32, "item-0001", ex=20 * 86_400)
    redis_client.set(k.result_item("item-0001"), "1", ex=80 * 86_400)
    before = rt.results.get("uploads", old["content_key"])
    assert before is not None and before["item_id"] == "item-0001"
    current = _result(2, scanned_at=now)
    rt.results.commit(current, record=True, expected_item=None)

    done = migrate(rt, rt.verdict_log.objects, progress=Progress("t", stream=io.StringIO()))

    assert (done.results, done.pointers, done.idempotency_keys) == (1, 1, 1)
    assert done.shortened >= 1 and done.objects == 1
    assert redis_client.get(k.legacy_result("uploads", old["key"])) is None
    assert redis_client.get(f"{NS}:seen:" + "ab" * 32) is None
    assert redis_client.ttl(k.result_item("item-0001")) <= rt.settings.result_ttl_s
    assert rt.results.current("uploads", current.key) is not None  # this release's: kept
    [key] = _log_keys(s3)
    assert "date=" in key and [d["decision"] for d in _lines(s3, key)] == ["migrated"]
    found = lookup(
        rt, "uploads", old["key"], since=now - 4 * 86_400, until=now, stream=io.StringIO()
    )
    assert found is not None and found["item_id"] == "item-0001"
    assert found["lookup"]["source"] == "verdict log"


def test_log_objects_refuse_what_is_not_json_lines(rt: Runtime, s3: S3Client) -> None:
    """An object of the log that is not gzip JSON Lines is refused by name, not half read."""
    objects = LogObjects(s3, LOG_BUCKET, PREFIX)
    s3.put_object(Bucket=LOG_BUCKET, Key=f"{PREFIX}x.jsonl.gz", Body=b"not gzip")
    s3.put_object(
        Bucket=LOG_BUCKET, Key=f"{PREFIX}y.jsonl.gz", Body=gzip.compress(b'{"a": 1}\n[1]\n')
    )
    with pytest.raises(Unreadable, match="not gzip"):
        objects.read(f"{PREFIX}x.jsonl.gz")
    with pytest.raises(Unreadable, match="line 2 is not an object"):
        objects.read(f"{PREFIX}y.jsonl.gz")
