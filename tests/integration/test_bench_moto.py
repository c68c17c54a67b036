"""The benchmark's moto (bench/motocount.py) over real HTTP: kept alive on its main port,
as S3 and SQS are, closing every connection on the other, one moto behind both, and every
request counted by operation whichever port it came through."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import boto3
import pytest

from bench.motocount import CountingMotoServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto() -> Iterator[CountingMotoServer]:
    server = CountingMotoServer().start()
    yield server
    server.close()


def _two_requests(port: int) -> tuple[str | None, str | None, bool]:
    """Two GETs on one connection: the first answer's Connection header, the second's, and
    whether both went over the same socket."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/_bench/requests")
        sock = conn.sock
        first = conn.getresponse()  # drops its socket when the answer says it closes
        first.read()
        conn.request("GET", "/_bench/requests")  # reconnects by itself when closed
        same = conn.sock is sock
        second = conn.getresponse()
        second.read()
        return first.getheader("Connection"), second.getheader("Connection"), same
    finally:
        conn.close()


def test_main_port_keeps_the_connection_and_the_closing_port_closes_it(
    moto: CountingMotoServer,
) -> None:
    kept = _two_requests(moto.port)
    assert kept[0] != "close"
    assert kept[2] is True  # the second request went over the first one's socket
    closing = _two_requests(moto.closing_port)
    assert closing[0] == "close"
    assert closing[2] is False


def test_one_moto_behind_both_ports_counted_whichever_was_used(
    moto: CountingMotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    kept = boto3.client("s3", endpoint_url=moto.url)
    closing = boto3.client("s3", endpoint_url=moto.closing_url)
    http_ = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=10)
    http_.request("POST", "/_bench/requests/reset")
    http_.getresponse().read()
    kept.create_bucket(Bucket="bench-moto")
    key = "a b/ünï + c%20d 100%.bin"
    kept.put_object(Bucket="bench-moto", Key=key, Body=b"\x01" * 924)
    # Written through one port, read through the other: the same buckets, the same keys.
    assert closing.get_object(Bucket="bench-moto", Key=key)["Body"].read() == b"\x01" * 924
    listed = closing.list_objects_v2(Bucket="bench-moto")["Contents"]
    assert [o["Key"] for o in listed] == [key]
    closing.put_object_tagging(
        Bucket="bench-moto", Key=key, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
    )
    assert kept.get_object_tagging(Bucket="bench-moto", Key=key)["TagSet"] == [
        {"Key": "k", "Value": "v"}
    ]
    http_.request("GET", "/_bench/requests")
    counts = json.loads(http_.getresponse().read())
    http_.close()
    assert counts == {
        "s3:PUTBucket": 1,
        "s3:PutObject": 1,
        "s3:GetObject": 1,
        "s3:ListObjectsV2": 1,
        "s3:PutObjectTagging": 1,
        "s3:GetObjectTagging": 1,
    }
