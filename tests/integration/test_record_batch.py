"""Recording a batch's results together (pipeline/recordbatch.py) on a private
redis-server and in-process moto S3: one script call a batch, and every guarantee of the
one-item path (recording.consume) kept item by item."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis

from edgematch import runtime as runtime_module
from edgematch.config.settings import Settings
from edgematch.errors import ServerError
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.pipeline.items import Item
from edgematch.pipeline.recordbatch import Outcome, consume_many
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import CLEAN, MATCH, Result
from edgematch.pipeline.resultstore import LogBehind
from edgematch.pipeline.tagging import verdict_tags
from edgematch.recovery.locks import LockHeld
from edgematch.runtime import Runtime
from edgematch.tasks import steps
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
BUCKET = "uploads"
NS = "recbatch"
log = get_logger(__name__)


@pytest.fixture
def make_rt(
    make_settings: MakeSettings,
    redis_client: redis.Redis,
    s3: S3Client,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Runtime]]:
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        runtime = Runtime(make_settings(namespace=NS, **overrides))
        monkeypatch.setattr(runtime_module, "_current", runtime)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


@pytest.fixture
def rt(make_rt: Callable[..., Runtime]) -> Runtime:
    return make_rt()


def _content(s3: S3Client, n: int) -> str:
    """Upload content ``<n>.jpg`` (with a tag of the platform's own); its ETag."""
    put = s3.put_object(Bucket=BUCKET, Key=f"{n}.jpg", Body=b"image", Tagging="owner=platform")
    return put["ETag"].strip('"')


def _result(
    s3: S3Client, n: int, *, verdict: str = CLEAN, content: int | None = None, item: str = ""
) -> Result:
    """The result of hash file ``<n>.jpg.bin`` for content ``<content>.jpg`` (default n)."""
    c = n if content is None else content
    scanned = Item.new(
        bucket=BUCKET,
        key=f"{n}.jpg.bin",
        version_id=None,
        etag=f"etag{n}",
        content_bucket=BUCKET,
        content_key=f"{c}.jpg",
        data=os.urandom(HASH),
        correlation_id=f"corr-{n}{item}",
        content_etag=s3.head_object(Bucket=BUCKET, Key=f"{c}.jpg")["ETag"].strip('"'),
    )
    return Result.for_item(
        scanned, verdict=verdict, is_match=verdict == MATCH, match_ids=("m1",) * (verdict == MATCH)
    )


def _record(
    rt: Runtime, results: list[Result], handed: list[Result] | None = None
) -> list[Outcome]:
    return consume_many(
        results,
        store=rt.results,
        tags=verdict_tags(rt),
        log=log,
        hand_on=(handed.append if handed is not None else lambda _: None),
        allowlist=rt.allowlist,
    )


def _tag(rt: Runtime, s3: S3Client, n: int) -> str | None:
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=f"{n}.jpg")["TagSet"]
    return {t["Key"]: t["Value"] for t in tags}.get(rt.settings.result_tag)


def _staged(rt: Runtime) -> list[dict[str, Any]]:
    return [json.loads(line) for line in rt.redis.lrange(Keys(NS).log_staged, 0, -1)]


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_batch_is_recorded_with_one_script_call(rt: Runtime, s3: S3Client) -> None:
    """Five results: recorded, tagged (other tags kept), staged once each, handed on — with
    one script call, one MGET of the recorded results and the locks released."""
    for n in range(6):
        _content(s3, n)
    assert _record(rt, [_result(s3, 5)]) == [True]  # the script is loaded on the server
    results = [_result(s3, n) for n in range(5)]
    evalsha, mget = _calls(rt.redis, "evalsha"), _calls(rt.redis, "mget")
    handed: list[Result] = []
    assert _record(rt, results, handed) == [True] * 5
    assert _calls(rt.redis, "evalsha") - evalsha == 1
    assert _calls(rt.redis, "mget") - mget == 2  # the caller's read, and the script's own
    for n in range(5):
        assert _tag(rt, s3, n) == CLEAN
        assert s3.get_object_tagging(Bucket=BUCKET, Key=f"{n}.jpg")["TagSet"][0] in (
            {"Key": "owner", "Value": "platform"},
            {"Key": rt.settings.result_tag, "Value": CLEAN},
        )
        recorded = rt.results.get(BUCKET, f"{n}.jpg.bin")
        assert recorded is not None and recorded["item_id"] == results[n].item_id
    staged = _staged(rt)[1:]
    assert sorted(line["item_id"] for line in staged) == sorted(r.item_id for r in results)
    assert all(line["current"] for line in staged)
    assert handed == results
    assert list(rt.redis.scan_iter(f"{NS}:tag-lock:*")) == []


