"""The lean S3 path's own bookkeeping, without a server: the connection of an answer whose
headers cannot be read is closed, and the routes are read in one look."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from edgematch.infra.s3answers import UnreadableAnswer
from edgematch.infra.s3wire import S3Wire, _Route

ROUTE = _Route(base="http://s3.test/uploads/", region="us-east-1", checksums=False)


class _Raw:
    """An answer's urllib3 body: records whether the connection was closed or released."""

    def __init__(self) -> None:
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        self.released = True

    def read(self, *_: Any, **__: Any) -> bytes:
        return b""

    def stream(self, *_: Any, **__: Any) -> Any:
        return iter(())


class _Session:
    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers
        self.raws: list[_Raw] = []

    def send(self, request: Any) -> AWSResponse:
        raw = _Raw()
        self.raws.append(raw)
        return AWSResponse(request.url, 200, self.headers, raw)  # type: ignore[arg-type]


def _wire(session: _Session) -> S3Wire:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}),
    )
    wire = S3Wire(client)
    wire._http = session
    wire._routes["uploads"] = ROUTE
    return wire


@pytest.mark.parametrize(
    "headers",
    [{"Content-Length": "5x"}, {"Content-Length": "5", "Last-Modified": "not a date"}],
)
def test_an_answer_whose_headers_cannot_be_read_gives_its_connection_up(
    headers: dict[str, str],
) -> None:
    session = _Session(headers)
    with pytest.raises((UnreadableAnswer, ValueError)):
        _wire(session).get_object(Bucket="uploads", Key="k.bin", VersionId="v1")
    assert [raw.closed for raw in session.raws] == [True]


class _Racing(dict[str, Any]):
    """Routes whose entry another thread drops between a membership test and a read."""

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        self.pop(str(key), None)
        return found


def test_a_route_dropped_meanwhile_is_not_a_key_error() -> None:
    wire = _wire(_Session({}))
    wire._routes = _Racing(uploads=ROUTE)
    assert wire._route({"Bucket": "uploads", "Key": "k"}, set()) is ROUTE
