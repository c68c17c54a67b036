"""edgematch.pipeline.webhook.auth: the token as MinIO and Ceph RGW send it, and nothing else."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.pipeline.webhook.auth import MAX_HEADER_BYTES, authorized

TOKEN = b"4f2c9a0e7b1d4c3a9e8f7a6b5c4d3e2f"


def basic(user: bytes, password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


@pytest.mark.parametrize(
    "header",
    [
        b"Bearer " + TOKEN,  # MinIO: auth_token of one word
        b"bearer " + TOKEN,
        b"BEARER  " + TOKEN + b" ",
        basic(b"ceph", TOKEN),  # Ceph: https://ceph:TOKEN@host/ in the topic's endpoint
        basic(b"", TOKEN),
        b"basic " + base64.b64encode(b"anyone:" + TOKEN),
    ],
)
def test_the_token_is_accepted_as_bearer_or_basic_password(header: bytes) -> None:
    """Bearer TOKEN, and HTTP Basic with TOKEN as the password (any user), schemes in any case."""
    assert authorized(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        TOKEN,  # no scheme
        b"Token " + TOKEN,  # a scheme that is not ours
        b"Bearer " + TOKEN[:-1],
        b"Bearer " + TOKEN + b"x",
        b"Bearer " + TOKEN.upper(),
        basic(TOKEN, b"wrong"),  # the token as the user name is not enough
        b"Basic " + base64.b64encode(TOKEN),  # no colon
        b"Basic not-base64!!",
        b"Bearer " + TOKEN + b" " * MAX_HEADER_BYTES,  # too long to look at
    ],
)
def test_anything_else_is_refused(header: bytes | None) -> None:
    """A missing, partial, longer, other-scheme or undecodable header is refused."""
    assert not authorized(header, TOKEN)


def test_an_empty_token_accepts_nothing() -> None:
    """A server started without a token (never: settings refuse it) would let no one in."""
    assert not authorized(b"Bearer ", b"")
    assert not authorized(basic(b"user", b""), b"")


@given(st.binary(max_size=200))
def test_no_other_value_is_taken_for_the_token(value: bytes) -> None:
    """Whatever arrives after Bearer, only the token itself passes."""
    assert authorized(b"Bearer " + value, TOKEN) == (value.strip() == TOKEN)
