"""The S3 client's timestamp parser (infra/s3clients.http_date) gives the instants botocore's
own parser gives, for every form S3 answers with."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.utils import parse_timestamp

from edgematch.infra.s3clients import http_date


@pytest.mark.parametrize(
    "text",
    [
        "Wed, 03 Dec 2026 18:57:46 GMT",  # Last-Modified of a GET or HEAD
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Mon, 29 Feb 2028 23:59:59 GMT",
        "2026-12-03T18:57:46.000Z",  # LastModified in an XML body (left to botocore)
        "2026-12-03T18:57:46Z",
        "1764788266",  # epoch seconds (left to botocore)
    ],
)
def test_the_same_instant_as_botocore(text: str) -> None:
    """Every form: an aware datetime equal to botocore's, with the same UTC offset."""
    ours, theirs = http_date(text), parse_timestamp(text)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset() == dt.timedelta(0)
    assert ours.isoformat() == theirs.isoformat()


@pytest.mark.parametrize("text", ["not a date GMT", "Wed, 33 Dec 2026 18:57:46 GMT", ""])
def test_unreadable_text_fails_as_botocore_fails(text: str) -> None:
    """What the standard library cannot read goes to botocore's parser, which refuses it."""
    with pytest.raises(ValueError):
        parse_timestamp(text)
    with pytest.raises(ValueError):
        http_date(text)
