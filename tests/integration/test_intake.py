"""Intake's loop against moto's SQS and a private Redis: what is enqueued, deleted, set aside."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import boto3
import pytest
import redis
import structlog
from moto import mock_aws
from structlog.testing import capture_logs

from edgematch.config.settings import Settings
from edgematch.infra import health
from edgematch.pipeline import intake as intake_module
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.intake import Intake
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


@pytest.fixture
def sqs(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def _record(key: str, bucket: str = "uploads") -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": HASH, "eTag": "abc"}},
    }


def _intake(
    sqs: Any, make_settings: MakeSettings, **overrides: Any
) -> tuple[Intake, list[ObjectCreated]]:
    url = sqs.create_queue(QueueName="events")["QueueUrl"]
    settings = make_settings(sqs_queue_url=url, intake_wait_s=0, **overrides)
    enqueued: list[ObjectCreated] = []
    intake = Intake(Runtime(settings), sqs, lambda work: enqueued.extend(obj for obj, _ in work))
    return intake, enqueued


def _remaining(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_events_are_enqueued_and_deleted(
    sqs: Any, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Hash-file records become ingest work; other keys and test events are skipped; all deleted."""
    intake, enqueued = _intake(sqs, make_settings)
    url = intake.queue_url
    sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps({"Records": [_record("a+b.jpg.bin"), _record("c.jpg")]}),
    )
    sqs.send_message(
        QueueUrl=url, MessageBody=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})
    )
    intake.run(max_idle_polls=1)
    assert [obj.key for obj in enqueued] == ["a b.jpg.bin"]
    assert intake.stats.skipped == 2
    assert _remaining(sqs, url) == 0


def test_malformed_message_is_dead_lettered_and_the_next_still_flows(
    sqs: Any, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A body that is not an event is set aside with its reason; the loop goes on."""
    intake, enqueued = _intake(sqs, make_settings)
    sqs.send_message(QueueUrl=intake.queue_url, MessageBody="{not json")
    sqs.send_message(
        QueueUrl=intake.queue_url, MessageBody=json.dumps({"Records": [_record("ok.bin")]})
    )
    intake.run(max_idle_polls=1)
    assert [obj.key for obj in enqueued] == ["ok.bin"]
    letters = intake.rt.dead_letters.list()
    assert [(d.task, d.reason) for d in letters] == [("edgematch.intake", "malformed_event")]
    assert _remaining(sqs, intake.queue_url) == 0


def test_event_for_a_bucket_not_allowed_is_logged(
    sqs: Any,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record for a bucket outside the allow-list is skipped with a warning, not silently."""
    intake, enqueued = _intake(sqs, make_settings, allowed_buckets=("uploads",))
    body = {"Records": [_record("x.jpg.bin", bucket="elsewhere"), _record("c.jpg")]}
    sqs.send_message(QueueUrl=intake.queue_url, MessageBody=json.dumps(body))
    with capture_logs() as logs:
        # A logger cached by an earlier configure() would bypass the capture.
        monkeypatch.setattr(intake_module, "log", structlog.get_logger(intake_module.__name__))
        intake.run(max_idle_polls=1)
    assert enqueued == []
    skipped = [(e["log_level"], e["reason"]) for e in logs if e["event"] == "event_skipped"]
    assert skipped == [("warning", "bucket_not_allowed"), ("debug", "suffix")]
    assert "'elsewhere'" in next(e["detail"] for e in logs if e["event"] == "event_skipped")
    assert intake.rt.dead_letters.list() == []
    assert _remaining(sqs, intake.queue_url) == 0


def test_message_is_kept_when_enqueueing_fails(
    sqs: Any, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """If the broker refuses the task, the message stays in SQS for redelivery."""
    intake, _ = _intake(sqs, make_settings)

    def broken(work: Sequence[tuple[ObjectCreated, str]]) -> None:
        raise ConnectionError("broker down")

    intake.enqueue = broken
    sqs.send_message(
        QueueUrl=intake.queue_url, MessageBody=json.dumps({"Records": [_record("x.bin")]})
    )
    assert intake.poll_once() == 1
    assert _remaining(sqs, intake.queue_url) == 1


def test_backlog_over_high_water_stops_receiving(
    sqs: Any,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the high-water mark intake receives nothing; SQS holds the burst until work drains."""
    intake, enqueued = _intake(sqs, make_settings, intake_high_water=3)
    ingest_queue = intake.rt.buffer.keys.queue("ingest")
    redis_client.rpush(ingest_queue, *[b"task"] * 3)  # a backlog of three waiting ingest tasks
    for n in range(5):
        sqs.send_message(
            QueueUrl=intake.queue_url, MessageBody=json.dumps({"Records": [_record(f"{n}.bin")]})
        )
    # Each turn of intake's loop beats its heartbeat, then weighs the backlog: four beats
    # are three turns that found the backlog over the mark (1.5 s paused) and polled nothing.
    beats = threading.Semaphore(0)
    beat = health.beat

    def counted_beat(process: str) -> None:
        beat(process)
        beats.release()

    monkeypatch.setattr(health, "beat", counted_beat)
    runner = threading.Thread(target=intake.run)
    runner.start()
    try:
        for _ in range(4):
            assert beats.acquire(timeout=10), "intake stopped turning"
        assert enqueued == []
        assert _remaining(sqs, intake.queue_url) == 5
        redis_client.delete(ingest_queue)  # the workers caught up
        deadline = time.monotonic() + 10
        while len(enqueued) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        intake.stop()
        runner.join(10)
    assert sorted(obj.key for obj in enqueued) == [f"{n}.bin" for n in range(5)]
    assert intake.stats.paused_s > 1.0