def test_redelivery_records_and_stages_nothing_twice(rt: Runtime, s3: S3Client) -> None:
    """The same batch twice (and once more by the one-item path): repeats, one log line each,
    handed on each time (downstream is idempotent on its own)."""
    for n in range(3):
        _content(s3, n)
    results = [_result(s3, n) for n in range(3)]
    assert _record(rt, results) == [True] * 3
    handed: list[Result] = []
    assert _record(rt, results, handed) == [False] * 3
    assert handed == results
    assert (
        consume(
            results[0],
            store=rt.results,
            tags=verdict_tags(rt),
            log=log,
            hand_on=lambda _: None,
        )
        is False
    )
    assert len(_staged(rt)) == 3


def test_a_stronger_verdict_is_never_weakened(rt: Runtime, s3: S3Client) -> None:
    """A match recorded and tagged; a clean of the same write and content in a later batch
    (beside another result): the match stays recorded and on the tag."""
    _content(s3, 0)
    _content(s3, 1)
    matched = _result(s3, 0, verdict=MATCH)
    assert _record(rt, [matched]) == [True]
    assert _tag(rt, s3, 0) == MATCH
    late_clean = _result(s3, 0, item="b")
    assert _record(rt, [late_clean, _result(s3, 1)]) == [True, True]
    assert _tag(rt, s3, 0) == MATCH
    recorded = rt.results.get(BUCKET, "0.jpg.bin")
    assert recorded is not None and recorded["verdict"] == MATCH
    line = next(line for line in _staged(rt) if line["item_id"] == late_clean.item_id)
    assert line["current"] is False
    assert _tag(rt, s3, 1) == CLEAN


def test_a_lock_another_writer_keeps_fails_only_that_item(rt: Runtime, s3: S3Client) -> None:
    """Another writer holds content 1's tag lock throughout: that item alone fails with
    LockHeld (nothing of it recorded or staged); the others are recorded and tagged."""
    for n in range(3):
        _content(s3, n)
    results = [_result(s3, n) for n in range(3)]
    other = rt.redis.lock(Keys(NS).tag_lock(BUCKET, "1.jpg"), timeout=30)
    assert other.acquire(blocking=False)
    try:
        outcomes = _record(rt, results)
    finally:
        other.release()
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], LockHeld) and outcomes[1].retry_after_s > 0
    assert rt.results.get(BUCKET, "1.jpg.bin") is None
    assert _tag(rt, s3, 1) is None
    assert results[1].item_id not in {line["item_id"] for line in _staged(rt)}
    # Its retry, once the lock is free, records it.
    assert _record(rt, [results[1]]) == [True]
    assert _tag(rt, s3, 1) == CLEAN


def test_a_lock_released_while_waiting_is_taken(rt: Runtime, s3: S3Client) -> None:
    """A lock another writer releases within the wait is taken, and its item recorded."""
    for n in range(2):
        _content(s3, n)
    other = rt.redis.lock(Keys(NS).tag_lock(BUCKET, "0.jpg"), timeout=30)
    assert other.acquire(blocking=False)
    waiting = threading.Event()
    done: list[list[Outcome]] = []

    def run() -> None:
        waiting.set()
        done.append(_record(rt, [_result(s3, 0), _result(s3, 1)]))

    thread = threading.Thread(target=run)
    thread.start()
    assert waiting.wait(5)
    other.release()
    thread.join(30)
    assert done == [[True, True]]
    assert _tag(rt, s3, 0) == CLEAN


