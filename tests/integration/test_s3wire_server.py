"""ObjectStore's lean S3 path (infra/s3wire.py) over real HTTP: moto's server in its own
process, and for what moto cannot answer (retried 5xx, AccessDenied, a bad checksum, a
short body) a small HTTP server of the test's own. In-process moto (``mock_aws``) answers
inside botocore, where the lean path never goes: these are its tests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config

from devtools import devstack
from devtools.devstack import MotoServer
from edgematch.config.settings import Settings
from edgematch.errors import (
    BadInput,
    ConfigurationError,
    ObjectMissing,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.infra import s3wire
from edgematch.infra.s3clients import _client
from edgematch.infra.s3wire import S3Wire
from edgematch.infra.storage import ObjectStore, make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

BUCKET = "uploads"
KEYS = [
    "photos/ünï cödé ☃.jpg",
    "写真/猫 + 犬 100%.jpg",
    "صور/قطة?#.jpg",
    "a~b;c=d&e!*'()$,@[]",
    "/leading/slash",
    "double//slash/inside",
    "emoji/😀🎉 a+b.jpg",
    "long/" + "写" * 338 + "a",  # 1,024 bytes
]
HOT = ("GetObject", "GetObjectTagging", "PutObjectTagging")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = MotoServer().start()
    yield server.url
    server.close()


def _env(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> S3Client:
    """The worker's client on moto's server, a fresh versioned bucket each test."""
    _env(monkeypatch, moto_url)
    client = make_s3_client(Settings())
    for bucket in client.list_buckets()["Buckets"]:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket["Name"]):
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                client.delete_object(
                    Bucket=bucket["Name"], Key=item["Key"], VersionId=item["VersionId"]
                )
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture
def boto3_calls(s3: S3Client) -> list[str]:
    """The hot path's operations that went through botocore's pipeline."""
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        if model.name in HOT:
            calls.append(model.name)

    s3.meta.events.register("before-call.s3", record)
    return calls


@pytest.mark.parametrize("key", KEYS)
def test_every_kind_of_key_round_trips_on_the_lean_path(
    s3: S3Client, boto3_calls: list[str], key: str
) -> None:
    """Read by version and by If-Match, tags merged and read back: the right bytes and
    tags for every kind of key, and botocore's pipeline used once (the bucket's route)."""
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=b"hash!", Metadata={"content-key": "c"})
    s3.put_object_tagging(
        Bucket=BUCKET, Key=key, Tagging={"TagSet": [{"Key": "owner", "Value": "team a"}]}
    )
    store = ObjectStore(s3)
    info, data = store.read_hash(
        BUCKET, key, version_id=put["VersionId"], max_bytes=64, expected_size=5
    )
    assert (data, info.key, info.version_id, info.size) == (b"hash!", key, put["VersionId"], 5)
    assert info.metadata == {"content-key": "c"} and info.last_modified is not None
    _, data = store.read_hash(
        BUCKET, key, version_id=None, max_bytes=64, expected_etag=info.etag, expected_size=5
    )
    assert data == b"hash!"
    merged = store.merge_tags(BUCKET, key, {"edgematch-status": "clean", "a b+c=d": "x:y/z@w"})
    expected = {"owner": "team a", "edgematch-status": "clean", "a b+c=d": "x:y/z@w"}
    assert merged == expected
    assert store.get_tags(BUCKET, key, version_id=put["VersionId"]) == expected
    tag_set = s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tag_set} == expected  # as boto3 reads it
    # Our own tagging, the route (resolved by boto3, not sent), our own read of the tags.
    assert boto3_calls == ["PutObjectTagging", "GetObject", "GetObjectTagging"]


def test_lean_requests_are_the_ones_boto3_sends(s3: S3Client) -> None:
    """For every kind of key, with and without a version, each of the three calls: the
    lean path sends the method, URL (which the signature covers) and body boto3 sends."""
    wire = S3Wire(s3)
    lean: list[tuple[str, str, bytes]] = []
    conns = wire._conns
    assert conns is not None
    send = conns.send

    def spy(method: str, url: str, headers: dict[str, str], body: bytes | None, **kw: Any) -> Any:
        lean.append((method, url, body or b""))
        return send(method, url, headers, body, **kw)

    conns.send = spy  # type: ignore[method-assign]
    tags = {"TagSet": [{"Key": "a b+c=d", "Value": "x:y/z@w"}]}
    calls: list[tuple[str, dict[str, Any]]] = []
    for key in KEYS:
        version = s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")["VersionId"]
        for pin in ({}, {"VersionId": version}):
            calls += [
                ("get_object", {"Key": key, **pin}),
                ("get_object_tagging", {"Key": key, **pin}),
                ("put_object_tagging", {"Key": key, **pin, "Tagging": tags}),
            ]
    for name, params in calls:
        getattr(wire, name)(Bucket=BUCKET, **params)
    sent: list[tuple[str, str, bytes]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append((request.method, request.url, request.body or b""))
        return AWSResponse(request.url, 200, HTTPHeaders(), _Empty())

    s3.meta.events.register_first("before-send.s3", answer)  # type: ignore[arg-type]
    for name, params in calls:
        getattr(s3, name)(Bucket=BUCKET, **params)
    assert len(lean) == len(calls) == len(sent)
    assert lean == sent


def test_version_pinned_get_reads_the_old_bytes(s3: S3Client) -> None:
    old = s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="v.bin", Body=b"newer")
    _, data = ObjectStore(s3).read_hash(
        BUCKET, "v.bin", version_id=old["VersionId"], max_bytes=64, expected_size=3
    )
    assert data == b"old"


def test_if_match_mismatch_is_superseded(s3: S3Client) -> None:
    first = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"first")
    s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"second")
    with pytest.raises(ObjectMissing, match=r"^superseded:"):
        ObjectStore(s3).read_hash(
            BUCKET, "k.bin", version_id=None, max_bytes=64,
            expected_etag=first["ETag"], expected_size=5,
        )  # fmt: skip


def test_oversize_refused_on_the_gets_length(s3: S3Client) -> None:
    """The event said 10 bytes; the object has 5000: refused on Content-Length."""
    put = s3.put_object(Bucket=BUCKET, Key="big.bin", Body=b"x" * 5000)
    with pytest.raises(BadInput, match="5000 bytes, over the limit of 16"):
        ObjectStore(s3).read_hash(
            BUCKET, "big.bin", version_id=put["VersionId"], max_bytes=16, expected_size=10
        )


def test_missing_things_are_object_missing(s3: S3Client) -> None:
    store = ObjectStore(s3)
    s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"x")
    with pytest.raises(ObjectMissing, match="NoSuchKey"):
        store.read_hash(BUCKET, "gone.bin", version_id=None, max_bytes=8, expected_etag="e",
                        expected_size=1)  # fmt: skip
    with pytest.raises(ObjectMissing, match="NoSuchVersion"):
        store.read_hash(BUCKET, "k.bin", version_id="nope", max_bytes=8, expected_size=1)
    with pytest.raises(ObjectMissing, match="NoSuchKey"):
        store.get_tags(BUCKET, "gone.bin")
    with pytest.raises(ObjectMissing, match="NoSuchBucket"):
        store.merge_tags("no-such-bucket", "k.bin", {"edgematch-status": "clean"})


def test_unusual_buckets_and_clients_go_through_boto3(
    s3: S3Client, boto3_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARNs and directory buckets, a request boto3 sends with a header the lean path does
    not, a client not retrying in standard mode: boto3 makes the call."""
    wire = S3Wire(s3)
    for bucket in ("arn:aws:s3:us-east-1:123456789012:accesspoint/ap", "b--use1-az4--x-s3"):
        assert wire._route({"Bucket": bucket, "Key": "k"}, set()) is None

    def owner(params: dict[str, Any], **_: Any) -> None:
        params["headers"]["x-amz-expected-bucket-owner"] = "123456789012"

    etag = s3.put_object(Bucket=BUCKET, Key="k.bin", Body=b"bytes")["ETag"]
    s3.meta.events.register("before-call.s3.GetObject", owner)
    store = ObjectStore(s3)
    for _ in range(2):
        store.read_hash(BUCKET, "k.bin", version_id=None, max_bytes=8, expected_etag=etag,
                        expected_size=5)  # fmt: skip
        store.merge_tags(BUCKET, "k.bin", {"edgematch-status": "clean"})
    assert boto3_calls.count("GetObject") == 3  # the route, then both reads
    assert boto3_calls.count("PutObjectTagging") == 1  # the second merge writes nothing

    legacy = _client("s3", Config(retries={"mode": "legacy", "total_max_attempts": 3}))
    assert S3Wire(legacy)._route({"Bucket": BUCKET, "Key": "k"}, set()) is None


