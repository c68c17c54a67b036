"""ObjectStore against in-process moto (no process boundary), plus error translation."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from edgematch.config.settings import Settings
from edgematch.errors import (
    BadInput,
    ConfigurationError,
    ObjectMissing,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.infra.s3wire import ROUTE_PROBE
from edgematch.infra.storage import (
    ObjectInfo,
    ObjectStore,
    content_location,
    make_s3_client,
    make_sqs_client,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

BUCKET = "uploads"


@pytest.fixture
def s3(aws_env: None) -> Iterator[S3Client]:
    with mock_aws():
        client = make_s3_client(Settings())
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def gets(s3: S3Client) -> list[dict[str, Any]]:
    """The API parameters of every GetObject call made on the client (but the one that
    resolves the bucket's route for the lean path, answered locally, never sent)."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if ROUTE_PROBE not in params["Key"]:
            calls.append(dict(params))

    s3.meta.events.register("before-parameter-build.s3.GetObject", record)
    return calls


# --- read_hash ----------------------------------------------------------------------------


def test_oversized_hash_file_refused_before_download(
    s3: S3Client, gets: list[dict[str, Any]]
) -> None:
    """A 5000-byte hash file over a 4096 limit is refused on the HEAD; no GetObject."""
    s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"x" * 5000)
    with pytest.raises(BadInput, match="hash file is 5000 bytes, over the limit of 4096"):
        ObjectStore(s3).read_hash(BUCKET, "big.bin", version_id=None, max_bytes=4096)
    assert gets == []


def test_empty_hash_file_refused_before_download(s3: S3Client, gets: list[dict[str, Any]]) -> None:
    """A zero-byte hash file is BadInput "empty hash file" without a GetObject."""
    s3.put_object(Bucket=BUCKET, Key="empty.bin", Body=b"")
    with pytest.raises(BadInput, match="empty hash file"):
        ObjectStore(s3).read_hash(BUCKET, "empty.bin", version_id=None, max_bytes=4096)
    assert gets == []


def test_exact_bytes_are_read(s3: S3Client, gets: list[dict[str, Any]]) -> None:
    """Every byte value comes back unchanged, with size, ETag and metadata from the HEAD."""
    payload = bytes(range(256)) * 4
    put = s3.put_object(
        Bucket=BUCKET,
        Key="photos/cat.jpg.bin",
        Body=payload,
        Metadata={"content-key": "originals/cat.jpg"},
        ContentType="application/octet-stream",
    )
    info, data = ObjectStore(s3).read_hash(
        BUCKET, "photos/cat.jpg.bin", version_id=None, max_bytes=1024
    )
    assert data == payload
    assert info.size == 1024
    assert info.etag == put["ETag"].strip('"')
    assert info.metadata == {"content-key": "originals/cat.jpg"}
    assert info.content_type == "application/octet-stream"
    # Without a version id the GET is pinned to the ETag the HEAD saw.
    assert gets[0]["IfMatch"] == put["ETag"]


def test_hash_file_of_exactly_max_bytes_is_read(s3: S3Client) -> None:
    """A file of exactly max_bytes is within the limit."""
    s3.put_object(Bucket=BUCKET, Key="edge.bin", Body=b"y" * 16)
    _, data = ObjectStore(s3).read_hash(BUCKET, "edge.bin", version_id=None, max_bytes=16)
    assert data == b"y" * 16


def test_superseded_object_is_missing(s3: S3Client, gets: list[dict[str, Any]]) -> None:
    """An overwritten unversioned object no longer matching the event's ETag is superseded."""
    first = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"first")
    s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"second")
    with pytest.raises(ObjectMissing, match=r"^superseded:"):
        ObjectStore(s3).read_hash(
            BUCKET, "k.bin", version_id=None, max_bytes=64, expected_etag=first["ETag"].strip('"')
        )
    assert gets == []


def test_expected_etag_that_matches_reads(s3: S3Client) -> None:
    """An unquoted expected ETag that still matches reads the object."""
    put = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"same")
    _, data = ObjectStore(s3).read_hash(
        BUCKET, "k.bin", version_id=None, max_bytes=64, expected_etag=put["ETag"].strip('"')
    )
    assert data == b"same"


