"""Chaos: hash files without ``content-version-id`` whose content version is ambiguous, or
cannot be told because listing the versions is refused.

The Procfile's real processes against a private redis-server, moto's server (S3 events to
SQS, and for the refusal moto's IAM enforcement) and the sandbox. See
docs/quarantine-and-reports.md, "Which version".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import httpx
import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import (
    MakePipeline,
    cli,
    content_tags,
    dead_letters,
    log_events,
    next_second,
    wait_settled,
)
from tests.support.reviews import HOLD, decide

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

IMAGE = b"\xff\xd8 an image the platform stored "
QUARANTINE = "quarantine"
#: docs/configuration.md tells operators to set EDGEMATCH_RATE_LIMIT to their quota.
RATE = 20.0


def _versions(pipe: LocalPipeline, bucket: str, key: str) -> list[str]:
    listing = pipe.s3().list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def _copied_from(pipe: LocalPipeline, key: str) -> set[str]:
    """The source versions of the quarantined copies of ``key``."""
    s3, target = pipe.s3(), f"{pipe.bucket}/{key}"
    found = set()
    for copy in s3.list_object_versions(Bucket=QUARANTINE, Prefix=target).get("Versions", []):
        head = s3.head_object(Bucket=QUARANTINE, Key=target, VersionId=copy["VersionId"])
        found.add(head["Metadata"]["edgematch-source-version-id"])
    return found


def test_ambiguous_versions_are_all_quarantined_reported_and_released(
    make_pipeline: MakePipeline,
) -> None:
    """v2 and v1's hash file are written in the same second: the hash may be v1's or v2's,
    so both are moved to quarantine, each verified, and the report says why. Rejected by a
    reviewer (reports held for review, as the docs tell operators to), `edgematch release`
    puts both back, v1 first, so v2 is the current version again."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE, settings=HOLD)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    s3 = pipe.s3()
    content_key, hash_key = "ambiguous/pic.jpg", "ambiguous/pic.jpg.bin"
    # A key that merely starts with the content key: never a candidate.
    s3.put_object(Bucket=pipe.bucket, Key=content_key + "2", Body=b"another " + IMAGE)
    matching = os.urandom(HASH)
    pipe.add_known([matching])
    c1 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v1 " + IMAGE)["VersionId"]
    next_second()  # v2 and the hash file share a second (they take milliseconds)
    pipe.upload(hash_key, matching, content=b"v2 " + IMAGE)
    (c2,) = [v for v in _versions(pipe, pipe.bucket, content_key) if v != c1]

    _wait(lambda: len(pipe.reports()) == 1, 60, "the report")
    _wait(lambda: not _versions(pipe, pipe.bucket, content_key), 60, "both versions moved")
    wait_settled(pipe)
    (report,) = pipe.reports()
    assert report["content"]["version_id"] == c2  # the newest candidate
    evidence = report["evidence"]
    assert evidence["state"] == "moved"
    assert "2 content versions could have been the scanned one" in evidence["ambiguity"]
    (other,) = evidence["candidates"]
    assert other["state"] == "moved" and other["original_deleted"] is True
    assert _copied_from(pipe, content_key) == {c1, c2}
    assert _versions(pipe, pipe.bucket, content_key + "2") != []
    assert dead_letters(pipe) == []
    (warned,) = log_events(pipe, "quarantine_ambiguous")
    assert warned["versions"] == [c2, c1]

    shown = cli(pipe, "review", "show", report["report_id"], "--no-link")
    assert shown.returncode == 0, shown.stderr
    assert "ambiguous" in shown.stdout and f"also    moved version {other['version_id']}" in (
        shown.stdout
    )

    decide(pipe, report["report_id"], "rejected")
    done = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert done.returncode == 0, done.stderr
    assert "and candidate version" in done.stdout
    back = _versions(pipe, pipe.bucket, content_key)
    bodies = [
        s3.get_object(Bucket=pipe.bucket, Key=content_key, VersionId=v)["Body"].read() for v in back
    ]
    assert bodies == [b"v2 " + IMAGE, b"v1 " + IMAGE]  # newest first: v2 is current again
    for version in back:
        assert content_tags(pipe, pipe.bucket, content_key, version)["edgematch-status"] == (
            "released"
        )
    (doc,) = pipe.reports()
    assert doc["status"] == "released"
    assert doc["release"]["version_id"] == back[0]
    assert [c["version_id"] for c in doc["release"]["candidates"]] == [back[1]]
    again = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert again.returncode == 0, again.stderr
    assert _versions(pipe, pipe.bucket, content_key) == back