# --- moto checking signatures and permissions --------------------------------------------


@pytest.fixture(scope="module")
def checking_moto() -> Iterator[tuple[str, str, str]]:
    """moto's server checking every request's signature and IAM permissions after its
    first three (which make a user allowed everything but PutObjectTagging, and its key):
    its URL, the key id and the secret."""
    port = devstack.free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        devstack.wait_for_port(port, 30.0)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="setup", aws_secret_access_key="setup")  # fmt: skip
        iam.create_user(UserName="worker")
        statements = [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:PutObjectTagging", "Resource": "*"},
        ]
        policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
        iam.put_user_policy(UserName="worker", PolicyName="p", PolicyDocument=policy)
        key = iam.create_access_key(UserName="worker")["AccessKey"]
        yield url, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        devstack._stop(proc)


def test_moto_accepts_the_lean_paths_signatures_and_refuses_a_wrong_one(
    checking_moto: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto recomputes each request's SigV4 signature from what it received: the lean
    path's GETs pass for every kind of key; a wrong secret and a denied action come back as
    boto3's would (ConfigurationError)."""
    url, key_id, secret = checking_moto
    _env(monkeypatch, url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    s3 = make_s3_client(Settings())
    s3.create_bucket(Bucket=BUCKET)
    store = ObjectStore(s3)
    for key in KEYS:
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"hash!", Tagging="a=1")["ETag"]
        _, data = store.read_hash(
            BUCKET, key, version_id=None, max_bytes=8, expected_etag=etag, expected_size=5
        )
        assert data == b"hash!" and store.get_tags(BUCKET, key) == {"a": "1"}
        with pytest.raises(ConfigurationError, match="AccessDenied"):
            store.merge_tags(BUCKET, key, {"edgematch-status": "clean"})
    assert store._wire._routes[BUCKET] is not None  # the lean path made those calls
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ConfigurationError, match="SignatureDoesNotMatch"):
        ObjectStore(make_s3_client(Settings())).get_tags(BUCKET, KEYS[0])