def test_missing_object_raises_object_missing(s3: S3Client) -> None:
    """A key that does not exist is ObjectMissing, for read_hash and head alike."""
    store = ObjectStore(s3)
    with pytest.raises(ObjectMissing, match="does not exist"):
        store.read_hash(BUCKET, "nope.bin", version_id=None, max_bytes=64)
    with pytest.raises(ObjectMissing):
        store.head(BUCKET, "nope.bin")


def test_missing_bucket_raises_object_missing(s3: S3Client) -> None:
    """Tags of an object in a bucket that does not exist: ObjectMissing naming the bucket."""
    with pytest.raises(ObjectMissing, match="no-such-bucket"):
        ObjectStore(s3).get_tags("no-such-bucket", "k.bin")


def test_versioned_read_returns_the_old_bytes(s3: S3Client) -> None:
    """Reading by the first version id after a newer upload gives the first bytes."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"old bytes")
    s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"new bytes, longer")
    info, data = ObjectStore(s3).read_hash(
        BUCKET, "v.bin", version_id=old["VersionId"], max_bytes=64
    )
    assert data == b"old bytes"
    assert info.version_id == old["VersionId"]
    assert info.size == len(b"old bytes")


def test_unknown_version_raises_object_missing(s3: S3Client) -> None:
    """A version id that the object never had is ObjectMissing."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"bytes")
    with pytest.raises(ObjectMissing):
        ObjectStore(s3).read_hash(
            BUCKET, "v.bin", version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY", max_bytes=64
        )


def test_versioned_bucket_without_event_version_pins_get_to_head_version(
    s3: S3Client, gets: list[dict[str, Any]]
) -> None:
    """Without a version id in the event, the GET uses the version the HEAD found."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"bytes")
    info, _ = ObjectStore(s3).read_hash(BUCKET, "v.bin", version_id=None, max_bytes=64)
    assert info.version_id == put["VersionId"]
    assert gets[0]["VersionId"] == put["VersionId"]


@pytest.fixture
def heads(s3: S3Client) -> list[dict[str, Any]]:
    """The API parameters of every HeadObject call made on the client."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    s3.meta.events.register("before-parameter-build.s3.HeadObject", record)
    return calls


def test_event_size_skips_the_head_and_pins_the_get_to_the_etag(
    s3: S3Client, heads: list[dict[str, Any]], gets: list[dict[str, Any]]
) -> None:
    """With the event's size and ETag, one GET pinned by If-Match reads the file: no HEAD,
    and size, ETag, metadata and content type come from the GET."""
    payload = bytes(range(256)) * 3
    put = s3.put_object(
        Bucket=BUCKET,
        Key="photos/cat.jpg.bin",
        Body=payload,
        Metadata={"content-key": "originals/cat.jpg"},
        ContentType="application/octet-stream",
    )
    info, data = ObjectStore(s3).read_hash(
        BUCKET,
        "photos/cat.jpg.bin",
        version_id=None,
        max_bytes=1024,
        expected_etag=put["ETag"].strip('"'),
        expected_size=len(payload),
    )
    assert data == payload
    assert heads == []
    assert [g["IfMatch"] for g in gets] == [put["ETag"]]
    assert info.size == len(payload)
    assert info.etag == put["ETag"].strip('"')
    assert info.metadata == {"content-key": "originals/cat.jpg"}
    assert info.content_type == "application/octet-stream"


