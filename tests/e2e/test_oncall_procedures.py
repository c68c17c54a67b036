"""On-call procedures end to end: the Procfile's processes, and the CLI as on-call runs it.

An API outage fills the dead letters and a replay recovers them; a backfill killed
half-way resumes and scans every object exactly once. Each command is an `edgematch`
subprocess with the pipeline's environment, as an operator's shell would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, cli, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def _letters(pipe: LocalPipeline) -> list[dict[str, Any]]:
    proc = cli(pipe, "dlq", "list", "--json", "--limit", "0")
    assert proc.returncode == 0, proc.stderr
    docs: list[dict[str, Any]] = json.loads(proc.stdout)
    return docs


def test_outage_dead_letters_replay_and_status(make_pipeline: MakePipeline) -> None:
    """A 503 outage dead-letters every item; after recovery replay scans each once, twice is free.

    A malformed SQS message shows in `dlq list` beside them and is not replayable; status
    names the dead letters while they wait and is healthy, with every process, afterwards.
    """
    pipe = make_pipeline(
        rate=10.0,
        settings={
            "EDGEMATCH_MAX_ATTEMPTS": "2",
            "EDGEMATCH_BACKOFF_BASE_S": "0.1",
            "EDGEMATCH_BACKOFF_CAP_S": "0.2",
        },
    )
    pipe.sandbox_faults(force_status=503)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = [f"outage/{n}.jpg.bin" for n in range(6)]
    for key in keys:
        pipe.upload(key, os.urandom(HASH), content=b"image")
    pipe.sqs().send_message(QueueUrl=pipe.queue_url, MessageBody="{not an event")

    client = redis.Redis.from_url(pipe.redis.url)
    _wait(lambda: client.zcard(pipe.keys.dead_letter_index) >= 7, 60, "7 dead letters")
    letters = _letters(pipe)
    by_reason = {d["key"] or d["task"]: d["reason"] for d in letters}
    assert by_reason == {
        **dict.fromkeys(keys, "retries_exhausted"),
        "edgematch.intake": "malformed_event",
    }
    malformed = next(d for d in letters if d["reason"] == "malformed_event")
    assert "not an event" in malformed["args"]["body_excerpt"]
    assert all(d["attempts"] == 2 and d["correlation_id"] for d in letters if d["key"])
    results = pipe.wait_for_results(keys, timeout_s=30)
    assert {r["verdict"] for r in results.values()} == {"unscannable"}
    sick = cli(pipe, "status", "--json")
    assert sick.returncode == 1
    assert any("retries_exhausted 6" in p["what"] for p in json.loads(sick.stdout)["problems"])
    assert pipe.sandbox_stats()["items_total"] == 0

    pipe.sandbox_faults(force_status=None)
    first = cli(pipe, "dlq", "replay", "--all")
    second = cli(pipe, "dlq", "replay", "--all")  # at once: the first replay is under way
    assert first.returncode == 0, first.stderr
    assert "replayed 6" in first.stdout and "1 not replayable" in first.stdout
    assert second.returncode == 0, second.stderr

    def recovered() -> bool:
        docs = [pipe.result(key) for key in keys]
        return all(doc is not None and doc["verdict"] == "clean" for doc in docs)

    _wait(recovered, 60, "every replayed item to be scanned clean")
    _wait(lambda: client.zcard(pipe.keys.dead_letter_index) == 1, 30, "the replays to resolve")
    wait_settled(pipe)
    assert pipe.sandbox_stats()["items_total"] == len(keys)

    third = cli(pipe, "dlq", "replay", "--all")
    assert third.returncode == 0 and "replayed 0" in third.stdout
    wait_settled(pipe)
    assert pipe.sandbox_stats()["items_total"] == len(keys)
    assert [d["reason"] for d in _letters(pipe)] == ["malformed_event"]
    lines = [json.loads(line) for line in pipe.log_lines("worker") if line.startswith("{")]
    resolved = {line.get("replayed_from") for line in lines if line["event"] == "replay_resolved"}
    assert {d["id"] for d in letters if d["key"]} <= resolved

    healthy = cli(pipe, "status", "--json")
    doc = json.loads(healthy.stdout)
    assert healthy.returncode == 0, doc["problems"]
    assert {w["role"] for w in doc["workers"]} == {"worker", "intake", "beat"}
    assert all(
        "edgematch.ingest" in w["queues"] and w["age_s"] < 20
        for w in doc["workers"]
        if w["role"] == "worker"
    )
    assert doc["dead_letters"]["by_reason"] == {"malformed_event": 1}
    client.close()


def test_backfill_killed_half_way_scans_each_object_once(make_pipeline: MakePipeline) -> None:
    """A backfill SIGKILLed half-way resumes from its checkpoint; each object is scanned once."""
    pipe = make_pipeline(rate=10.0, settings={"EDGEMATCH_INTAKE_HIGH_WATER": "10"})
    keys = [f"old/{n:02d}.jpg.bin" for n in range(30)]
    for key in keys:  # uploaded "before edgematch existed": no intake reads their events
        pipe.upload(key, os.urandom(HASH), content=b"image")
    client = redis.Redis.from_url(pipe.redis.url)
    checkpoint = pipe.keys.backfill(pipe.bucket, "old/")
    command = [sys.executable, "-m", "edgematch.ops.cli", "backfill",
               f"s3://{pipe.bucket}/old/", "--page-size", "7"]  # fmt: skip

    # No worker yet: the backlog reaches the background mark (8 of 10) and backfill waits.
    first = subprocess.Popen(command, env=pipe.env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait(lambda: int(client.hget(checkpoint, "enqueued") or 0) >= 8, 60, "8 enqueued")
        time.sleep(1.0)  # paused at the mark, not between an enqueue and its checkpoint
        assert first.poll() is None
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    killed_at = int(client.hget(checkpoint, "enqueued") or 0)
    assert 8 <= killed_at < len(keys)
    assert client.hget(checkpoint, "finished_at") in (None, b"")

    pipe.start_processes("worker", "beat", worker_args=["--concurrency", "2"])
    resumed = cli(pipe, "backfill", f"s3://{pipe.bucket}/old/", "--page-size", "7")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after 'old/" in resumed.stderr
    assert "30 enqueued" in resumed.stdout and "done" in resumed.stdout

    results = pipe.wait_for_results(keys, timeout_s=90)
    assert set(results) == set(keys)
    assert {doc["lane"] for doc in results.values()} == {"backfill"}
    wait_settled(pipe)
    assert pipe.sandbox_stats()["items_total"] == len(keys)

    again = cli(pipe, "backfill", f"s3://{pipe.bucket}/old/")
    assert again.returncode == 0 and "--restart" in again.stdout
    client.close()
