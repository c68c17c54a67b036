"""The task journal on a private redis-server: what the sweep counts as lost, and not.

Queues and kombu's unacked hash are written here in the shapes kombu's Redis transport
uses (a JSON message with ``headers.id``; ``[message, exchange, routing key]``), so the
journal reads exactly what it reads under a real worker (tests/e2e covers that too).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from edgematch.worker import journal as journal_module
from edgematch.worker.journal import Journal

NS = "journaltest"
QUEUE = f"{NS}.ingest"


def _message(task_id: str, name: str = "edgematch.ingest") -> str:
    return json.dumps({"body": "e30=", "headers": {"id": task_id, "task": name}})


def _age(client: redis.Redis, task_id: str, seconds: float) -> None:
    client.zadd(f"{NS}:journal:at", {task_id: time.time() - seconds})


def _recover(journal: Journal) -> list[tuple[str, dict[str, Any], str]]:
    published: list[tuple[str, dict[str, Any], str]] = []
    journal.recover(lambda name, kwargs, task_id: published.append((name, dict(kwargs), task_id)))
    return published


@pytest.fixture
def journal(redis_client: redis.Redis) -> Journal:
    return Journal(redis_client, NS, grace_s=5.0)


def test_a_lost_task_is_published_again_under_its_id(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """Journaled, older than the grace, in no queue and held by no worker: published again,
    once (its time is stamped anew, so the next sweep leaves it alone)."""
    journal.add("t1", "edgematch.ingest", {"event": {"key": "k.bin"}, "lane": "live"}, QUEUE)
    assert _recover(journal) == []  # within the grace period
    _age(redis_client, "t1", 60)
    assert _recover(journal) == [
        ("edgematch.ingest", {"event": {"key": "k.bin"}, "lane": "live"}, "t1")
    ]
    assert _recover(journal) == []
    assert journal.pending() == 1  # still open until the task ends


def test_a_task_waiting_in_its_queue_is_not_lost(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """A backlog older than the grace period is waiting, not lost."""
    for task_id in ("a", "b"):
        journal.add(task_id, "edgematch.ingest", {}, QUEUE)
        _age(redis_client, task_id, 60)
    redis_client.lpush(QUEUE, _message("a"), _message("b"))
    assert _recover(journal) == []


def test_a_task_held_by_a_worker_is_not_lost(journal: Journal, redis_client: redis.Redis) -> None:
    """Taken by a worker (running, or waiting out a retry countdown): in kombu's unacked hash."""
    journal.add("held", "edgematch.quarantine", {}, f"{NS}.quarantine")
    _age(redis_client, "held", 600)
    redis_client.hset(
        f"{NS}:kombu:unacked",
        "delivery-tag-1",
        json.dumps([json.loads(_message("held")), "", f"{NS}.quarantine"]),
    )
    assert _recover(journal) == []
    redis_client.hdel(f"{NS}:kombu:unacked", "delivery-tag-1")
    assert [task_id for _, _, task_id in _recover(journal)] == ["held"]


def test_an_ended_task_leaves_the_journal(journal: Journal, redis_client: redis.Redis) -> None:
    journal.add("t1", "edgematch.ingest", {}, QUEUE)
    _age(redis_client, "t1", 60)
    journal.done("t1")
    assert journal.pending() == 0
    assert _recover(journal) == []


def test_a_long_queue_is_judged_by_its_order(
    journal: Journal, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue too long to read whole: what is older than its oldest message was taken
    from it; what is newer waits."""
    monkeypatch.setattr(journal_module, "SCAN_LIMIT", 2)
    for n, task_id in enumerate(["lost", "w1", "w2", "w3"]):
        journal.add(task_id, "edgematch.ingest", {}, QUEUE)
        _age(redis_client, task_id, 100 - n)
    # Oldest on the right: w1 is the next to be taken; "lost" was taken and never recorded.
    redis_client.lpush(QUEUE, _message("w1"), _message("w2"), _message("w3"))
    assert [task_id for _, _, task_id in _recover(journal)] == ["lost"]


def test_the_sweep_runs_once_per_period_across_the_pool(redis_client: redis.Redis) -> None:
    one, other = Journal(redis_client, NS, grace_s=0.3), Journal(redis_client, NS, grace_s=0.3)
    assert one.due() is True
    assert other.due() is False
    time.sleep(0.15)
    assert other.due() is True
