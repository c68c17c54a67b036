"""The whole pipeline through the Procfile's real processes: intake, worker, beat.

Every test runs a private redis-server, moto's server (S3 notifications to SQS), the
sandbox over HTTP and the processes exactly as an operator would start them, configured
only through environment variables.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest
import redis

from devtools.localstack import SANDBOX_KEY
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_uploads_are_scanned_matched_and_tagged(make_pipeline: MakePipeline, broker: str) -> None:
    """Uploaded hash files get a result each, known hashes match, and tags merge (on
    either broker)."""
    pipe = make_pipeline(rate=10.0, broker=broker)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hashes = {f"photos/p{i}.jpg.bin": os.urandom(HASH) for i in range(8)}
    known = ["photos/p2.jpg.bin", "photos/p5.jpg.bin"]
    pipe.add_known(hashes[k] for k in known)
    for key, data in hashes.items():
        pipe.upload(key, data, content=b"image bytes")

    results = pipe.wait_for_results(hashes, timeout_s=60)

    assert set(results) == set(hashes)
    assert {k for k, r in results.items() if r["verdict"] == "match"} == set(known)

    def tagged() -> bool:
        # A result is recorded, then its verdict tag written (under the tag's lock): the
        # last ones of a batch may still be on their way when every result is there.
        s3 = pipe.s3()
        return all(
            len(s3.get_object_tagging(Bucket=pipe.bucket, Key=k.removesuffix(".bin"))["TagSet"])
            == 2
            for k in hashes
        )

    _wait(tagged, 10, "every content object to be tagged")
    for key, doc in results.items():
        assert doc["schema"] == "edgematch.result/v1"
        assert doc["content_key"] == key.removesuffix(".bin")
        assert doc["tracking_id"] and doc["correlation_id"] and doc["attempts"] == 1
        tags = pipe.s3().get_object_tagging(Bucket=pipe.bucket, Key=doc["content_key"])["TagSet"]
        # A match is quarantined next: in tag mode (no quarantine bucket) it says so.
        verdicts = {"match", "quarantined"} if doc["verdict"] == "match" else {doc["verdict"]}
        as_dict = {t["Key"]: t["Value"] for t in tags}
        assert as_dict.keys() == {"owner", "edgematch-status"}
        assert as_dict["owner"] == "platform" and as_dict["edgematch-status"] in verdicts
    match = results["photos/p2.jpg.bin"]
    assert match["match_ids"] and match["sources"] == ["sandbox"] and match["violations"]

    # The recorded result, the way on-call finds it.
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgematch.ops.cli",
            "result",
            f"s3://{pipe.bucket}/photos/p2.jpg",
        ],
        env=pipe.env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(shown.stdout)["verdict"] == "match"

    # One correlation id follows an upload from the event to its result.
    corr = match["correlation_id"]
    lines = [json.loads(line) for line in pipe.log_lines("worker") if line.startswith("{")]
    events = {line["event"] for line in lines if line.get("correlation_id") == corr}
    assert {"ingest_buffered", "result_recorded"} <= events

    # Neither the subscription key nor any hash's bytes reach a log line.
    logs = "\n".join(pipe.log_lines("worker") + pipe.log_lines("intake") + pipe.log_lines("beat"))
    assert SANDBOX_KEY not in logs
    for data in hashes.values():
        assert base64.b64encode(data).decode()[:40] not in logs
        assert data.hex()[:40] not in logs


def test_redelivered_event_makes_no_second_call(make_pipeline: MakePipeline) -> None:
    """The same S3 event delivered three times is scanned once: one item reaches the API.

    The repeats name the version by its id, as real S3 does, while moto's first event
    named it by ETag only: both names must lead to the one scan.
    """
    pipe = make_pipeline(rate=10.0)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    key = "dup/one.jpg.bin"
    pipe.upload(key, os.urandom(HASH))
    assert pipe.wait_for_results([key], timeout_s=30)
    head = pipe.s3().head_object(Bucket=pipe.bucket, Key=key)
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": pipe.bucket},
            "object": {
                "key": key,
                "size": HASH,
                "eTag": head["ETag"],
                "versionId": head.get("VersionId"),
            },
        },
    }
    for _ in range(2):
        pipe.sqs().send_message(
            QueueUrl=pipe.queue_url, MessageBody=json.dumps({"Records": [record]})
        )

    def duplicates_seen() -> bool:
        return sum('"ingest_duplicate"' in line for line in pipe.log_lines("worker")) >= 2

    _wait(duplicates_seen, 30, "both repeats to be ignored")
    wait_settled(pipe)
    assert pipe.sandbox_stats()["items_total"] == 1


def test_clean_repeat_is_answered_from_the_result_cache(make_pipeline: MakePipeline) -> None:
    """EDGEMATCH_CLEAN_CACHE_TTL_S > 0: a byte-identical re-upload costs no API call.

    The first upload is scanned by the API and found clean; the same hash bytes uploaded
    under another key get their clean result from the cache, recorded and tagged alike.
    """
    pipe = make_pipeline(rate=10.0, settings={"EDGEMATCH_CLEAN_CACHE_TTL_S": "3600"})
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    data = os.urandom(HASH)
    pipe.upload("photos/first.jpg.bin", data, content=b"an image")
    first = pipe.wait_for_results(["photos/first.jpg.bin"], timeout_s=30)["photos/first.jpg.bin"]
    assert first["verdict"] == "clean" and first["from_cache"] is False
    # Remembered by the results consumer just after it records the result.
    client = redis.Redis.from_url(pipe.redis.url)
    try:
        entry = pipe.keys.clean_cache(first["hash_sha256"])
        _wait(lambda: bool(client.exists(entry)), 10, "the clean verdict to be remembered")
        assert 3500 < int(client.ttl(entry)) <= 3600
    finally:
        client.close()
    items_before = pipe.sandbox_stats()["items_total"]

    pipe.upload("photos/again.jpg.bin", data, content=b"the same image again")
    again = pipe.wait_for_results(["photos/again.jpg.bin"], timeout_s=30)["photos/again.jpg.bin"]

    assert again["verdict"] == "clean" and again["from_cache"] is True
    assert again["reason"].startswith("result_cache:")
    assert pipe.sandbox_stats()["items_total"] == items_before

    def tagged_clean() -> bool:
        tags = pipe.s3().get_object_tagging(Bucket=pipe.bucket, Key="photos/again.jpg")["TagSet"]
        return {t["Key"]: t["Value"] for t in tags}.get("edgematch-status") == "clean"

    _wait(tagged_clean, 10, "the re-upload to be tagged clean")
    logs = "\n".join(pipe.log_lines("worker"))
    assert '"ingest_clean_cached"' in logs and data.hex()[:40] not in logs


def test_twelve_hashes_make_three_requests(make_pipeline: MakePipeline) -> None:
    """12 hashes arriving together go out as 3 requests of 5, 5 and 2."""
    pipe = make_pipeline(rate=10.0, settings={"EDGEMATCH_BATCH_LINGER_MS": "4000"})
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = [f"twelve/{i}.bin" for i in range(12)]
    for key in keys:
        pipe.upload(key, os.urandom(HASH))
    assert len(pipe.wait_for_results(keys, timeout_s=60)) == 12
    stats = pipe.sandbox_stats()
    assert stats["by_http_status"] == {"200": 3}
    assert {k: v for k, v in stats["files_per_request"].items() if v} == {"5": 2, "2": 1}


# Alone: a worker starved of CPU by the tests beside it sends a request late, next to the
# following one, and the sandbox's window counts both.
@pytest.mark.alone
def test_four_workers_never_draw_a_429(make_pipeline: MakePipeline) -> None:
    """Four worker processes against a 5 request/s API, a backlog waiting, on the default
    settings (margin included): no 429, ever, though this suite shares two cores with
    moto, the sandbox and the processes under test, so that a request can leave tens of ms
    after its slot (pipeline/departure.py)."""
    count = 150
    pipe = make_pipeline(rate=5.0, settings={"EDGEMATCH_RATE_LIMIT": "5"})
    keys = [f"load/{i}.bin" for i in range(count)]
    # Uploaded before the pipeline starts: the events wait in SQS, so the run is sustained
    # whatever pace this machine's moto manages for uploads.
    for key in keys:
        pipe.upload(key, os.urandom(HASH))
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "4"])
    assert len(pipe.wait_for_results(keys, timeout_s=150)) == count
    stats = pipe.sandbox_stats()
    assert "429" not in stats["by_http_status"]
    assert stats["max_accepted_in_any_1s_window"] <= 5
    assert stats["by_http_status"]["200"] >= count / 5


def test_worker_killed_mid_batch_loses_no_hash(make_pipeline: MakePipeline) -> None:
    """SIGKILL of the worker while its batches are in flight, on the default settings: every
    hash still gets a result, the dead worker's batches back within one lease (15 s)."""
    pipe = make_pipeline(rate=10.0)
    pipe.sandbox_faults(slow_rate=1.0, slow_s=3.0)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = [f"kill/{i}.bin" for i in range(10)]
    for key in keys:
        pipe.upload(key, os.urandom(HASH))
    client = redis.Redis.from_url(pipe.redis.url)
    _wait(lambda: client.zcard(pipe.keys.leases) > 0, 30, "a batch in flight")
    assert pipe.processes is not None
    pipe.processes.kill("worker")
    pipe.sandbox_faults(slow_rate=0.0)
    pipe.start_processes("worker", worker_args=["--concurrency", "2"])

    results = pipe.wait_for_results(keys, timeout_s=90)

    assert set(results) == set(keys)
    assert all(doc["verdict"] == "clean" for doc in results.values())
    assert int(client.hget(pipe.keys.stats, "items_reclaimed") or 0) >= 1
    client.close()


