"""The dead-letter store on a private redis-server: fields, bound, filters, replay marks, purge."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from edgematch.errors import TransientError
from edgematch.infra.redisclient import redis_client as build_redis_client
from edgematch.recovery import deadletters
from edgematch.recovery.deadletters import (
    FAILED,
    REPLAYING,
    DeadLetters,
    DeadLetterStoreFull,
    Filter,
)

pytestmark = pytest.mark.integration

NS = "dlqtest"


def _store(client: redis.Redis, limit: int = 100) -> DeadLetters:
    return DeadLetters(client, NS, max_entries=limit)


def _add(store: DeadLetters, entry_id: str | None = None, **fields: Any) -> str:
    doc: dict[str, Any] = {
        "task": "edgematch.ingest",
        "queue": f"{NS}.ingest",
        "reason": "retries_exhausted",
        "message": "S3 answered SlowDown",
        "args": {"event": {"bucket": "b", "key": "k.bin"}, "lane": "live"},
        "attempts": 3,
        "correlation_id": "corr-1",
        "bucket": "b",
        "key": "k.bin",
    }
    doc.update(fields)
    return store.add(dedupe_id=entry_id, **doc).id


def test_entry_keeps_every_field(redis_client: redis.Redis) -> None:
    """An entry round-trips every field the issue lists, the object version included."""
    store = _store(redis_client)
    entry_id = _add(store, "e1", args={"bucket": "b", "key": "k.bin", "version_id": "v1"})
    entry = store.get(entry_id)
    assert entry is not None
    assert (entry.id, entry.task, entry.queue) == ("e1", "edgematch.ingest", f"{NS}.ingest")
    assert (entry.reason, entry.message, entry.attempts) == (
        "retries_exhausted",
        "S3 answered SlowDown",
        3,
    )
    assert entry.correlation_id == "corr-1"
    assert (entry.bucket, entry.key, entry.version_id) == ("b", "k.bin", "v1")
    assert entry.first_failed_at == entry.last_failed_at > time.time() - 5
    assert (entry.state, entry.failures, entry.replays) == (FAILED, 1, 0)


def test_repeat_updates_in_place(redis_client: redis.Redis) -> None:
    """The same dedupe id twice is one entry: first failure time kept, failures counted."""
    store = _store(redis_client)
    _add(store, "same")
    first = store.get("same")
    time.sleep(0.01)
    _add(store, "same", attempts=5, message="again")
    again = store.get("same")
    assert first is not None and again is not None
    assert store.count() == 1
    assert again.first_failed_at == first.first_failed_at
    assert again.last_failed_at > first.last_failed_at
    assert (again.failures, again.attempts, again.message) == (2, 5, "again")


def test_full_store_refuses_loudly(redis_client: redis.Redis) -> None:
    """At the bound a new entry raises, logs dead_letters_full and is counted; repeats still fit."""
    store = _store(redis_client, limit=2)
    _add(store, "a")
    _add(store, "b")
    with capture_logs() as logs, pytest.raises(DeadLetterStoreFull, match="full"):
        _add(store, "c", correlation_id="corr-c")
    assert [(e["event"], e["log_level"]) for e in logs] == [("dead_letters_full", "error")]
    assert logs[0]["correlation_id"] == "corr-c" and logs[0]["limit"] == 2
    _add(store, "a")  # a repeat updates, so it is accepted even when full
    stats = store.stats()
    assert (stats.total, stats.limit, stats.full, stats.refused) == (2, 2, True, 1)
    assert stats.last_refused_at is not None
    assert store.get("c") is None


def test_message_is_truncated(redis_client: redis.Redis) -> None:
    """A long error message is cut to a bounded length."""
    store = _store(redis_client)
    _add(store, "long", message="x" * 5000)
    entry = store.get("long")
    assert entry is not None and len(entry.message) == deadletters.MESSAGE_CHARS


def test_filters_select_by_queue_reason_and_time(redis_client: redis.Redis) -> None:
    """list() filters by queue (name or step), reason and time, newest failure first."""
    store = _store(redis_client)
    _add(store, "old", reason="poison")
    time.sleep(0.02)
    cut = time.time()
    time.sleep(0.02)
    _add(store, "sqs", task="edgematch.intake", queue="sqs", reason="malformed_event")
    time.sleep(0.01)  # index scores are milliseconds: two adds in one would tie
    _add(store, "match", queue=f"{NS}.match", reason="item_rejected")
    assert [e.id for e in store.list()] == ["match", "sqs", "old"]
    assert [e.id for e in store.list(where=Filter(queue="match"))] == ["match"]
    assert [e.id for e in store.list(where=Filter(queue=f"{NS}.ingest"))] == ["old"]
    assert [e.id for e in store.list(where=Filter(reason="malformed_event"))] == ["sqs"]
    assert {e.id for e in store.list(where=Filter(since=cut))} == {"sqs", "match"}
    assert [e.id for e in store.list(where=Filter(before=cut))] == ["old"]
    assert len(store.list(limit=2)) == 2


def test_paging_sees_each_entry_once(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Iteration pages by score: many entries in one millisecond are each seen exactly once."""
    monkeypatch.setattr(deadletters, "_CHUNK", 3)
    store = _store(redis_client)
    for n in range(10):
        _add(store, f"e{n}")
    # Ten entries on two scores: the pages must cross ties without repeats or gaps.
    index = store._k.dead_letter_index
    redis_client.zadd(index, {f"e{n}": 1000 if n < 7 else 2000 for n in range(10)})
    newest = [e.id for e in store.iter()]
    oldest = [e.id for e in store.iter(newest_first=False)]
    assert sorted(newest) == sorted(oldest) == sorted(f"e{n}" for n in range(10))
    assert len(set(newest)) == 10
    assert set(newest[:3]) == {"e7", "e8", "e9"}


