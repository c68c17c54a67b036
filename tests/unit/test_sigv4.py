"""infra/sigv4.py against botocore's own ``S3SigV4Auth``: the same headers, byte for byte,
for every kind of request the lean S3 path sends."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore import auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.utils import percent_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from edgematch.infra import sigv4

NOW = datetime.datetime(2026, 12, 4, 23, 59, 59)
BASES = [
    "http://127.0.0.1:5000/uploads/",
    "https://uploads.s3.us-east-1.amazonaws.com/",
    "https://s3.eu-west-3.amazonaws.com:443/uploads/",
    "http://minio.internal:80/uploads/",
    "https://ceph.example.net:7480/uploads/",
    "http://[::1]:9000/uploads/",
    "https://[fd00::2]/uploads/",
]
KEYS = [
    "photos/cat.jpg.bin",
    "photos/ünï cödé ☃.jpg.bin",
    "写真/猫 + 犬 100%.jpg.bin",
    "a~b;c=d&e!*'()$,@[]?#.bin",
    "/leading//double/slash",
    "long/" + "写" * 338 + "a",
]
QUERIES = [
    "",
    "?tagging",
    "?versionId=3sL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY%2BMTRCxf3vjVBH40Nr8X8gdRQBpUMLUo",
    "?tagging&versionId=null",
]
HEADER_SETS: list[dict[str, str]] = [
    {},
    {"User-Agent": "edgematch-s3wire", "x-amz-checksum-mode": "ENABLED"},
    {"If-Match": '"9b2cf535f27731c974343645a3985328"', "User-Agent": "edgematch-s3wire"},
    {
        "x-amz-checksum-crc32": "AAAAAA==",
        "x-amz-sdk-checksum-algorithm": "CRC32",
        "User-Agent": "ua",
        "X-Spaced": "  two   words  ",
    },
    # Headers signing sets itself are replaced, as botocore replaces them on a retry.
    {"Authorization": "stale", "X-Amz-Date": "stale", "X-Amz-Content-SHA256": "stale"},
]


def _botocore(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: ReadOnlyCredentials,
    region: str,
    *,
    sign_payload: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.setattr(auth, "get_current_datetime", lambda remove_tzinfo=True: NOW)
    request = AWSRequest(method, url, dict(headers), body or None)
    config = Config() if sign_payload else Config(s3={"payload_signing_enabled": False})
    request.context["client_config"] = config
    auth.S3SigV4Auth(creds, "s3", region).add_auth(request)
    return dict(request.headers.items())


def _ours(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    creds: ReadOnlyCredentials,
    region: str,
    *,
    sign_payload: bool,
) -> dict[str, str]:
    return sigv4.signature_headers(
        method,
        url,
        headers,
        body,
        access_key=str(creds.access_key),
        secret_key=str(creds.secret_key),
        token=creds.token,
        region=region,
        now=NOW,
        sign_payload=sign_payload,
    )


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjE//session+token=="])
def test_the_same_headers_as_botocore_for_every_url_and_query(
    base: str, query: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    for key in KEYS:
        url = base + percent_encode(key, safe="/~") + query
        for headers in HEADER_SETS:
            args: Any = ("GET", url, headers, b"", creds, "us-east-1")
            expected = _botocore(*args, sign_payload=True, monkeypatch=monkeypatch)
            assert _ours(*args, sign_payload=True) == expected


@pytest.mark.parametrize("sign_payload", [True, False])
@pytest.mark.parametrize("body", [b"", b"<Tagging><TagSet/></Tagging>", bytes(range(256))])
def test_a_put_signs_its_body_unless_payload_signing_is_off(
    sign_payload: bool, body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = ReadOnlyCredentials("AKID", "secret", None)
    url = "https://uploads.s3.eu-central-1.amazonaws.com/a%20b.bin?tagging"
    headers = {"x-amz-checksum-crc32": "AAAAAA==", "x-amz-sdk-checksum-algorithm": "CRC32"}
    args: Any = ("PUT", url, headers, body, creds, "eu-central-1")
    expected = _botocore(*args, sign_payload=sign_payload, monkeypatch=monkeypatch)
    ours = _ours(*args, sign_payload=sign_payload)
    assert ours == expected
    assert (ours["X-Amz-Content-SHA256"] == sigv4.UNSIGNED_PAYLOAD) is not sign_payload


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=300),
    version=st.text(max_size=40),
    region=st.sampled_from(["us-east-1", "eu-west-3", "ap-southeast-2", "local"]),
    secret=st.text(min_size=1, max_size=60),
)
def test_any_key_version_region_and_secret(
    key: str, version: str, region: str, secret: str
) -> None:
    creds = ReadOnlyCredentials("AKID", secret, None)
    query = f"?tagging&versionId={percent_encode(version)}" if version else "?tagging"
    url = "http://127.0.0.1:9000/uploads/" + percent_encode(key, safe="/~") + query
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _botocore(
            "GET", url, {}, b"", creds, region, sign_payload=True, monkeypatch=monkeypatch
        )
    assert _ours("GET", url, {}, b"", creds, region, sign_payload=True) == expected


def test_a_new_day_or_region_signs_with_its_own_key() -> None:
    """The signing key is kept per day, region and secret: a signature made after midnight
    or for another region is not the one the kept key of the day before would make."""

    def sign(region: str, now: datetime.datetime) -> dict[str, str]:
        return sigv4.signature_headers(
            "GET",
            "https://s3.amazonaws.com/b/k",
            {},
            b"",
            access_key="AKID",
            secret_key="secret",
            token=None,
            region=region,
            now=now,
        )

    one = sign("us-east-1", NOW)
    two = sign("us-east-1", NOW + datetime.timedelta(seconds=1))  # the next day
    three = sign("eu-west-1", NOW)
    assert "20261205/us-east-1" in two["Authorization"]
    assert len({one["Authorization"], two["Authorization"], three["Authorization"]}) == 3