def test_malformed_message_is_set_aside(make_pipeline: MakePipeline) -> None:
    """A message that is not an event is dead-lettered; the messages behind it still flow."""
    pipe = make_pipeline(rate=10.0)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "1"])
    pipe.sqs().send_message(QueueUrl=pipe.queue_url, MessageBody="this is not json")
    pipe.upload("after/ok.bin", os.urandom(HASH))
    assert pipe.wait_for_results(["after/ok.bin"], timeout_s=30)
    client = redis.Redis.from_url(pipe.redis.url)
    entries = [json.loads(v) for v in client.hvals(pipe.keys.dead_letters)]
    client.close()
    assert [e["reason"] for e in entries] == ["malformed_event"]
    assert "not json" in entries[0]["args"]["body_excerpt"]
    assert pipe.processes is not None and pipe.processes.procs["intake"].poll() is None


def test_procfile_names_the_process_types() -> None:
    """The Procfile runs intake (or webhook, the other door), worker and beat through the
    edgematch command."""
    procfile = Path(__file__).resolve().parents[2] / "Procfile"
    lines = [
        line for line in procfile.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert dict(line.split(": ", 1) for line in lines) == {
        "intake": "edgematch intake",
        "webhook": "edgematch webhook",
        "worker": "edgematch worker",
        "beat": "edgematch beat",
    }


def test_a_task_lost_between_the_broker_and_a_killed_worker_is_published_again(
    make_pipeline: MakePipeline,
) -> None:
    """Celery's Redis transport pops a message before it records it as unacknowledged: a
    worker killed in between loses it, and no visibility timeout brings it back. Here the
    ingest tasks intake enqueued are popped and dropped exactly so; the journal's sweep
    (beat) publishes them again and every upload still gets its result."""
    pipe = make_pipeline(rate=10.0)
    pipe.start_processes("intake")
    hashes = {f"lost/p{i}.jpg.bin": os.urandom(HASH) for i in range(3)}
    for key, data in hashes.items():
        pipe.upload(key, data, content=b"image bytes")
    client = redis.Redis.from_url(pipe.redis.url)
    queue = pipe.keys.queue("ingest")
    taken: list[dict[str, object]] = []

    def drop_all() -> bool:
        while (raw := client.rpop(queue)) is not None:  # what a killed worker's BRPOP did
            taken.append(json.loads(cast("bytes", raw)))
        return sum(len(_events(m)) for m in taken) == len(hashes)

    _wait(drop_all, 60, "intake to enqueue every upload")
    lost_ids = {str(m["headers"]["id"]) for m in taken}  # type: ignore[index]
    assert client.zcard(f"{pipe.keys.ns}:journal:at") == len(lost_ids)

    pipe.start_processes("worker", "beat", worker_args=["--concurrency", "2"])
    results = pipe.wait_for_results(hashes, timeout_s=60)

    assert set(results) == set(hashes)
    recovered = [
        json.loads(line)
        for line in pipe.log_lines("worker")
        if '"event": "tasks_recovered"' in line
    ]
    assert lost_ids <= {t for line in recovered for t in line["task_ids"]}
    # Each ran once it came back, and its entry was closed.
    _wait(lambda: client.zcard(f"{pipe.keys.ns}:journal:at") == 0, 30, "the journal to empty")
    client.close()


def _events(message: dict[str, object]) -> list[object]:
    """The events one ingest or ingest_many message carries."""
    _, kwargs, _ = json.loads(base64.b64decode(str(message["body"])))
    return list(kwargs.get("events") or [kwargs["event"]])
