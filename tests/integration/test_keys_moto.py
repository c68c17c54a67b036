"""Every legal S3 key through event, ingest, result, tag, quarantine, report and dead letter.

On in-process moto S3 and a private redis-server, with the real event parser, ingest,
results consumer, quarantine and report step (only the API is left out: the hash is the
match the matcher would publish). Keys in several scripts, with spaces, ``+``, ``%``,
``?``, ``#``, and at S3's 1,024-byte limit, in each quarantine mode.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

import pytest
import redis
import structlog

from edgematch.config.settings import Settings
from edgematch.downstream.copies import META_SOURCE_SHA256
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.quarantine import (
    META_SOURCE,
    MOVED,
    SHADOW,
    TAGGED,
    ContentVersion,
    Quarantine,
    quarantine_key,
)
from edgematch.infra.s3text import (
    MAX_KEY_BYTES,
    MAX_METADATA_BYTES,
    decode_metadata_value,
    encode_metadata_value,
    metadata_bytes,
)
from edgematch.pipeline import ingest as ingest_step
from edgematch.pipeline.events import ObjectCreated, parse_message
from edgematch.pipeline.items import Item
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import MATCH, Result
from edgematch.pipeline.tagging import verdict_tags
from edgematch.recovery.replay import plan
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

UPLOADS, QUARANTINE, REPORTS = "uploads", "quarantine", "reports"
TAG = "edgematch-status"
MakeSettings = Callable[..., Settings]

LONGEST = "long/" + "写" * 338 + "a"  # 1,020 bytes: its hash file's key is 1,024
KEYS = [
    "photos/ünï cödé ☃.jpg",
    "写真/猫の写真.jpg",
    "صور/قطة جميلة.jpg",
    "emoji/😀🎉 party.jpg",
    "odd/a+b c%20d?e#f=?g&h.jpg",
    "  lead and trail  .jpg",
    LONGEST,
]
#: At S3's limit: too long for a ".bin" beside it, so named by content-key metadata.
AT_LIMIT = "max/" + "é" * 510
MODES = {
    "move": {"quarantine_bucket": QUARANTINE},
    "tag": {"quarantine_mode": "tag"},
    "off": {"quarantine_mode": "off", "quarantine_bucket": QUARANTINE},
}


@pytest.fixture
def s3(s3: S3Client) -> S3Client:
    """The shared fixture's versioned upload bucket, a locked quarantine bucket, reports."""
    s3.create_bucket(Bucket=QUARANTINE, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=REPORTS)
    return s3


def left_out(result: Result) -> None:
    """The consumer's Celery hand-off is left out: the test runs quarantine and report."""


def _record(bucket: str, key: str, head: dict[str, Any], *, slash: str) -> dict[str, Any]:
    """The S3 event record of a write. ``slash="/"`` as S3 writes keys; ``""`` as moto
    does (``/`` encoded as ``%2F`` too)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": bucket},
            "object": {
                "key": quote_plus(key, safe=slash),
                "size": head["ContentLength"],
                "eTag": head["ETag"].strip('"'),
                "versionId": head.get("VersionId"),
            },
        },
    }


def _event(s3: S3Client, key: str, *, slash: str = "/") -> ObjectCreated:
    head = s3.head_object(Bucket=UPLOADS, Key=key)
    body = json.dumps({"Records": [_record(UPLOADS, key, dict(head), slash=slash)]})
    (obj,) = parse_message(body).objects
    return obj


def _upload(s3: S3Client, content_key: str) -> tuple[str, bytes]:
    """Content with a platform's unicode tags and metadata, then its hash file."""
    s3.put_object(
        Bucket=UPLOADS,
        Key=content_key,
        Body=b"\xff\xd8 image of " + content_key.encode(),
        Tagging="owner=plätform&album=写真 2026",
        Metadata={"reportee-name": encode_metadata_value("Zoë Ångström")},
    )
    hash_bytes = os.urandom(HASH)
    if len(f"{content_key}.bin".encode()) <= MAX_KEY_BYTES:
        hash_key, metadata = f"{content_key}.bin", {}
    else:
        digest = hashlib.sha256(content_key.encode()).hexdigest()[:16]
        hash_key = f"hashes/{digest}.bin"
        metadata = {"content-key": encode_metadata_value(content_key)}
    s3.put_object(Bucket=UPLOADS, Key=hash_key, Body=hash_bytes, Metadata=metadata)
    return hash_key, hash_bytes


