"""AWS Signature Version 4 of the lean S3 path's requests (infra/s3wire.py).

The headers botocore's ``S3SigV4Auth.add_auth`` sets on a request — ``X-Amz-Date``,
``X-Amz-Security-Token`` with a session token, ``X-Amz-Content-SHA256`` and
``Authorization`` — byte for byte, for the requests that path sends: a path already
percent-encoded as S3 wants it (S3 signs the path as sent, never normalised), a query of
sub-resources and ``versionId``, a bytes body or none, and headers of single values. What
botocore builds around it (its request and header classes, the URL split three times, the
signing key derived afresh each time) costs a quarter of a lean call's CPU; here the
signing key of a day, region and secret is derived once (``_signing_key``, a few entries).

Checked against botocore itself, case by case, in tests/unit/test_sigv4.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

__all__ = ["EMPTY_SHA256", "UNSIGNED_PAYLOAD", "signature_headers"]

ALGORITHM: Final = "AWS4-HMAC-SHA256"
EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD: Final = "UNSIGNED-PAYLOAD"
TIMESTAMP: Final = "%Y%m%dT%H%M%SZ"
#: Headers botocore leaves out of the signature (botocore.auth.SIGNED_HEADERS_BLACKLIST).
UNSIGNED_HEADERS: Final = frozenset({
    "baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "traceparent", "tracestate", "trailer",
    "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"})  # fmt: skip
# The headers signing sets itself: any of these the caller passed is replaced.
_SET_HERE: Final = frozenset(
    {"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"}
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def signature_headers(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    now: datetime,
    sign_payload: bool = True,
    service: str = "s3",
) -> dict[str, str]:
    """``headers`` (without those signing sets) with the signature's headers added, as
    botocore's ``S3SigV4Auth`` leaves them; ``now`` in UTC, without a time zone.

    ``sign_payload``: False only when the client's ``s3`` configuration sets
    ``payload_signing_enabled`` to False (``UNSIGNED-PAYLOAD``); botocore otherwise signs
    the body's SHA-256 on every request that carries no ``Content-MD5``, which these never do.
    """
    parts = urlsplit(url)
    timestamp = now.strftime(TIMESTAMP)
    out = {k: v for k, v in headers.items() if k.lower() not in _SET_HERE}
    out["X-Amz-Date"] = timestamp
    if token:
        out["X-Amz-Security-Token"] = token
    payload = (
        (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
        if sign_payload
        else UNSIGNED_PAYLOAD
    )
    out["X-Amz-Content-SHA256"] = payload
    signed = {k.lower(): " ".join(v.split()) for k, v in out.items()}
    for name in UNSIGNED_HEADERS.intersection(signed):
        del signed[name]
    signed.setdefault("host", _host(parts.scheme, parts.hostname or "", parts.port, url))
    names = sorted(signed)
    signed_names = ";".join(names)
    canonical = "\n".join((
        method.upper(),
        parts.path,
        _canonical_query(parts.query),
        "".join(f"{n}:{signed[n]}\n" for n in names),
        signed_names,
        payload,
    ))  # fmt: skip
    day = timestamp[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        (ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = _signing_key(secret_key, day, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_names}, Signature={signature}"
    )
    return out


@lru_cache(maxsize=8)
def _signing_key(secret_key: str, day: str, region: str, service: str) -> bytes:
    """The key of a day's signatures (a few live at once: a day changing, a region)."""
    key = hmac.new(f"AWS4{secret_key}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _host(scheme: str, hostname: str, port: int | None, url: str) -> str:
    """The host botocore signs when a request has no Host header: the URL's host, in
    brackets when it is an IPv6 address, with its port unless the scheme's default."""
    host = f"[{hostname}]" if "[" in url.split("/", 3)[2] else hostname
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


def _canonical_query(query: str) -> str:
    """botocore's canonical query of a URL's query: its pairs as sent (already encoded),
    ``key=`` for a key alone, sorted by key then value."""
    if not query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)