def test_event_size_with_version_id_gets_that_version_without_a_head(
    s3: S3Client, heads: list[dict[str, Any]], gets: list[dict[str, Any]]
) -> None:
    """With a version id and the event's size, the GET names the version; no HEAD."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"old bytes")
    s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"new bytes, longer")
    info, data = ObjectStore(s3).read_hash(
        BUCKET, "v.bin", version_id=old["VersionId"], max_bytes=64, expected_size=9
    )
    assert data == b"old bytes"
    assert info.version_id == old["VersionId"]
    assert heads == []
    assert [g["VersionId"] for g in gets] == [old["VersionId"]]


def test_event_size_in_versioned_bucket_without_version_id_reports_the_version(
    s3: S3Client, heads: list[dict[str, Any]]
) -> None:
    """An event with an ETag but no version id (MinIO, moto): the version read is reported."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"bytes")
    info, _ = ObjectStore(s3).read_hash(
        BUCKET,
        "v.bin",
        version_id=None,
        max_bytes=64,
        expected_etag=put["ETag"].strip('"'),
        expected_size=5,
    )
    assert info.version_id == put["VersionId"]
    assert heads == []


def test_event_size_superseded_object_is_missing(s3: S3Client) -> None:
    """Without the HEAD, an overwrite since the event is still ObjectMissing "superseded"."""
    first = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"first")
    s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"second")
    with pytest.raises(ObjectMissing, match=r"^superseded:"):
        ObjectStore(s3).read_hash(
            BUCKET,
            "k.bin",
            version_id=None,
            max_bytes=64,
            expected_etag=first["ETag"].strip('"'),
            expected_size=5,
        )


def test_event_size_that_understates_the_object_is_refused_before_the_body(
    aws_env: None,
) -> None:
    """An event that claims 10 bytes for a 5000-byte object: refused on the GET's length,
    before any of the body is read."""
    client, stub = _stubbed()
    stream = _CountingStream(b"x" * 5000)
    stub.add_response("get_object", {"Body": StreamingBody(stream, 5000), "ContentLength": 5000})
    with stub, pytest.raises(BadInput, match="5000 bytes, over the limit of 16"):
        ObjectStore(client, lean=False).read_hash(
            BUCKET, "k.bin", version_id=None, max_bytes=16, expected_etag="e", expected_size=10
        )
    assert stream.requested == []


def test_event_size_without_a_pin_or_out_of_range_keeps_the_head(
    s3: S3Client, heads: list[dict[str, Any]]
) -> None:
    """No ETag and no version id, or an event size of 0 or over the limit: the HEAD is made."""
    put = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"bytes")
    store = ObjectStore(s3)
    store.read_hash(BUCKET, "k.bin", version_id=None, max_bytes=64, expected_size=5)
    etag = put["ETag"].strip('"')
    for size in (0, 65):
        store.read_hash(
            BUCKET, "k.bin", version_id=None, max_bytes=64, expected_etag=etag, expected_size=size
        )
    assert len(heads) == 3


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requested: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.requested.append(size)
        return super().read(size)


def _stubbed() -> tuple[S3Client, Stubber]:
    """A client answered by botocore's Stubber. Its ObjectStore must be made with
    ``lean=False``: the lean path would resolve the bucket with a call of its own (taking
    a stubbed answer), then send over HTTP; tests/integration/test_s3wire_server.py has
    the lean path's equivalents."""
    client: S3Client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    return client, Stubber(client)


def test_object_grown_between_head_and_get_is_refused_after_a_bounded_read(
    aws_env: None,
) -> None:
    """A GET longer than the limit reads max_bytes + 1 bytes at most, then refuses."""
    client, stub = _stubbed()
    stream = _CountingStream(b"x" * 5000)
    stub.add_response("head_object", {"ContentLength": 10, "ETag": '"e"'})
    stub.add_response("get_object", {"Body": StreamingBody(stream, 5000)})
    with stub, pytest.raises(BadInput, match="grew past the limit of 16 bytes"):
        ObjectStore(client, lean=False).read_hash(BUCKET, "k.bin", version_id=None, max_bytes=16)
    assert stream.requested == [17]


# --- tags ---------------------------------------------------------------------------------