def test_replay_mark_and_resolve(redis_client: redis.Redis) -> None:
    """A replay marks the entry; a second mark of the same failure is not fresh; resolve removes."""
    store = _store(redis_client)
    _add(store, "r")
    assert store.mark_replaying("r", "task-1") is True
    entry = store.get("r")
    assert entry is not None
    assert (entry.state, entry.replays, entry.replay_task_id) == (REPLAYING, 1, "task-1")
    assert store.mark_replaying("r", "task-2") is False
    assert store.resolve("r") == "removed"
    assert store.get("r") is None and store.count() == 0
    assert store.resolve("r") == "missing"
    assert store.mark_replaying("r", "task-3") is None


def test_failure_during_replay_keeps_the_entry(redis_client: redis.Redis) -> None:
    """A failure recorded after the replay began wins: resolve keeps it, state is failed again."""
    store = _store(redis_client)
    _add(store, "r")
    store.mark_replaying("r", "task-1")
    _add(store, "r", message="failed again")
    assert store.resolve("r") == "kept"
    entry = store.get("r")
    assert entry is not None
    assert (entry.state, entry.failures, entry.replays) == (FAILED, 2, 1)
    assert store.mark_replaying("r", "task-2") is True  # a new failure: a fresh replay


def test_resolve_without_a_replay_keeps(redis_client: redis.Redis) -> None:
    """A task that names an entry never marked (or unmarked) does not remove it."""
    store = _store(redis_client)
    _add(store, "r")
    assert store.resolve("r") == "kept"
    store.mark_replaying("r", "task-1")
    store.unmark("r")
    assert store.resolve("r") == "kept"
    assert store.count() == 1


def test_stats_count_by_reason_and_queue(redis_client: redis.Redis) -> None:
    """stats() counts by reason and by queue, and replays under way."""
    store = _store(redis_client)
    _add(store, "a", reason="poison")
    _add(store, "b", reason="poison", queue=f"{NS}.results")
    _add(store, "c", reason="malformed_event", queue="sqs")
    store.mark_replaying("a", "t")
    stats = store.stats()
    assert stats.total == 3 and stats.replaying == 1
    assert stats.by_reason == {"poison": 2, "malformed_event": 1}
    assert stats.by_queue == {f"{NS}.ingest": 1, f"{NS}.results": 1, "sqs": 1}
    assert stats.oldest_failed_at is not None and stats.newest_failed_at is not None
    assert stats.to_dict()["full"] is False


def test_purge_by_filter_and_by_id(redis_client: redis.Redis) -> None:
    """purge() removes what the filter matches, replay records included; others stay."""
    store = _store(redis_client)
    _add(store, "old")
    store.mark_replaying("old", "t")
    time.sleep(0.02)
    cut = time.time()
    _add(store, "new")
    assert store.purge(Filter(before=cut)) == 1
    assert [e.id for e in store.list()] == ["new"]
    assert redis_client.hlen(store._k.dead_letter_replays) == 0
    assert store.remove_many(["new", "ghost"]) == 1
    assert store.count() == 0


def test_redis_down_is_transient() -> None:
    """Every store call raises a TransientError when Redis cannot be reached."""
    client = build_redis_client("redis://127.0.0.1:9/0")  # nothing listens on port 9
    store = DeadLetters(client, NS)
    with pytest.raises(TransientError):
        store.get("x")
    with pytest.raises(TransientError):
        store.count()