def _tags(s3: S3Client, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def _ingest(rt: Runtime, obj: ObjectCreated) -> Item:
    published: list[Result] = []
    outcome = ingest_step.ingest(
        rt,
        obj,
        correlation_id="corr-keys",
        lane="live",
        publish=published.append,
        start_pump=lambda _pump: None,
    )
    assert outcome == ingest_step.ADDED, published
    raws = rt.redis.hvals(rt.buffer.keys.items)
    (item,) = [i for i in map(Item.from_json, raws) if i.key == obj.key]
    return item


@pytest.mark.parametrize("mode", list(MODES))
def test_every_kind_of_key_is_scanned_tagged_quarantined_and_reported(
    s3: S3Client,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    mode: str,
) -> None:
    """Unicode in four scripts, + % ? # and spaces, 1,020 and 1,024 bytes: the event is
    decoded, the content tagged, quarantined in the mode's way with its source readable in
    the copy's metadata, reported under its own key, and found by ``edgematch result``."""
    rt = Runtime(make_settings(namespace=f"keys-{mode}", reports_bucket=REPORTS, **MODES[mode]))
    downstream = rt.downstream
    quarantine = Quarantine(
        settings=rt.settings, evidence=EvidenceStore(s3), objects=rt.store, client=rt.redis
    )
    try:
        for content_key in [*KEYS, AT_LIMIT]:
            hash_key, _hash = _upload(s3, content_key)
            obj = _event(s3, hash_key, slash="")  # moto's spelling
            assert obj == _event(s3, hash_key)  # S3's spelling reads the same
            assert obj.key == hash_key
            item = _ingest(rt, obj)
            assert item.content_key == content_key
            result = Result.for_item(
                item, verdict=MATCH, is_match=True, match_ids=("m-ü",), tracking_id="trk-☃"
            )
            consume(
                result,
                store=rt.results,
                tags=verdict_tags(rt),
                log=structlog.get_logger("test"),
                hand_on=left_out,
            )
            found = rt.results.get(UPLOADS, content_key)
            assert found is not None and found["content_key"] == content_key
            assert _tags(s3, UPLOADS, content_key)[TAG] == MATCH

            evidence = quarantine.run(result)
            _check_evidence(s3, mode, content_key, evidence.state)
            doc = downstream.file_report(result, evidence)
            assert doc["content"]["key"] == content_key and doc["hash"]["key"] == hash_key
            stored = downstream.reports.find(doc["report_id"])
            assert stored is not None and stored["content"]["key"] == content_key
            if evidence.bucket:
                assert evidence.key is not None
                assert len(evidence.key.encode("utf-8")) <= MAX_KEY_BYTES
    finally:
        rt.close()


def _check_evidence(s3: S3Client, mode: str, content_key: str, state: str) -> None:
    source = f"s3://{UPLOADS}/{content_key}"
    if mode == "move":
        assert state == MOVED
        target = quarantine_key(ContentVersion(UPLOADS, content_key, None, None))
        assert len(target.encode("utf-8")) <= MAX_KEY_BYTES
        listing = s3.list_object_versions(Bucket=UPLOADS, Prefix=content_key)
        assert [v for v in listing.get("Versions", []) if v["Key"] == content_key] == []
        head = s3.head_object(Bucket=QUARANTINE, Key=target)
        metadata = head["Metadata"]
        assert all(value.isascii() for value in metadata.values())
        assert metadata_bytes(metadata) <= MAX_METADATA_BYTES
        if META_SOURCE in metadata:
            assert decode_metadata_value(metadata[META_SOURCE]) == source
        else:
            digest = hashlib.sha256(source.encode()).hexdigest()
            assert metadata[META_SOURCE_SHA256] == digest
        assert decode_metadata_value(metadata["reportee-name"]) == "Zoë Ångström"
        assert decode_metadata_value(metadata["edgematch-match-ids"]) == "m-ü"
        assert _tags(s3, QUARANTINE, target) == {
            "owner": "plätform",
            "album": "写真 2026",
            TAG: "quarantined",
        }
    elif mode == "tag":
        assert state == TAGGED
        assert _tags(s3, UPLOADS, content_key)[TAG] == "quarantined"
    else:
        assert state == SHADOW
        assert _tags(s3, UPLOADS, content_key) == {
            "owner": "plätform",
            "album": "写真 2026",
            TAG: MATCH,
        }


def test_the_source_of_a_long_key_is_named_in_full_when_it_fits(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A 1,020-byte key's location (over 1 KB RFC 2047-encoded) still fits beside the rest,
    and a copy's metadata with a large platform set falls back to the location's digest."""
    rt = Runtime(make_settings(namespace="keys-long", quarantine_bucket=QUARANTINE))
    try:
        s3.put_object(
            Bucket=UPLOADS,
            Key=LONGEST,
            Body=b"bytes",
            Metadata={f"p{n}": "x" * 90 for n in range(8)},
        )
        head = s3.head_object(Bucket=UPLOADS, Key=LONGEST)
        result = Result(
            item_id="long-1",
            verdict=MATCH,
            bucket=UPLOADS,
            key=f"{LONGEST}.bin",
            version_id=None,
            etag=None,
            content_bucket=UPLOADS,
            content_key=LONGEST,
            content_version_id=head.get("VersionId"),
            is_match=True,
            correlation_id="corr-long",
            attempts=1,
        )
        quarantine = Quarantine(
            settings=rt.settings, evidence=EvidenceStore(s3), objects=rt.store, client=rt.redis
        )
        assert quarantine.run(result).state == MOVED
        target = quarantine_key(ContentVersion.of(result))
        metadata = s3.head_object(Bucket=QUARANTINE, Key=target)["Metadata"]
        assert metadata_bytes(metadata) <= MAX_METADATA_BYTES
        assert all(metadata[f"p{n}"] == "x" * 90 for n in range(8))
        digest = hashlib.sha256(f"s3://{UPLOADS}/{LONGEST}".encode()).hexdigest()
        assert META_SOURCE not in metadata and metadata[META_SOURCE_SHA256] == digest
    finally:
        rt.close()


@pytest.mark.parametrize("content_key", [KEYS[0], KEYS[4], LONGEST])
def test_a_refused_upload_with_any_key_is_dead_lettered_tagged_and_replayable(
    s3: S3Client,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    content_key: str,
) -> None:
    """An oversized hash file: its dead letter names the key as it is, its content is
    tagged unscannable, and the replay plan reads the same object again."""
    rt = Runtime(make_settings(namespace="keys-dlq"))
    try:
        s3.put_object(Bucket=UPLOADS, Key=content_key, Body=b"image")
        hash_key = f"{content_key}.bin"
        s3.put_object(Bucket=UPLOADS, Key=hash_key, Body=b"x" * 5000)
        published: list[Result] = []
        outcome = ingest_step.ingest(
            rt,
            _event(s3, hash_key, slash=""),
            correlation_id="corr-dlq",
            lane="live",
            publish=published.append,
            start_pump=lambda _pump: None,
        )
        assert outcome == ingest_step.REFUSED
        (entry,) = [e for e in rt.dead_letters.iter() if e.key == hash_key]
        assert entry.bucket == UPLOADS and entry.reason == "bad_input"
        assert json.loads(entry.to_json())["key"] == hash_key
        replay = plan(entry)
        assert replay.kwargs["event"]["key"] == hash_key
        (result,) = published
        consume(
            result,
            store=rt.results,
            tags=verdict_tags(rt),
            log=structlog.get_logger("t"),
            hand_on=left_out,
        )
        assert _tags(s3, UPLOADS, content_key) == {TAG: "unscannable"}
        recorded = rt.results.get(UPLOADS, hash_key)
        assert recorded is not None and recorded["verdict"] == "unscannable"
    finally:
        rt.close()