def test_merge_tags_keeps_others_and_overwrites_ours(s3: S3Client) -> None:
    """Existing tags survive, our keys are overwritten, the merged set is returned."""
    s3.put_object(
        Bucket=BUCKET, Key="cat.jpg", Body=b"img", Tagging="owner=team-a&edgematch-status=pending"
    )
    store = ObjectStore(s3)
    merged = store.merge_tags(BUCKET, "cat.jpg", {"edgematch-status": "clean", "scan": "1"})
    expected = {"owner": "team-a", "edgematch-status": "clean", "scan": "1"}
    assert merged == expected
    assert store.get_tags(BUCKET, "cat.jpg") == expected


def test_merge_tags_over_ten_is_refused_and_writes_nothing(s3: S3Client) -> None:
    """Nine tags of others plus two of ours is 11: BadInput, existing tags untouched."""
    others = {f"t{i}": str(i) for i in range(9)}
    s3.put_object(
        Bucket=BUCKET,
        Key="cat.jpg",
        Body=b"img",
        Tagging="&".join(f"{k}={v}" for k, v in others.items()),
    )
    store = ObjectStore(s3)
    with pytest.raises(BadInput, match=r"11 tags .* at most 10"):
        store.merge_tags(BUCKET, "cat.jpg", {"a": "1", "b": "2"})
    assert store.get_tags(BUCKET, "cat.jpg") == others


def test_merge_tags_overwriting_at_ten_is_allowed(s3: S3Client) -> None:
    """Overwriting one of ten existing tags stays at ten and is written."""
    tags = {f"t{i}": str(i) for i in range(10)}
    s3.put_object(
        Bucket=BUCKET, Key="c", Body=b"i", Tagging="&".join(f"{k}={v}" for k, v in tags.items())
    )
    merged = ObjectStore(s3).merge_tags(BUCKET, "c", {"t0": "new"})
    assert len(merged) == 10
    assert ObjectStore(s3).get_tags(BUCKET, "c")["t0"] == "new"


def test_merge_tags_refuses_overlong_tag(s3: S3Client) -> None:
    """A tag value over 256 characters is BadInput before any call."""
    with pytest.raises(BadInput, match="over 256"):
        ObjectStore(s3).merge_tags(BUCKET, "whatever", {"k": "v" * 257})


def test_merge_tags_on_missing_object(s3: S3Client) -> None:
    """Tagging an object that is gone raises ObjectMissing."""
    with pytest.raises(ObjectMissing):
        ObjectStore(s3).merge_tags(BUCKET, "gone.jpg", {"edgematch-status": "clean"})


