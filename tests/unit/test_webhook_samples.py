"""The bodies MinIO, Ceph RGW and S3 send (tests/samples/notifications) read as they should,
and the development tools' builders make bodies of the same shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.senders import ceph_notification, minio_notification
from edgematch.pipeline.events import parse_message, select

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "notifications"
KEY = "photos/2026/cat photo+1.jpg.bin"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def same_shape(made: Any, sent: Any, where: str = "") -> list[str]:
    """Where two JSON documents differ in their fields (values left out; a list's items are
    compared by its first, an empty list matches any list)."""
    if isinstance(made, dict) and isinstance(sent, dict):
        out = [f"{where}/{k}: only in one" for k in set(made) ^ set(sent)]
        for k in set(made) & set(sent):
            out += same_shape(made[k], sent[k], f"{where}/{k}")
        return out
    if isinstance(made, list) and isinstance(sent, list):
        return same_shape(made[0], sent[0], f"{where}[0]") if made and sent else []
    if isinstance(made, dict | list) or isinstance(sent, dict | list):
        return [f"{where}: {type(made).__name__} here, {type(sent).__name__} there"]
    return []


def test_every_sample_is_listed_with_its_source() -> None:
    """Each sample file is named in the README table that says where it comes from."""
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for path in SAMPLES.glob("*.json"):
        assert f"`{path.name}`" in readme, path.name


def test_minio_webhook_body() -> None:
    """MinIO's event.Log: the record is read, its QueryEscape'd key decoded."""
    (obj,) = parse_message(sample("minio-source-put-bin.json")).objects
    assert (obj.bucket, obj.key, obj.source) == ("uploads", KEY, "minio")
    assert obj.version_id == "9a7d8f3e-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    assert obj.etag == "5f3b0c1e8d2a4b6c9e7f1a2b3c4d5e6f" and obj.size == 924
    assert obj.event_name == "ObjectCreated:Put"
    # The envelope's Key is the same object, unescaped: bucket/key.
    assert json.loads(sample("minio-source-put-bin.json"))["Key"] == f"uploads/{KEY}"


def test_ceph_http_endpoint_body() -> None:
    """Ceph RGW's record: the key is taken as it is (a space and a + stay), opaqueData ignored."""
    (obj,) = parse_message(sample("ceph-source-put-bin.json")).objects
    assert (obj.bucket, obj.key, obj.source) == ("uploads", KEY, "ceph")
    assert obj.version_id == "Lb0x2mKq8yZ3n1vT7wS4rU6pO9iA5sDf" and obj.size == 924


def test_ceph_documentation_body_reads_its_string_size() -> None:
    """The example of Ceph's docs writes "size":"1024" and an empty versionId."""
    (obj,) = parse_message(sample("ceph-docs-put.json")).objects
    assert obj.size == 1024 and obj.version_id is None and obj.key == "myimage1.jpg"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("minio-docs-put.json", "suffix"),  # myphoto.jpg: not a hash file
        ("minio-source-put-tagging.json", "not_object_created"),  # our own tag writes
        ("ceph-source-delete.json", "not_object_created"),
        ("ceph-docs-put.json", "suffix"),
        ("s3-docs-put.json", "suffix"),
    ],
)
def test_what_announces_no_hash_file_is_skipped(name: str, reason: str) -> None:
    """Other events and other keys are skipped for a reason, never an error."""
    parsed = select(parse_message(sample(name)), suffix=".bin")
    assert not parsed.objects
    assert [s.reason for s in parsed.skipped] == [reason]


def test_the_bucket_allow_list_applies_to_webhook_bodies() -> None:
    """A MinIO body for a bucket outside EDGEMATCH_ALLOWED_BUCKETS is skipped as such."""
    parsed = select(
        parse_message(sample("minio-source-put-bin.json")),
        suffix=".bin",
        allowed_buckets=("other",),
    )
    assert not parsed.objects and parsed.skipped[0].reason == "bucket_not_allowed"


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (minio_notification, "minio-source-put-bin.json"),
        (ceph_notification, "ceph-source-put-bin.json"),
    ],
)
def test_builders_make_the_senders_shape(build: Any, name: str) -> None:
    """The demo's and the tests' bodies have exactly the sample's fields, and read back."""
    made = build("uploads", KEY, version_id="v1", etag='"abc"', size=924)
    assert same_shape(made, json.loads(sample(name))) == []
    (obj,) = parse_message(json.dumps(made)).objects
    assert (obj.bucket, obj.key, obj.version_id, obj.etag, obj.size) == (
        "uploads",
        KEY,
        "v1",
        "abc",
        924,
    )
