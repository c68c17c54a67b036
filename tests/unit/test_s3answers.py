"""S3's answers as the lean path reads them, and the tagging body it writes: what botocore
reads and writes, byte for byte where it is compared."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from edgematch.infra.s3answers import UnreadableAnswer, error_response, tag_set, tagging_body

TAGS = [
    {"Key": "a&<b>", "Value": "ü \"'x ]]> 猫"},
    {"Key": "edgematch-status", "Value": ""},
    {"Key": "k=v+w/x@y:z", "Value": "trailing space "},
]


def _botocore_body(tags: list[dict[str, str]]) -> bytes:
    """The body boto3's PutObjectTagging sends (prepared, signed, answered locally)."""
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    sent: list[bytes] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request.body)
        return _response(200, b"")

    client.meta.events.register_first("before-send.s3", answer)  # type: ignore[arg-type]
    client.put_object_tagging(Bucket="b-1", Key="k", Tagging={"TagSet": tags})  # type: ignore[typeddict-item]
    return sent[0]


def test_tagging_body_is_botocores() -> None:
    assert tagging_body(TAGS) == _botocore_body(TAGS)


def test_tag_set_reads_what_was_written() -> None:
    """Escaped text, an empty value, unicode and spaces come back as they were written."""
    tagging = tagging_body(TAGS).replace(b"<TagSet>", b"<TagSet>\n  ")
    assert tag_set(tagging) == TAGS
    assert tag_set(b'<Tagging xmlns="x"><TagSet/></Tagging>') == []


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY e "x">]><Tagging><TagSet/></Tagging>',
        b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet>",
        b"not xml",
        # Answered with 200 but not S3's tagging document: never "no tags".
        b"<Error><Code>InternalError</Code><Message>m</Message></Error>",
        b"<html><body>proxy</body></html>",
        b"<Tagging/>",
        b"<Tagging><TagSet/><TagSet/></Tagging>",
        b"<Other><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Other>",
    ],
)
def test_tag_set_refuses_what_is_not_a_plain_tag_set(body: bytes) -> None:
    with pytest.raises(UnreadableAnswer):
        tag_set(body)


class _Raw(io.BytesIO):
    def stream(self, *_: Any, **__: Any) -> Any:
        return iter([self.read()])


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> AWSResponse:
    return AWSResponse("http://s3/b/k", status, headers or {}, _Raw(body))  # type: ignore[arg-type]


def test_error_answer_as_botocore_parses_it() -> None:
    body = (
        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
        b"<Message>The specified key does not exist.</Message><Key>k</Key>"
        b"<RequestId>r1</RequestId><HostId>h1</HostId></Error>"
    )
    parsed = error_response(_response(404, body, {"X-Amz-Request-Id": "r2"}), attempt=2)
    assert parsed["Error"] == {
        "Code": "NoSuchKey",
        "Message": "The specified key does not exist.",
        "Key": "k",
    }
    metadata = parsed["ResponseMetadata"]
    assert (metadata["RequestId"], metadata["HostId"]) == ("r1", "h1")
    assert metadata["HTTPStatusCode"] == 404
    assert metadata["HTTPHeaders"]["x-amz-request-id"] == "r2"
    assert metadata["RetryAttempts"] == 1


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [(412, b"", "412"), (404, b"", "404"), (503, b"<html>busy</html>", "503")],
)
def test_error_answer_without_an_s3_error_body_is_its_status(
    status: int, body: bytes, code: str
) -> None:
    """A HEAD's 404, a proxy's HTML: the status is the code, as botocore makes it."""
    assert error_response(_response(status, body), attempt=1)["Error"]["Code"] == code


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b"<html><body>no such page</body></html>"),
        (403, b"<Foo><Bar>1</Bar></Foo>"),
        (404, b"<ErrorResponse><Error><Code>NoSuchKey</Code></Error></ErrorResponse>"),
        (404, b"<Error><Message>no code</Message></Error>"),
        (502, b"<Foo/>"),
        (502, b"  <html>busy</html>"),
        (404, b"not xml"),
        (412, b""),
    ],
)
def test_error_code_is_botocores_for_any_body(status: int, body: bytes) -> None:
    """An XML body that is not S3's <Error> has no code, as botocore parses it (retried
    as unknown): a proxy's 404 page is not a missing object, nor its 403 a denial."""
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(retries={"total_max_attempts": 1}),
    )

    def answer(**_: Any) -> AWSResponse:
        return _response(status, body)

    client.meta.events.register_first("before-send.s3", answer)  # type: ignore[arg-type]
    with pytest.raises(ClientError) as raised:
        client.get_object(Bucket="b-1", Key="k")
    botocores = raised.value.response["Error"].get("Code")
    assert error_response(_response(status, body), attempt=1)["Error"].get("Code") == botocores