# --- against a server of the test's own ---------------------------------------------------


class _Script(BaseHTTPRequestHandler):
    """Answers each request with the next of ``answers`` (status, headers, body)."""

    answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        status, headers, body = type(self).answers.pop(0)
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _answer

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Script]]:
    class Script(_Script):
        answers: ClassVar[list[tuple[int, dict[str, str], bytes]]] = []
        seen: ClassVar[list[str]] = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _env(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}")
    yield Script
    server.shutdown()
    server.server_close()


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()


def _read(**kwargs: Any) -> bytes:
    store = ObjectStore(make_s3_client(Settings()))
    _, data = store.read_hash(BUCKET, "k.bin", version_id="v1", max_bytes=64, expected_size=5,
                              **kwargs)  # fmt: skip
    return data


def test_5xx_and_slowdown_are_retried_then_answered(scripted: type[_Script]) -> None:
    scripted.answers = [(503, {}, _error("SlowDown")), (500, {}, _error("InternalError")),
                        (200, {}, b"hash!")]  # fmt: skip
    assert _read() == b"hash!"
    assert scripted.seen == ["GET /uploads/k.bin?versionId=v1"] * 3


def test_5xx_past_the_attempts_is_a_server_error(scripted: type[_Script]) -> None:
    scripted.answers = [(503, {}, _error("ServiceUnavailable"))] * 4
    with pytest.raises(ServerError, match="ServiceUnavailable"):
        _read()
    assert len(scripted.seen) == 3  # make_s3_client's total attempts


def test_access_denied_is_a_configuration_error(scripted: type[_Script]) -> None:
    scripted.answers = [(403, {}, _error("AccessDenied"))]
    with pytest.raises(ConfigurationError, match="AccessDenied"):
        _read()


