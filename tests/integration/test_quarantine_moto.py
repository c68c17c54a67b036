"""Quarantine against in-process moto S3 (Object Lock included) and a private redis-server.

Each test uploads a content object, builds the ``match`` result ingest would have made
for it, and runs :class:`Quarantine` the way the ``edgematch.quarantine`` task does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import redis

from edgematch.config.settings import Settings
from edgematch.downstream.evidence import EvidenceStore, VersionInfo
from edgematch.downstream.quarantine import (
    CONTENT_MISSING,
    MOVED,
    QUARANTINED,
    SHADOW,
    TAGGED,
    CopyUnverified,
    Quarantine,
    QuarantineUnavailable,
)
from edgematch.errors import TransientError
from edgematch.infra.keys import Keys
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.results import Result
from tests.support.results import match_result

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

UPLOADS, QUARANTINE, PLAIN = "uploads", "quarantine", "quarantine-plain"
KEY = "photos/cat.jpg"
IMAGE = b"\xff\xd8 matched image bytes"
MakeSettings = Callable[..., Settings]


@pytest.fixture
def s3(s3: S3Client) -> S3Client:
    """The shared fixture's versioned upload bucket (conftest.py), plus a locked and an
    unlocked quarantine bucket."""
    s3.create_bucket(Bucket=QUARANTINE, ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket=PLAIN)
    return s3


def _quarantine(
    s3: S3Client,
    client: redis.Redis,
    make_settings: MakeSettings,
    *,
    store: EvidenceStore | None = None,
    **settings: Any,
) -> Quarantine:
    settings.setdefault("quarantine_bucket", QUARANTINE)
    return Quarantine(
        settings=make_settings(**settings),
        evidence=store or EvidenceStore(s3),
        objects=ObjectStore(s3),
        client=client,
    )


def _upload(s3: S3Client, body: bytes = IMAGE, bucket: str = UPLOADS) -> dict[str, Any]:
    """A content upload as the platform makes it: metadata, tags, then our match tag."""
    reply = s3.put_object(
        Bucket=bucket,
        Key=KEY,
        Body=body,
        ContentType="image/jpeg",
        Metadata={"uploader": "u-1"},
        Tagging="owner=platform&edgematch-status=match",
    )
    return {"version_id": reply.get("VersionId"), "etag": reply["ETag"].strip('"')}


def _result(written: dict[str, Any], **overrides: Any) -> Result:
    """A match of the content version ``written`` (``_put``'s answer)."""
    version = {"content_version_id": written["version_id"], "content_etag": written["etag"]}
    return match_result(**{**version, **overrides})


def _versions(s3: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]  # type: ignore[misc]


def _tags(s3: S3Client, bucket: str, key: str, version_id: str | None = None) -> dict[str, str]:
    extra = {"VersionId": version_id} if version_id else {}
    reply = s3.get_object_tagging(Bucket=bucket, Key=key, **extra)  # type: ignore[arg-type]
    return {t["Key"]: t["Value"] for t in reply["TagSet"]}


def test_move_copies_holds_verifies_then_deletes_the_scanned_version(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """The copy keeps metadata and tags, is held for a year; the original version is gone."""
    written = _upload(s3)
    evidence = _quarantine(s3, redis_client, make_settings).run(_result(written))

    assert evidence.state == MOVED and evidence.original_deleted
    assert evidence.bucket == QUARANTINE and evidence.key == f"{UPLOADS}/{KEY}"
    assert _versions(s3, UPLOADS, KEY) == []
    (copy,) = _versions(s3, QUARANTINE, f"{UPLOADS}/{KEY}")
    head = s3.head_object(Bucket=QUARANTINE, Key=f"{UPLOADS}/{KEY}", VersionId=copy["VersionId"])
    assert head["ContentLength"] == len(IMAGE) and head["ContentType"] == "image/jpeg"
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    until = head["ObjectLockRetainUntilDate"]
    assert until >= dt.datetime.now(dt.UTC) + dt.timedelta(days=364)
    assert head["Metadata"]["uploader"] == "u-1"
    assert head["Metadata"]["edgematch-match-ids"] == "m1,m2"
    assert head["Metadata"]["edgematch-tracking-id"] == "track-1"
    assert head["Metadata"]["edgematch-source-version-id"] == written["version_id"]
    assert _tags(s3, QUARANTINE, f"{UPLOADS}/{KEY}") == {
        "owner": "platform",
        "edgematch-status": QUARANTINED,
    }
    body = s3.get_object(Bucket=QUARANTINE, Key=f"{UPLOADS}/{KEY}")["Body"].read()
    assert body == IMAGE


def test_repeats_make_no_second_copy(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Three runs, and one more after Redis forgot: one copy, the same evidence."""
    written = _upload(s3)
    quarantine = _quarantine(s3, redis_client, make_settings)
    first = quarantine.run(_result(written))
    assert quarantine.run(_result(written)).version_id == first.version_id
    assert quarantine.run(_result(written, item_id="item-2")).version_id == first.version_id
    redis_client.flushdb()  # a replay after the idempotency TTL: S3 itself tells
    again = quarantine.run(_result(written))
    assert again.state == MOVED and again.version_id == first.version_id
    assert "already gone" in (again.detail or "")
    assert len(_versions(s3, QUARANTINE, f"{UPLOADS}/{KEY}")) == 1


def test_only_the_scanned_version_is_moved(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A newer upload made while the old one was scanned stays; the scanned bytes go."""
    scanned = _upload(s3)
    newer = _upload(s3, body=b"a newer, different image")
    evidence = _quarantine(s3, redis_client, make_settings).run(_result(scanned))

    assert evidence.state == MOVED
    (left,) = _versions(s3, UPLOADS, KEY)
    assert left["VersionId"] == newer["version_id"]
    copied = s3.get_object(Bucket=QUARANTINE, Key=f"{UPLOADS}/{KEY}")["Body"].read()
    assert copied == IMAGE


def test_content_deleted_before_the_scan_is_recorded(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """The owner deleted the content first: content_missing, and nothing is copied."""
    written = _upload(s3)
    s3.delete_object(Bucket=UPLOADS, Key=KEY, VersionId=written["version_id"])
    evidence = _quarantine(s3, redis_client, make_settings).run(_result(written))
    assert evidence.state == CONTENT_MISSING and evidence.bucket is None
    assert "gone" in (evidence.detail or "")
    assert _versions(s3, QUARANTINE, f"{UPLOADS}/{KEY}") == []


class _ShortCopies(EvidenceStore):
    """A store whose quarantine bucket loses a byte: what a failed copy looks like."""

    def head(
        self, bucket: str, key: str, *, version_id: str | None = None, if_match: str | None = None
    ) -> VersionInfo:
        info = super().head(bucket, key, version_id=version_id, if_match=if_match)
        if bucket == QUARANTINE:
            return VersionInfo(**{**info.__dict__, "size": info.size - 1})
        return info


def test_unverified_copy_leaves_the_original_untouched(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A copy that does not read back right: CopyUnverified (retried), original intact."""
    written = _upload(s3)
    quarantine = _quarantine(s3, redis_client, make_settings, store=_ShortCopies(s3))
    with pytest.raises(CopyUnverified, match="the original stays"):
        quarantine.run(_result(written))
    assert isinstance(CopyUnverified("x"), TransientError)
    (left,) = _versions(s3, UPLOADS, KEY)
    assert left["VersionId"] == written["version_id"]
    assert s3.get_object(Bucket=UPLOADS, Key=KEY)["Body"].read() == IMAGE
    assert _tags(s3, UPLOADS, KEY)["edgematch-status"] == "match"
    keys = Keys(make_settings().namespace)
    assert redis_client.get(keys.quarantine_done(f"{UPLOADS}\x00{KEY}\x00x")) is None


def test_missing_quarantine_bucket_is_named(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A quarantine bucket that does not exist is a permanent error naming it; nothing moves."""
    written = _upload(s3)
    quarantine = _quarantine(s3, redis_client, make_settings, quarantine_bucket="no-such-bucket")
    with pytest.raises(QuarantineUnavailable, match="no-such-bucket"):
        quarantine.run(_result(written))
    assert len(_versions(s3, UPLOADS, KEY)) == 1


def test_unlocked_quarantine_bucket_gets_a_verified_copy_without_hold(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Without Object Lock there is nothing to hold, and the move still completes."""
    written = _upload(s3)
    evidence = _quarantine(s3, redis_client, make_settings, quarantine_bucket=PLAIN).run(
        _result(written)
    )
    assert evidence.state == MOVED and not evidence.legal_hold
    assert _versions(s3, UPLOADS, KEY) == []


def test_unversioned_upload_is_pinned_by_etag(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Unversioned: the scanned bytes move; bytes written over them later are left alone."""
    s3.create_bucket(Bucket="flat")
    scanned = _upload(s3, bucket="flat")
    quarantine = _quarantine(s3, redis_client, make_settings)
    moved = quarantine.run(_result(scanned, content_bucket="flat"))
    assert moved.state == MOVED
    assert s3.list_objects_v2(Bucket="flat").get("KeyCount") == 0

    # The same bytes uploaded again: moved again (the copy already holds them).
    again = _upload(s3, bucket="flat")
    assert quarantine.run(_result(again, content_bucket="flat", item_id="item-2")).state == MOVED
    assert s3.list_objects_v2(Bucket="flat").get("KeyCount") == 0
    assert len(_versions(s3, QUARANTINE, f"flat/{KEY}")) == 1

    # Other matched bytes, scanned, then overwritten by the owner before quarantine: what
    # was scanned is gone and was never copied; the owner's new bytes stay.
    replaced = _upload(s3, body=b"another matched image", bucket="flat")
    s3.put_object(Bucket="flat", Key=KEY, Body=b"overwritten by the owner")
    evidence = quarantine.run(_result(replaced, content_bucket="flat", item_id="item-3"))
    assert evidence.state == CONTENT_MISSING and "superseded" in (evidence.detail or "")
    assert s3.get_object(Bucket="flat", Key=KEY)["Body"].read() == b"overwritten by the owner"


def test_tag_mode_merges_into_the_scanned_version_only(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Tag mode: quarantined joins the other tags of the scanned version; a newer one is not."""
    scanned = _upload(s3)
    newer = _upload(s3, body=b"newer")
    quarantine = _quarantine(
        s3, redis_client, make_settings, quarantine_bucket=None, quarantine_mode=None
    )
    evidence = quarantine.run(_result(scanned))
    assert evidence.state == TAGGED and evidence.version_id == scanned["version_id"]
    assert _tags(s3, UPLOADS, KEY, scanned["version_id"]) == {
        "owner": "platform",
        "edgematch-status": QUARANTINED,
    }
    assert _tags(s3, UPLOADS, KEY, newer["version_id"])["edgematch-status"] == "match"
    assert len(_versions(s3, UPLOADS, KEY)) == 2


def test_shadow_mode_touches_nothing(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """off: the decision is returned; objects, tags and the quarantine bucket are as before."""
    written = _upload(s3)
    evidence = _quarantine(s3, redis_client, make_settings, quarantine_mode="off").run(
        _result(written)
    )
    assert evidence.state == SHADOW
    assert f"would move to s3://{QUARANTINE}/{UPLOADS}/{KEY}" in (evidence.detail or "")
    assert len(_versions(s3, UPLOADS, KEY)) == 1
    assert _tags(s3, UPLOADS, KEY) == {"owner": "platform", "edgematch-status": "match"}
    assert _versions(s3, QUARANTINE, f"{UPLOADS}/{KEY}") == []


def test_a_version_under_way_elsewhere_is_retried(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Two deliveries at once: the second finds the lock taken and retries later."""
    written = _upload(s3)
    result = _result(written)
    keys = Keys(make_settings().namespace)
    lock_key = keys.quarantine_lock(f"{UPLOADS}\x00{KEY}\x00{written['version_id']}")
    redis_client.set(lock_key, "another-worker", ex=60)
    with pytest.raises(TransientError, match="under way"):
        _quarantine(s3, redis_client, make_settings).run(result)
    assert len(_versions(s3, UPLOADS, KEY)) == 1