def test_a_tag_failure_fails_that_item_and_its_retry_writes_the_tag(
    rt: Runtime, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag write throttled for one item: that item fails (its task retries it), the others
    stand; the retry is a repeat that writes the tag — the content is never left clean
    without its own verdict, and nothing is staged twice."""
    for n in range(3):
        _content(s3, n)
    results = [_result(s3, n, verdict=MATCH if n == 1 else CLEAN) for n in range(3)]
    merge = rt.store.merge_tags

    def flaky(bucket: str, key: str, tags: dict[str, str], **kw: Any) -> Any:
        if key == "1.jpg":
            raise ServerError("SlowDown")
        return merge(bucket, key, tags, **kw)

    monkeypatch.setattr(rt.store, "merge_tags", flaky)
    handed: list[Result] = []
    outcomes = _record(rt, results, handed)
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], ServerError)
    assert handed == [results[0], results[2]]  # the failed one is handed on by its retry
    assert _tag(rt, s3, 1) is None
    monkeypatch.setattr(rt.store, "merge_tags", merge)
    assert _record(rt, [results[1]], handed) == [False]
    assert _tag(rt, s3, 1) == MATCH
    assert handed[-1] == results[1]
    assert len(_staged(rt)) == 3


def test_the_verdict_log_with_room_for_part_of_the_batch(
    make_rt: Callable[..., Runtime], s3: S3Client
) -> None:
    """Room for two lines of four: the first two are recorded; the other two fail with
    LogBehind and nothing of them is written (no marker, no record, no tag), so their
    retry, once the log has caught up, records them — each staged once."""
    rt = make_rt(verdict_log_max_staged=3)
    for n in range(5):
        _content(s3, n)
    assert _record(rt, [_result(s3, 4)]) == [True]  # one line already waiting
    results = [_result(s3, n) for n in range(4)]
    outcomes = _record(rt, results)
    assert outcomes[:2] == [True, True]
    assert all(isinstance(o, LogBehind) for o in outcomes[2:])
    for n in (2, 3):
        assert rt.results.get(BUCKET, f"{n}.jpg.bin") is None
        assert not rt.redis.exists(Keys(NS).result_item(results[n].item_id))
        assert _tag(rt, s3, n) is None
    assert len(_staged(rt)) == 3
    rt.redis.delete(Keys(NS).log_staged)  # the log caught up
    assert _record(rt, results) == [False, False, True, True]
    assert sorted(line["item_id"] for line in _staged(rt)) == sorted(r.item_id for r in results[2:])
    assert _tag(rt, s3, 3) == CLEAN


def test_a_result_recorded_meanwhile_is_decided_again(
    rt: Runtime, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer records a match for hash 0 between the batch's read and its script:
    the compare-and-set refuses, item 0 is decided again on the match (and does not
    replace it), the other item is recorded once."""
    for n in range(2):
        _content(s3, n)
    matched = _result(s3, 0, verdict=MATCH, item="m")
    results = [_result(s3, 0), _result(s3, 1)]
    commit_many = rt.results.commit_many
    calls: list[int] = []

    def racing(commits: Any) -> Any:
        if not calls:
            assert rt.results.commit(matched, record=True, expected_item=None) is True
        calls.append(len(commits))
        return commit_many(commits)

    monkeypatch.setattr(rt.results, "commit_many", racing)
    assert _record(rt, results) == [True, True]
    assert calls == [2, 1]
    recorded = rt.results.get(BUCKET, "0.jpg.bin")
    assert recorded is not None and recorded["item_id"] == matched.item_id
    assert len(_staged(rt)) == 3


def test_two_results_of_one_content_object_in_one_batch(rt: Runtime, s3: S3Client) -> None:
    """Two hash files of one content object in one batch: taken one after the other under
    its lock (not refused as held by the batch itself); the match wins the tag."""
    _content(s3, 0)
    results = [_result(s3, 0, verdict=MATCH), _result(s3, 1, content=0)]
    assert _record(rt, results) == [True, True]
    assert _tag(rt, s3, 0) == MATCH


def test_record_results_hands_an_unreadable_result_alone_to_its_own_task(
    rt: Runtime, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task: a result document that cannot be read goes to its own record_result task
    (which retries, then dead-letters it: never clean); the others are recorded."""
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        rt.publisher, "send", lambda task, kwargs, **_: sent.append((task.name, kwargs))
    )
    for n in range(2):
        _content(s3, n)
    docs = [_result(s3, n).to_dict() for n in range(2)]
    broken = {"verdict": CLEAN, "correlation_id": "corr-x"}
    outcome = steps.record_results.apply(
        kwargs={"results": [docs[0], broken, docs[1]]}, task_id="r-1"
    ).get()
    assert outcome == {"recorded": 2, "handed_over": 1}
    assert [(name, kw["result"]) for name, kw in sent if name == "edgematch.record_result"] == [
        ("edgematch.record_result", broken)
    ]
    assert _tag(rt, s3, 0) == CLEAN and _tag(rt, s3, 1) == CLEAN