def test_checksum_and_length_of_the_body_are_verified(scripted: type[_Script]) -> None:
    good = base64.b64encode(hashlib.sha256(b"hash!").digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    scripted.answers = [(200, {"x-amz-checksum-sha256": good}, b"hash!")]
    assert _read() == b"hash!"
    assert scripted.seen == ["GET /uploads/k.bin?versionId=v1"]
    scripted.answers = [(200, {"x-amz-checksum-sha256": bad}, b"hash!")]
    with pytest.raises(TransientError, match="FlexibleChecksumError"):
        _read()
    scripted.answers = [(200, {"Content-Length": "9"}, b"hash!")]  # then the socket closes
    with pytest.raises(TransportError, match="IncompleteReadError"):
        _read()
    scripted.answers = [(200, {"x-amz-checksum-sha256": "not base64!"}, b"hash!")]
    with pytest.raises(TransientError, match="FlexibleChecksumError"):
        _read()
    scripted.answers = [(200, {"Content-Length": "5x"}, b"hash!")]
    with pytest.raises(TransientError, match="UnreadableAnswer"):
        _read()


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize("body", [_error("InternalError"), b"<html><body>proxy</body></html>"])
def test_a_tagging_answer_that_is_not_one_is_never_no_tags(
    scripted: type[_Script], lean: bool, body: bytes
) -> None:
    """A 200 whose body is not S3's <Tagging> (a store's error sent with 200, a proxy's
    page) is unreadable, on either path: the object's tags are never taken for none, and
    merging ours writes nothing (a whole new set would wipe the others, a stronger
    verdict among them)."""
    scripted.answers = [(200, {}, body)] * 6  # botocore retries a 200 InternalError
    store = ObjectStore(make_s3_client(Settings()), lean=lean)
    with pytest.raises(TransientError):
        store.get_tags(BUCKET, "k.bin")
    with pytest.raises(TransientError):
        store.merge_tags(BUCKET, "k.bin", {"edgematch-status": "clean"})
    assert set(scripted.seen) == {"GET /uploads/k.bin?tagging"}  # never a PUT


_TAGGING = b'<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet/></Tagging>'


@pytest.mark.parametrize("lean", [True, False])
def test_a_tag_write_answered_200_with_an_error_is_retried_not_done(
    scripted: type[_Script], lean: bool
) -> None:
    """S3 may answer 200 with an <Error> body: botocore takes it for a 500 and retries, and
    so does the lean path; a tag write S3 refused is never taken for written."""
    put = "PUT /uploads/k.bin?tagging"
    scripted.answers = [(200, {}, _TAGGING), (200, {}, _error("InternalError")), (200, {}, b"")]
    store = ObjectStore(make_s3_client(Settings()), lean=lean)
    assert store.merge_tags(BUCKET, "k.bin", {"edgematch-status": "match"}) == {
        "edgematch-status": "match"
    }
    assert scripted.seen == ["GET /uploads/k.bin?tagging", put, put]
    scripted.seen.clear()
    refused: tuple[int, dict[str, str], bytes] = (200, {}, _error("InternalError"))
    scripted.answers = [(200, {}, _TAGGING), refused, refused, refused]
    with pytest.raises(ServerError, match="InternalError"):
        store.merge_tags(BUCKET, "k.bin", {"edgematch-status": "match"})
    assert scripted.seen == ["GET /uploads/k.bin?tagging", put, put, put]


def test_refused_connection_is_a_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Script)
    port = server.server_address[1]
    server.server_close()
    _env(monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError):
        _read()


class _Empty:
    def read(self, *_: Any, **__: Any) -> bytes:
        return b""

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        return None


def test_the_routes_kept_are_bounded(
    s3: S3Client, boto3_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bucket names come from events: past MAX_ROUTES buckets the oldest route is dropped
    (and resolved again when its bucket comes back), so the cache cannot grow without end."""
    monkeypatch.setattr(s3wire, "MAX_ROUTES", 2)
    wire = S3Wire(s3)
    for bucket in ("bucket-1", "bucket-2", "bucket-3", "bucket-3"):
        assert wire._route({"Bucket": bucket, "Key": "k"}, set()) is not None
    assert list(wire._routes) == ["bucket-2", "bucket-3"]
    assert boto3_calls.count("GetObject") == 3  # one resolution a bucket
    wire._route({"Bucket": "bucket-1", "Key": "k"}, set())
    assert list(wire._routes) == ["bucket-3", "bucket-1"]
    assert boto3_calls.count("GetObject") == 4
