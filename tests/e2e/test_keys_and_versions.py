"""Any S3 key, and late events, through the Procfile's real processes.

moto's server holds the buckets and sends its own S3 notifications to SQS (keys encoded
the way moto does, ``/`` as ``%2F`` too); intake, the worker (every queue) and beat run
as an operator would start them; the sandbox answers MatchEdgeHash; the on-call commands
run as subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote_plus

import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.downstream.quarantine import META_SOURCE, ContentVersion, quarantine_key
from edgematch.infra.s3text import decode_metadata_value
from tests.support.hashes import HASH
from tests.support.pipelines import (
    MakePipeline,
    cli,
    content_tags,
    dead_letters,
    log_events,
    wait_settled,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUARANTINE = "quarantine"
TAG = "edgematch-status"
FAST_RETRIES = {"EDGEMATCH_BACKOFF_BASE_S": "0.2", "EDGEMATCH_BACKOFF_CAP_S": "1"}
HIT_KEYS = ["photos/ünï cödé ☃.jpg", "写真/猫 + 犬 100%.jpg", "long/" + "写" * 338 + "a"]
CLEAN_KEYS = ["صور/قطة?#.jpg", "emoji/😀🎉 a+b.jpg"]


@pytest.mark.parametrize("mode", ["move", "tag", "off"])
def test_keys_of_every_kind_are_scanned_quarantined_reported_and_found(
    make_pipeline: MakePipeline, mode: str
) -> None:
    """Unicode in four scripts, + % ? # spaces and a 1,024-byte hash key: every upload gets
    its verdict, each hit is quarantined in the mode's way and reported under its key, and
    `edgematch result`, `reports list`, `dlq list` and `dlq show` print the keys as text."""
    settings = dict(FAST_RETRIES)
    if mode != "move":
        settings["EDGEMATCH_QUARANTINE_MODE"] = mode
    pipe = make_pipeline(quarantine_bucket=QUARANTINE, settings=settings)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hits = {key: os.urandom(HASH) for key in HIT_KEYS}
    pipe.add_known(hits.values())
    for key in [*HIT_KEYS, *CLEAN_KEYS]:
        data = hits.get(key) or os.urandom(HASH)
        pipe.upload(f"{key}.bin", data, content=b"\xff\xd8 " + key.encode())
    refused = "refused/ünï ☃ 写真.jpg"
    pipe.upload(f"{refused}.bin", b"x" * 5000, content=b"an image")

    hash_keys = [f"{k}.bin" for k in [*HIT_KEYS, *CLEAN_KEYS, refused]]
    results = pipe.wait_for_results(hash_keys, timeout_s=90)
    assert set(results) == set(hash_keys)
    _wait(lambda: len(pipe.reports()) == len(HIT_KEYS), 90, "a report per hit")
    wait_settled(pipe)  # a result is recorded before its content is tagged

    for key in HIT_KEYS:
        assert results[f"{key}.bin"]["verdict"] == "match"
        _check_quarantined(pipe, mode, key)
    for key in CLEAN_KEYS:
        assert results[f"{key}.bin"]["verdict"] == "clean"
        assert content_tags(pipe, pipe.bucket, key)[TAG] == "clean"
    assert results[f"{refused}.bin"]["verdict"] == "unscannable"
    assert content_tags(pipe, pipe.bucket, refused)[TAG] == "unscannable"
    reported = {r["content"]["key"]: r for r in pipe.reports()}
    assert set(reported) == set(HIT_KEYS)

    # On call finds them by their keys, and reads the keys back as text.
    for key in [HIT_KEYS[0], CLEAN_KEYS[0]]:
        shown = cli(pipe, "result", f"s3://{pipe.bucket}/{key}")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["content_key"] == key and key in shown.stdout
    listed = cli(pipe, "reports", "list")
    assert listed.returncode == 0 and HIT_KEYS[1] in listed.stdout, listed.stderr
    dlq = cli(pipe, "dlq", "list")
    assert dlq.returncode == 0 and f"{refused}.bin" in dlq.stdout, dlq.stderr
    (letter,) = [e for e in dead_letters(pipe) if e["key"] == f"{refused}.bin"]
    shown = cli(pipe, "dlq", "show", letter["id"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["key"] == f"{refused}.bin"


def _check_quarantined(pipe: LocalPipeline, mode: str, key: str) -> None:
    s3 = pipe.s3()
    versions = s3.list_object_versions(Bucket=pipe.bucket, Prefix=key).get("Versions", [])
    left = [v for v in versions if v["Key"] == key]
    if mode == "move":
        assert left == [], f"{key} is still in the upload bucket"
        target = quarantine_key(ContentVersion(pipe.bucket, key, None, None))
        assert len(target.encode()) <= 1024
        head = s3.head_object(Bucket=QUARANTINE, Key=target)
        assert head["ObjectLockLegalHoldStatus"] == "ON"
        source = head["Metadata"].get(META_SOURCE)
        assert source is None or decode_metadata_value(source) == f"s3://{pipe.bucket}/{key}"
        assert content_tags(pipe, QUARANTINE, target)[TAG] == "quarantined"
    else:
        assert len(left) == 1
        assert content_tags(pipe, pipe.bucket, key)[TAG] == (
            "quarantined" if mode == "tag" else "match"
        )


# --- late events ----------------------------------------------------------------------------


def _silence_notifications(pipe: LocalPipeline) -> None:
    """Stop the bucket's own events: the test delivers them itself, in its own order."""
    pipe.s3().put_bucket_notification_configuration(
        Bucket=pipe.bucket, NotificationConfiguration={}
    )