def test_content_deleted_before_the_scan_is_found_under_its_delete_marker(
    make_pipeline: MakePipeline,
) -> None:
    """The owner deletes a matching upload (a delete marker in the versioned bucket)
    before ingest reads its hash file: the deleted version is still stored and readable by
    its id, so it is the one quarantined (moved, verified) and reported — not recorded
    `content_missing` and left in the bucket."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    s3 = pipe.s3()
    content_key, hash_key = "deleted/pic.jpg", "deleted/pic.jpg.bin"
    matching = os.urandom(HASH)
    pipe.add_known([matching])
    pipe.upload(hash_key, matching, content=IMAGE)
    (c1,) = _versions(pipe, pipe.bucket, content_key)
    next_second()
    s3.delete_object(Bucket=pipe.bucket, Key=content_key)  # the event waits in SQS meanwhile
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])

    _wait(lambda: len(pipe.reports()) == 1, 60, "the report")
    _wait(lambda: not _versions(pipe, pipe.bucket, content_key), 60, "the version moved")
    wait_settled(pipe)
    (report,) = pipe.reports()
    assert report["content"]["version_id"] == c1
    assert report["evidence"]["state"] == "moved"
    assert report["evidence"]["original_deleted"] is True
    assert _copied_from(pipe, content_key) == {c1}
    assert dead_letters(pipe) == []


@contextmanager
def _listing_refused(pipe: LocalPipeline) -> Iterator[dict[str, str]]:
    """moto enforcing IAM, with a user allowed everything but s3:ListBucketVersions; yields
    that user's credentials (as the processes' environment). IAM off again on the way out."""
    iam = boto3.client(
        "iam",
        endpoint_url=pipe.moto.url,
        region_name="us-east-1",
        aws_access_key_id="edgematch-local",
        aws_secret_access_key="edgematch-local",
    )
    iam.create_user(UserName="edgematch")
    policy: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:ListBucketVersions", "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName="edgematch", PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="edgematch")["AccessKey"]
    httpx.post(f"{pipe.moto.url}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
    finally:
        httpx.post(f"{pipe.moto.url}/moto-api/reset-auth", content=b"inf").raise_for_status()


def test_refused_version_listing_dead_letters_unscannable_then_replays(
    make_pipeline: MakePipeline,
) -> None:
    """The role may not list versions: the unpinned hash file is never `clean` — it is
    `unscannable` with a dead letter; granted and replayed, v1 (the match) is quarantined."""
    pipe = make_pipeline(rate=RATE, quarantine_bucket=QUARANTINE)
    s3 = pipe.s3()
    content_key, hash_key = "refused/pic.jpg", "refused/pic.jpg.bin"
    matching = os.urandom(HASH)
    pipe.add_known([matching])
    pipe.upload(hash_key, matching, content=b"v1 " + IMAGE)
    (c1,) = _versions(pipe, pipe.bucket, content_key)
    next_second()  # v2 after the hash file: only a listing can tell v1 was scanned
    c2 = s3.put_object(Bucket=pipe.bucket, Key=content_key, Body=b"v2 " + IMAGE)["VersionId"]

    with _listing_refused(pipe) as credentials:
        assert pipe.processes is not None
        for name in ("intake", "worker", "beat"):
            pipe.processes.start(name, env=credentials)
        _wait(lambda: len(dead_letters(pipe)) == 1, 60, "the dead letter")
        _wait(lambda: bool(log_events(pipe, "result_recorded")), 60, "the result")
    (entry,) = dead_letters(pipe)
    assert entry["reason"] == "content_version_unknown"
    assert "cannot be told" in entry["message"]
    verdicts = [e["verdict"] for e in log_events(pipe, "result_recorded")]
    assert verdicts == ["unscannable"]
    assert pipe.reports() == []
    # Nothing was quarantined on a guess: both versions are where they were.
    assert _versions(pipe, pipe.bucket, content_key) == [c2, c1]

    replayed = cli(pipe, "dlq", "replay", entry["id"])
    assert replayed.returncode == 0, replayed.stderr
    _wait(lambda: len(pipe.reports()) == 1, 60, "the report after the replay")
    wait_settled(pipe)
    (report,) = pipe.reports()
    assert report["content"]["version_id"] == c1
    assert report["evidence"]["state"] == "moved" and not report["evidence"]["ambiguity"]
    assert _versions(pipe, pipe.bucket, content_key) == [c2]
    assert _copied_from(pipe, content_key) == {c1}
