"""The content version of an unpinned hash file, attributed on moto's S3 (in-process):
which S3 requests it takes, and what it finds. See edgematch/pipeline/attribution.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from edgematch.infra.storage import ObjectInfo, ObjectStore
from edgematch.pipeline.attribution import Attribution, content_version
from tests.integration.conftest import UPLOADS
from tests.support.hashes import HASH
from tests.support.pipelines import next_second

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

KEY = "photos/pic.jpg"


@pytest.fixture
def listings(s3: S3Client) -> Iterator[list[str]]:
    """The ListObjectVersions requests the client sends (a botocore event hook)."""
    sent: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["Prefix"])

    s3.meta.events.register("provide-client-params.s3.ListObjectVersions", note)
    yield sent


def _hash_file(s3: S3Client, bucket: str, metadata: dict[str, str] | None = None) -> ObjectInfo:
    s3.put_object(Bucket=bucket, Key=f"{KEY}.bin", Body=os.urandom(HASH), Metadata=metadata or {})
    info, _ = ObjectStore(s3).read_hash(bucket, f"{KEY}.bin", version_id=None, max_bytes=4096)
    return info


def _put(s3: S3Client, bucket: str, body: bytes) -> dict[str, Any]:
    reply = s3.put_object(Bucket=bucket, Key=KEY, Body=body)
    return {"version": reply.get("VersionId"), "etag": reply["ETag"].strip('"')}


def test_an_unversioned_bucket_names_its_one_version_by_etag(
    s3: S3Client, listings: list[str]
) -> None:
    s3.create_bucket(Bucket="plain")
    content = _put(s3, "plain", b"v1")
    info = _hash_file(s3, "plain")
    assert content_version(ObjectStore(s3), info, "plain", KEY) == Attribution(etag=content["etag"])
    assert listings == []


def test_a_current_version_of_an_earlier_second_needs_no_listing(
    s3: S3Client, listings: list[str]
) -> None:
    content = _put(s3, UPLOADS, b"v1")
    next_second()
    info = _hash_file(s3, UPLOADS)
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert found == Attribution(content["version"], content["etag"])
    assert listings == []


def test_a_newer_upload_is_passed_over_by_the_listing(s3: S3Client, listings: list[str]) -> None:
    """v2 written a second after the hash file: the hash stands for v1."""
    v1 = _put(s3, UPLOADS, b"v1")
    info = _hash_file(s3, UPLOADS)
    next_second()
    _put(s3, UPLOADS, b"v2")
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert found == Attribution(v1["version"], v1["etag"])
    assert listings == [KEY]


def test_a_delete_marker_among_the_candidates_is_ambiguous(
    s3: S3Client, listings: list[str]
) -> None:
    """v1, deleted (a delete marker) and uploaded again as v2 in the hash file's second:
    v2 and v1 are both candidates, and the marker is named."""
    v1 = _put(s3, UPLOADS, b"v1")
    next_second()
    s3.delete_object(Bucket=UPLOADS, Key=KEY)
    v2 = _put(s3, UPLOADS, b"v2")
    info = _hash_file(s3, UPLOADS)
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert (found.version_id, found.candidates) == (v2["version"], (v1["version"],))
    assert found.ambiguity and "delete marker" in found.ambiguity
    assert listings == [KEY]


def test_content_never_uploaded_is_unknown_without_a_listing(
    s3: S3Client, listings: list[str]
) -> None:
    """No version at all (the platform keeps its images elsewhere): unknown, which
    quarantine records as content_missing; no request per hash file to find out."""
    info = _hash_file(s3, UPLOADS)
    assert content_version(ObjectStore(s3), info, UPLOADS, KEY) == Attribution()
    assert listings == []


def test_content_deleted_behind_a_delete_marker_is_found_by_the_listing(
    s3: S3Client, listings: list[str]
) -> None:
    """Deleted before the scan in a versioned bucket: the version under the delete marker
    is still stored (readable by its id), so it is the one attributed — a match must not
    stay reachable because its owner deleted the current version."""
    v1 = _put(s3, UPLOADS, b"v1")
    next_second()
    info = _hash_file(s3, UPLOADS)
    next_second()
    s3.delete_object(Bucket=UPLOADS, Key=KEY)
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert found == Attribution(v1["version"], v1["etag"])
    assert listings == [KEY]


def test_content_deleted_in_the_hash_files_second_is_ambiguous_and_kept(
    s3: S3Client, listings: list[str]
) -> None:
    """Uploaded and deleted in the hash file's own second: the deleted version is the
    candidate, and the marker is named."""
    v1 = _put(s3, UPLOADS, b"v1")
    s3.delete_object(Bucket=UPLOADS, Key=KEY)
    info = _hash_file(s3, UPLOADS)
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert (found.version_id, found.candidates) == (v1["version"], ())
    assert found.ambiguity and "delete marker" in found.ambiguity
    assert listings == [KEY]


def test_a_deleted_object_of_an_unversioned_bucket_is_unknown_without_a_listing(
    s3: S3Client, listings: list[str]
) -> None:
    s3.create_bucket(Bucket="plain")
    _put(s3, "plain", b"v1")
    s3.delete_object(Bucket="plain", Key=KEY)
    info = _hash_file(s3, "plain")
    assert content_version(ObjectStore(s3), info, "plain", KEY) == Attribution()
    assert listings == []


def test_a_pinned_version_is_taken_as_it_is(s3: S3Client, listings: list[str]) -> None:
    _put(s3, UPLOADS, b"v1")
    info = _hash_file(s3, UPLOADS, {"content-version-id": "pinned-version"})
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert found == Attribution(version_id="pinned-version")
    assert listings == []


def test_the_listing_pages_past_newer_versions_and_stops_at_other_keys(
    s3: S3Client, listings: list[str]
) -> None:
    """101 newer uploads fill the first page; the hash file's own key (which starts with
    the content key) is never taken for a version of it."""
    v1 = _put(s3, UPLOADS, b"v1")
    info = _hash_file(s3, UPLOADS)
    next_second()
    for n in range(101):
        _put(s3, UPLOADS, b"newer %d" % n)
    found = content_version(ObjectStore(s3), info, UPLOADS, KEY)
    assert found == Attribution(v1["version"], v1["etag"])
    assert listings == [KEY, KEY]