def _put(pipe: LocalPipeline, key: str, content: bytes, hash_bytes: bytes) -> dict[str, Any]:
    """Upload content and its hash file; return the event S3 sends for the hash file."""
    s3 = pipe.s3()
    s3.put_object(Bucket=pipe.bucket, Key=key, Body=content, Tagging="owner=platform")
    s3.put_object(Bucket=pipe.bucket, Key=f"{key}.bin", Body=hash_bytes)
    head = s3.head_object(Bucket=pipe.bucket, Key=f"{key}.bin")
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": pipe.bucket},
            "object": {
                "key": quote_plus(f"{key}.bin"),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
            },
        },
    }
    return {"Records": [record]}


def _send(pipe: LocalPipeline, events: Sequence[Mapping[str, Any]]) -> None:
    sqs = pipe.sqs()
    for event in events:
        sqs.send_message(QueueUrl=pipe.queue_url, MessageBody=json.dumps(event))


def test_a_late_event_never_undoes_the_newest_verdict(make_pipeline: MakePipeline) -> None:
    """Unversioned bucket, tag mode (the defaults): a key uploaded twice, the second
    upload's event delivered first. Its verdict stands: the quarantined hit stays tagged
    quarantined (unreadable under the tag-mode policy) and the clean upload stays clean;
    the first upload's late event ends as an unscannable result that touches neither,
    and `edgematch result` still shows the newest content's verdict."""
    pipe = make_pipeline(versioned=False, settings=FAST_RETRIES)
    _silence_notifications(pipe)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    # Key 1: a hit uploaded over an earlier clean upload. Key 2: a clean upload over one.
    hit_key, clean_key = "late/ünï hit.jpg", "late/写真 clean.jpg"
    early = [
        _put(pipe, hit_key, b"first, clean", os.urandom(HASH)),
        _put(pipe, clean_key, b"first, clean too", os.urandom(HASH)),
    ]
    newest = [
        _put(pipe, hit_key, b"second, the hit", hit),
        _put(pipe, clean_key, b"second, clean", os.urandom(HASH)),
    ]
    _send(pipe, newest)
    _wait(lambda: len(pipe.reports()) == 1, 60, "the hit's report")
    _wait(
        lambda: content_tags(pipe, pipe.bucket, hit_key).get(TAG) == "quarantined", 30, "quarantine"
    )
    _wait(
        lambda: content_tags(pipe, pipe.bucket, clean_key).get(TAG) == "clean", 30, "the clean tag"
    )
    newest_results = {k: pipe.result(f"{k}.bin") for k in (hit_key, clean_key)}

    _send(pipe, early)
    # Both late events are read, refused as replaced (dead letters) and recorded.
    _wait(
        lambda: len([e for e in dead_letters(pipe) if "superseded" in e["message"]]) == 2,
        60,
        "the two late events' dead letters",
    )
    late = {f"{hit_key}.bin", f"{clean_key}.bin"}
    _wait(
        lambda: len([e for e in log_events(pipe, "result_recorded") if e["key"] in late]) == 4,
        60,
        "the two late results",
    )
    assert content_tags(pipe, pipe.bucket, hit_key) == {"owner": "platform", TAG: "quarantined"}
    assert content_tags(pipe, pipe.bucket, clean_key) == {"owner": "platform", TAG: "clean"}
    late_results = [e for e in log_events(pipe, "result_recorded") if e["key"] in late][-2:]
    assert [e.get("current") for e in late_results] == [False, False]
    for key in (hit_key, clean_key):
        assert pipe.result(f"{key}.bin") == newest_results[key]
    shown = cli(pipe, "result", f"s3://{pipe.bucket}/{hit_key}")
    assert shown.returncode == 0 and json.loads(shown.stdout)["verdict"] == "match"
    (report,) = pipe.reports()
    assert report["evidence"]["state"] == "tagged"
    assert report["content"]["etag"] == hashlib.md5(b"second, the hit").hexdigest()