def test_merge_tags_on_a_version_leaves_the_current_version_alone(s3: S3Client) -> None:
    """Tags written to an old version id do not appear on the current version."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=BUCKET, Key="cat.jpg", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="cat.jpg", Body=b"new")
    store = ObjectStore(s3)
    store.merge_tags(BUCKET, "cat.jpg", {"edgematch-status": "match"}, version_id=old["VersionId"])
    assert store.get_tags(BUCKET, "cat.jpg", version_id=old["VersionId"]) == {
        "edgematch-status": "match"
    }
    assert store.get_tags(BUCKET, "cat.jpg") == {}


# --- content_location ---------------------------------------------------------------------


def _info(key: str, **metadata: str) -> ObjectInfo:
    return ObjectInfo(
        bucket=BUCKET, key=key, size=144, etag="e", version_id=None, metadata=metadata
    )


def test_content_location_without_metadata_strips_the_suffix() -> None:
    """photos/cat.jpg.bin stands for photos/cat.jpg in the same bucket."""
    assert content_location(_info("photos/cat.jpg.bin"), suffix=".bin") == (
        BUCKET,
        "photos/cat.jpg",
    )


def test_content_location_from_metadata(s3: S3Client) -> None:
    """content-key and content-bucket metadata, read back by a real HEAD, win over the suffix."""
    s3.create_bucket(Bucket="originals")
    s3.put_object(
        Bucket=BUCKET,
        Key="hashes/1.bin",
        Body=b"h",
        Metadata={"content-key": "2024/cat photo.jpg", "content-bucket": "originals"},
    )
    info = ObjectStore(s3).head(BUCKET, "hashes/1.bin")
    assert content_location(info, suffix=".bin", allowed_buckets={"originals"}) == (
        "originals",
        "2024/cat photo.jpg",
    )


def test_content_location_refuses_a_bucket_not_allowed() -> None:
    """A content-bucket outside the allow-list (and not the hash's own) is BadInput."""
    with pytest.raises(BadInput, match="not allowed"):
        content_location(_info("h.bin", **{"content-bucket": "elsewhere"}), suffix=".bin")


@pytest.mark.parametrize("content_key", ["../etc/passwd", "a/./b", "a/..", "", "a\x00b", "..\\x"])
def test_content_location_refuses_traversal_metadata(content_key: str) -> None:
    """A content-key with '.'/'..' segments, NUL, or empty is BadInput."""
    with pytest.raises(BadInput, match="refused"):
        content_location(_info("h.bin", **{"content-key": content_key}), suffix=".bin")


@pytest.mark.parametrize(("key", "why"), [("photo.jpg", "does not end"), (".bin", "empty key")])
def test_content_location_refuses_unusable_hash_keys(key: str, why: str) -> None:
    """A hash key without the suffix, or equal to it, names no content object."""
    with pytest.raises(BadInput, match=why):
        content_location(_info(key), suffix=".bin")


# --- error translation and clients -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "expected", "text"),
    [
        ("AccessDenied", 403, ConfigurationError, "lacks permission for s3:GetObject"),
        ("SlowDown", 503, ServerError, "SlowDown"),
        ("InternalError", 500, ServerError, "InternalError"),
        ("NoSuchKey", 404, ObjectMissing, "does not exist"),
        ("InvalidObjectState", 403, BadInput, "InvalidObjectState"),
        ("WeirdNewCode", 400, TransientError, "WeirdNewCode"),
    ],
)
def test_client_errors_are_translated(
    aws_env: None, code: str, status: int, expected: type[Exception], text: str
) -> None:
    """Each S3 error code lands on its edgematch class, with the code in the message."""
    client, stub = _stubbed()
    stub.add_client_error("get_object_tagging", service_error_code=code, http_status_code=status)
    with stub, pytest.raises(expected, match=text) as info:
        ObjectStore(client).get_tags(BUCKET, "k")
    assert type(info.value) is expected


def test_access_denied_names_the_action(aws_env: None) -> None:
    """A 403 on HEAD names the IAM action a person must grant."""
    client, stub = _stubbed()
    stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
    with stub, pytest.raises(ConfigurationError, match=r"s3:GetObjectVersion on s3://uploads/k"):
        ObjectStore(client).head(BUCKET, "k", version_id="v1")


def test_connection_errors_are_transport_errors(aws_env: None) -> None:
    """An unreachable endpoint is a TransportError, not a botocore exception."""
    client, _ = _stubbed()

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    client.meta.events.register("before-send.s3.HeadObject", refuse)
    with pytest.raises(TransportError, match="EndpointConnectionError"):
        ObjectStore(client).head(BUCKET, "k")


def test_make_s3_client_config(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard retries, 3 attempts in all, settings' timeouts, AWS_ENDPOINT_URL_S3 honoured."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9000")
    client = make_s3_client(Settings(api_connect_timeout_s=2.0, api_timeout_s=7.0))
    config: Any = client.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7.0)
    assert client.meta.endpoint_url == "http://127.0.0.1:9000"


def test_make_sqs_client_outlasts_the_long_poll(aws_env: None) -> None:
    """The SQS read timeout exceeds the intake long-poll wait."""
    client = make_sqs_client(Settings(intake_wait_s=20))
    config: Any = client.meta.config
    assert config.read_timeout > 20
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_make_s3_client_reads_last_modified_as_boto3_does(s3: S3Client) -> None:
    """A HEAD's LastModified through edgematch's client (its own timestamp parser) is the
    instant a default boto3 client reads from the same answer."""
    s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    ours = s3.head_object(Bucket=BUCKET, Key="k")["LastModified"]
    theirs = boto3.client("s3").head_object(Bucket=BUCKET, Key="k")["LastModified"]
    assert ours == theirs
    assert ours.utcoffset() == dt.timedelta(0)
