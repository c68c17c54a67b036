"""Quarantine and reporting end to end, through the Procfile's real processes.

moto's server holds the upload bucket, a quarantine bucket with Object Lock and the
reports bucket; the sandbox answers MatchEdgeHash; the worker consumes every queue,
quarantine and reports included, exactly as an operator would run it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from devtools.sandbox.webhook import WebhookReceiver
from tests.support.hashes import HASH
from tests.support.pipelines import (
    MakePipeline,
    cli,
    content_tags,
    log_events,
    next_second,
    redeliver,
    wait_settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

IMAGE = b"\xff\xd8 an image the platform stored"
QUARANTINE = "quarantine"
SECRET = "whsec-e2e-0123456789"
FAST_RETRIES = {"EDGEMATCH_BACKOFF_BASE_S": "0.2", "EDGEMATCH_BACKOFF_CAP_S": "1"}


@pytest.fixture
def make_pipeline(make_pipeline: MakePipeline) -> MakePipeline:
    """The shared factory, each pipeline with its processes started (two worker processes)."""

    def make(**kwargs: Any) -> LocalPipeline:
        pipe = make_pipeline(**kwargs)
        pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
        return pipe

    return make


def _versions(pipe: LocalPipeline, bucket: str, key: str) -> list[dict[str, Any]]:
    listing = pipe.s3().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_match_is_moved_verified_and_reported_once(make_pipeline: MakePipeline) -> None:
    """A matched upload ends up only in quarantine, held, with one report, whatever repeats."""
    pipe = make_pipeline(quarantine_bucket=QUARANTINE, settings=FAST_RETRIES)
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    # An earlier, unscanned version of the key: quarantine must take the scanned one only.
    # Each a second apart: of versions written in the hash file's own second, any could
    # have been the scanned one, and all would be quarantined (docs/quarantine-and-reports.md).
    earlier = pipe.s3().put_object(Bucket=pipe.bucket, Key="photos/hit.jpg", Body=b"earlier")
    next_second()
    pipe.s3().put_object(
        Bucket=pipe.bucket, Key="photos/hit.jpg", Body=IMAGE, Tagging="owner=platform"
    )
    next_second()
    pipe.upload("photos/hit.jpg.bin", hit)
    pipe.upload("photos/ok.jpg.bin", os.urandom(HASH), content=b"a clean image")
    _wait(lambda: len(pipe.reports()) == 1, 60, "the report")

    # Only in quarantine, verified and held; the clean upload is where it was.
    (left,) = _versions(pipe, pipe.bucket, "photos/hit.jpg")
    assert left["VersionId"] == earlier["VersionId"]
    (copy,) = _versions(pipe, QUARANTINE, "uploads/photos/hit.jpg")
    head = pipe.s3().head_object(
        Bucket=QUARANTINE, Key="uploads/photos/hit.jpg", VersionId=copy["VersionId"]
    )
    assert head["ObjectLockLegalHoldStatus"] == "ON" and head["ContentLength"] == len(IMAGE)
    assert content_tags(pipe, QUARANTINE, "uploads/photos/hit.jpg") == {
        "owner": "platform",
        "edgematch-status": "quarantined",
    }
    assert pipe.exists(pipe.bucket, "photos/ok.jpg")
    (report,) = pipe.reports()
    assert report["status"] == "pending" and report["reporter"] == "record"
    assert report["evidence"]["state"] == "moved" and report["evidence"]["legal_hold"] is True
    assert report["evidence"]["version_id"] == copy["VersionId"]
    assert report["content"]["key"] == "photos/hit.jpg" and report["match_ids"]

    # The same result delivered three more times: still one copy, one report.
    result = pipe.result("photos/hit.jpg.bin")
    assert result is not None
    redeliver(pipe, result, 3)
    _wait(lambda: len(log_events(pipe, "quarantine_repeat")) >= 3, 60, "three repeats")
    wait_settled(pipe)  # the report tasks that follow each repeat
    assert len(pipe.reports()) == 1
    assert len(_versions(pipe, QUARANTINE, "uploads/photos/hit.jpg")) == 1
    # The repeats tagged no other version of the key as a match.
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg") == {}

    # A re-upload of the matched hash: from the match cache, no API call, its own report.
    items_before = pipe.sandbox_stats()["items_total"]
    pipe.upload("photos/again.jpg.bin", hit, content=b"the same picture, uploaded again")
    _wait(lambda: len(pipe.reports()) == 2, 60, "the second report")
    assert pipe.sandbox_stats()["items_total"] == items_before
    again = pipe.result("photos/again.jpg.bin")
    assert again is not None and again["verdict"] == "match" and again["from_cache"] is True
    assert _versions(pipe, pipe.bucket, "photos/again.jpg") == []
    assert pipe.exists(QUARANTINE, "uploads/photos/again.jpg")

    # A person finds them again.
    listed = cli(pipe, "reports", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = [json.loads(line)["report_id"] for line in listed.stdout.splitlines()]
    assert sorted(ids) == sorted(r["report_id"] for r in pipe.reports())
    shown = cli(pipe, "reports", "show", ids[0])
    assert shown.returncode == 0 and json.loads(shown.stdout)["report_id"] == ids[0]
    assert cli(pipe, "reports", "show", "rpt-none").returncode == 1

    # One correlation id from the upload to its report; no image bytes in any log.
    corr = report["correlation_id"]
    lines = [json.loads(line) for line in pipe.log_lines("worker") if line.startswith("{")]
    events = {line["event"] for line in lines if line.get("correlation_id") == corr}
    assert {"result_recorded", "quarantine_done", "report_recorded"} <= events
    assert IMAGE.hex()[:24] not in "\n".join(pipe.log_lines("worker"))


def test_webhook_sees_one_delivery_per_report(make_pipeline: MakePipeline) -> None:
    """The receiver answers 500 once: the retry carries the same key, one report arrives."""
    with WebhookReceiver(SECRET, fail_first=1) as hook:
        pipe = make_pipeline(
            quarantine_bucket=QUARANTINE,
            settings={
                **FAST_RETRIES,
                "EDGEMATCH_REPORTER": "webhook",
                # Sent without review, as the docs tell operators who want that (the
                # review path: tests/e2e/test_review.py).
                "EDGEMATCH_REVIEW": "off",
                "EDGEMATCH_REPORT_WEBHOOK_URL": hook.url,
                "EDGEMATCH_REPORT_WEBHOOK_SECRET": SECRET,
            },
        )
        hit = os.urandom(HASH)
        pipe.add_known([hit])
        pipe.upload("photos/hit.jpg.bin", hit, content=IMAGE)

        def submitted() -> bool:
            docs = pipe.reports()
            return bool(docs) and docs[0]["status"] == "submitted"

        _wait(submitted, 60, "the report to be submitted")
        wait_settled(pipe)
        requests = hook.requests
    (report,) = pipe.reports()
    assert [r.status for r in requests] == [500, 200]
    assert all(r.signature_ok for r in requests)
    assert {r.idempotency_key for r in requests} == {report["report_id"]}
    assert list(hook.delivered) == [report["report_id"]]
    assert report["submission"]["http_status"] == 200
    assert SECRET not in "\n".join(pipe.log_lines("worker"))


def test_shadow_mode_touches_nothing(make_pipeline: MakePipeline) -> None:
    """off: the match is decided and recorded (a shadow report); no object is touched."""
    pipe = make_pipeline(
        quarantine_bucket=QUARANTINE, settings={"EDGEMATCH_QUARANTINE_MODE": "off"}
    )
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    pipe.upload("photos/hit.jpg.bin", hit, content=IMAGE)
    _wait(lambda: len(pipe.reports()) == 1, 60, "the shadow report")
    (report,) = pipe.reports()
    assert report["status"] == "shadow" and report["evidence"]["state"] == "shadow"
    assert "would move" in report["evidence"]["detail"]
    assert len(_versions(pipe, pipe.bucket, "photos/hit.jpg")) == 1
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg") == {
        "owner": "platform",
        "edgematch-status": "match",
    }
    assert pipe.s3().list_object_versions(Bucket=QUARANTINE).get("Versions", []) == []


def test_tag_mode_keeps_existing_tags(make_pipeline: MakePipeline) -> None:
    """No quarantine bucket: the content is tagged quarantined beside the platform's tags."""
    pipe = make_pipeline()
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    pipe.upload("photos/hit.jpg.bin", hit, content=IMAGE)
    _wait(lambda: len(pipe.reports()) == 1, 60, "the report")
    (report,) = pipe.reports()
    assert report["evidence"]["state"] == "tagged"
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg") == {
        "owner": "platform",
        "edgematch-status": "quarantined",
    }
    assert len(_versions(pipe, pipe.bucket, "photos/hit.jpg")) == 1


def test_quarantine_that_cannot_complete_fails_closed(make_pipeline: MakePipeline) -> None:
    """The quarantine bucket refuses the copy: a dead letter, the content in place, tagged match."""
    pipe = make_pipeline(
        settings={**FAST_RETRIES, "EDGEMATCH_QUARANTINE_BUCKET": "no-such-quarantine"}
    )
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    pipe.upload("photos/hit.jpg.bin", hit, content=IMAGE)
    _wait(lambda: len(pipe.reports()) == 1, 60, "the report of the unpreserved match")

    client = redis.Redis.from_url(pipe.redis.url)
    entries = [json.loads(v) for v in client.hvals(pipe.keys.dead_letters)]
    client.close()
    (entry,) = [e for e in entries if e["task"] == "edgematch.quarantine"]
    assert entry["reason"] == "quarantine_unavailable" and "no-such-quarantine" in entry["message"]
    assert entry["key"] == "photos/hit.jpg"
    assert len(_versions(pipe, pipe.bucket, "photos/hit.jpg")) == 1
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg")["edgematch-status"] == "match"
    (report,) = pipe.reports()
    assert report["evidence"]["state"] == "failed"
    assert "quarantine_unavailable" in report["evidence"]["detail"]
