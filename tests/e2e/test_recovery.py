"""A worker's main process killed while it holds a task, on the default settings.

The task here waits out a countdown in the worker (as a retry does): the consumer took it
from Redis and holds it in kombu's unacknowledged hash until it runs. While the worker
lives it keeps that delivery fresh, however long it waits; killed, the delivery comes back
within seconds (recovery/unacked.py), not after the broker's visibility timeout (an hour).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.recovery.journal import Journal
from edgematch.recovery.unacked import REFRESH_S, STALE_S
from tests.support.hashes import HASH
from tests.support.pipelines import discard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def pipe() -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(rate=10.0).start()
    yield pipeline
    discard(pipeline)


def _handed_back(pipe: LocalPipeline) -> list[str]:
    """Task ids the sweep put back on their queue, from the worker log."""
    ids: list[str] = []
    for line in pipe.log_lines("worker"):
        if '"deliveries_handed_back"' not in line or not line.startswith("{"):
            continue
        try:
            ids += json.loads(line).get("task_ids", [])
        except ValueError:
            continue  # a line cut short by a SIGKILL
    return ids


def _tag_of(client: redis.Redis, unacked: str, task_id: str) -> bytes | None:
    """The delivery tag under which the worker holds the task ``task_id``, if it does
    (kombu's unacked hash: tag -> [message, exchange, routing key])."""
    for tag, raw in client.hgetall(unacked).items():
        if json.loads(raw)[0]["headers"]["id"] == task_id:
            return tag if isinstance(tag, bytes) else tag.encode()
    return None


def test_a_countdown_held_by_a_killed_worker_comes_back_within_seconds(
    pipe: LocalPipeline,
) -> None:
    """Held past STALE_S by a live worker, a task waiting out its countdown stays with it;
    SIGKILL the worker and it is handed back within STALE_S and a sweep, runs on the next
    worker at its time, and leaves nothing for the broker to deliver again."""
    settings = Settings.from_env(pipe.env())
    pipe.s3().put_bucket_notification_configuration(
        Bucket=pipe.bucket, NotificationConfiguration={}
    )
    key = "held/countdown.jpg.bin"
    pipe.upload(key, os.urandom(HASH), content=b"an image")
    pipe.start_processes("worker", "beat", worker_args=["--concurrency", "1"])
    client = redis.Redis.from_url(pipe.redis.url)
    unacked = f"{pipe.keys.ns}:kombu:unacked"
    index = f"{pipe.keys.ns}:kombu:unacked_index"

    # An ingest task with a countdown, journaled and published as the pipeline does it.
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(settings))
    task_id = uuid.uuid4().hex
    kwargs: dict[str, Any] = {
        "event": {"bucket": pipe.bucket, "key": key},
        "correlation_id": "held-1",
        "lane": "live",
    }
    countdown_s = STALE_S + 20
    Journal(client, settings.namespace).add(
        task_id, "edgematch.ingest", kwargs, pipe.keys.queue("ingest")
    )
    app.send_task("edgematch.ingest", kwargs=kwargs, task_id=task_id, countdown=countdown_s)
    published, published_at = time.monotonic(), time.time()
    _wait(lambda: _tag_of(client, unacked, task_id) is not None, 30, "the worker to take the task")

    # Held by a live worker for longer than STALE_S: kept fresh, never handed back. (The
    # beat's own tasks come and go beside it: the task's delivery is found by its id.)
    time.sleep(max(0.0, published + STALE_S + 2 - time.monotonic()))
    tag = _tag_of(client, unacked, task_id)
    assert tag is not None
    (sec, usec) = client.time()
    stamp = client.zscore(index, tag)
    assert stamp is not None and int(sec) + usec / 1e6 - stamp <= REFRESH_S + 1.5
    assert _handed_back(pipe) == []
    assert pipe.result(key) is None

    # The main process alone: its pool's children die with it (Celery sets their
    # parent-death signal), as when the OOM killer picks the largest process.
    assert pipe.processes is not None
    worker = pipe.processes.procs.pop("worker")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    killed = time.monotonic()
    pipe.start_processes("worker", worker_args=["--concurrency", "1"])
    _wait(lambda: task_id in _handed_back(pipe), STALE_S + 15, "the task to be handed back")
    back_after_s = time.monotonic() - killed

    results = pipe.wait_for_results([key], timeout_s=60)
    assert key in results
    assert back_after_s <= STALE_S + 5  # a sweep every second, and this machine's load
    # It ran at its time, not at once: the countdown travelled with the message.
    assert float(results[key]["recorded_at"]) - published_at >= countdown_s - 1
    _wait(lambda: client.hlen(unacked) == 0, 10, "no delivery left for the broker")
    client.close()
