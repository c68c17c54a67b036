"""Unit tests for the reporters: signature, PhotoDNA body, HTTP outcomes (httpx.MockTransport).

The real webhook receiver and the real sandbox are in tests/integration/test_reports_moto.py;
these cover what a server rarely produces on demand (every status class).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from edgematch.config.settings import Secret
from edgematch.downstream.reporters import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    PhotoDNAReporter,
    RecordReporter,
    WebhookReporter,
    body_bytes,
    photodna_body,
    sign,
    signature_ok,
)
from edgematch.errors import (
    CredentialError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransportError,
)

SECRET = "whsec-0123456789abcdef"
USER, PASSWORD, KEY = "ncmec-user-01", "ncmec-password-01", "subscription-key-01"
IMAGE = b"\xff\xd8 the preserved image bytes \x00\x01"
DOC: dict[str, Any] = {
    "report_id": "rpt-abc",
    "status": "pending",
    "content": {"bucket": "uploads", "key": "photos/cat.jpg"},
    "evidence": {"state": "moved", "bucket": "quarantine", "key": "uploads/photos/cat.jpg"},
    "match_ids": ["m1"],
    "sources": ["sandbox"],
    "violations": ["A1"],
    "tracking_id": "track-1",
    "correlation_id": "corr-1",
    "event_time": "2025-06-15T10:00:00Z",
}


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    """sha256=<hex> of HMAC-SHA256(secret, body), verified in constant time."""
    body = body_bytes(DOC)
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(body, SECRET) == f"sha256={expected}"
    assert signature_ok(body, f"sha256={expected}", SECRET)
    assert not signature_ok(body + b" ", f"sha256={expected}", SECRET)
    assert not signature_ok(body, f"sha256={expected}", "another-secret")
    assert not signature_ok(body, None, SECRET)


def test_body_bytes_are_stable() -> None:
    """The same document always gives the same bytes (so retries carry the same signature)."""
    shuffled = dict(reversed(list(DOC.items())))
    assert body_bytes(DOC) == body_bytes(shuffled)
    assert json.loads(body_bytes(DOC)) == DOC


def test_photodna_body_has_the_fields_report_requires() -> None:
    """OrgName, ReporterName, reportee, IncidentTime, the image in base64, IsTest."""
    body = photodna_body(
        DOC,
        IMAGE,
        {"reportee-name": "user-42", "Reportee-IP": "203.0.113.9"},
        org_name="Example Org",
        reporter_name="Trust & Safety",
        is_test=True,
    )
    assert body["OrgName"] == "Example Org" and body["ReporterName"] == "Trust & Safety"
    assert body["ReporteeName"] == "user-42" and body["ReporteeIPAddress"] == "203.0.113.9"
    assert body["IncidentTime"] == "2025-06-15T10:00:00Z"
    assert body["IsTest"] is True
    (content,) = body["ViolationContentCollection"]
    assert content["Name"] == "cat.jpg"
    assert base64.b64decode(content["Value"]) == IMAGE
    assert {"Key": "MatchId", "Value": "m1"} in content["AdditionalMetadata"]
    assert {"Key": "ReportId", "Value": "rpt-abc"} in body["AdditionalMetadata"]


def test_photodna_body_reads_a_unicode_reportee_and_names_a_unicode_file() -> None:
    """S3 returns a unicode reportee RFC 2047-encoded: the report carries the name itself;
    a content key in any script gives the file its own name."""
    doc = {**DOC, "content": {"bucket": "uploads", "key": "写真/ünï cödé ☃.jpg"}}
    body = photodna_body(
        doc,
        IMAGE,
        {"reportee-name": "=?UTF-8?B?Wm/DqyDDhW5nc3Ryw7Zt?="},
        org_name="o",
        reporter_name="r",
        is_test=False,
    )
    assert body["ReporteeName"] == "Zoë Ångström"
    assert body["ViolationContentCollection"][0]["Name"] == "ünï cödé ☃.jpg"


def test_photodna_body_without_reportee_metadata_says_unknown() -> None:
    """No reportee metadata on the content: the fields are filled, not omitted."""
    body = photodna_body(DOC, IMAGE, {}, org_name="o", reporter_name="r", is_test=False)
    assert body["ReporteeName"] == "unknown" and body["ReporteeIPAddress"] == "0.0.0.0"
    assert body["IsTest"] is False


def test_record_reporter_sends_nothing() -> None:
    """The record reporter returns no receipt: the document itself is the output."""
    assert RecordReporter().submit(DOC) is None


def _photodna(handler: Any) -> PhotoDNAReporter:
    return PhotoDNAReporter(
        "https://photodna.example/photodna/v1.0",
        key=Secret(KEY),
        user=Secret(USER),
        password=Secret(PASSWORD),
        org_name="Example Org",
        reporter_name="T&S",
        is_test=True,
        read_evidence=lambda doc: (IMAGE, {}),
        transport=httpx.MockTransport(handler),
    )


def test_photodna_reporter_sends_credentials_in_headers_only() -> None:
    """x-usr, x-pwd and the key go as headers to {base}/Report; the body holds none of them."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"Status": {"Code": 3000, "Description": "OK"}, "ReportId": "R-77"}
        )

    receipt = _photodna(handler).submit(DOC)
    (request,) = seen
    assert str(request.url) == "https://photodna.example/photodna/v1.0/Report"
    assert request.headers["x-usr"] == USER and request.headers["x-pwd"] == PASSWORD
    assert request.headers["Ocp-Apim-Subscription-Key"] == KEY
    body = request.content.decode()
    assert USER not in body and PASSWORD not in body and KEY not in body
    assert json.loads(body)["IsTest"] is True
    assert receipt.reference == "R-77" and receipt.is_test and receipt.http_status == 200


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (401, {"statusCode": 401}, CredentialError),
        (403, {}, CredentialError),
        (429, {"message": "Try again in 2 seconds."}, RateLimited),
        (500, {}, ServerError),
        (503, {}, ServerError),
        (408, {}, TransportError),
        (400, {}, RequestRejected),
        (200, {"Status": {"Code": 3002, "Description": "Invalid"}}, RequestRejected),
        (200, {"Status": {"Code": 3004, "Description": "Unknown"}}, ServerError),
        (200, {"unexpected": True}, ServerError),
    ],
)
def test_photodna_reporter_outcomes_are_classified(
    status: int, payload: dict[str, Any], error: type[Exception]
) -> None:
    """Each answer maps to a transient or permanent error; no secret or image in the message."""
    reporter = _photodna(lambda request: httpx.Response(status, json=payload))
    with pytest.raises(error) as info:
        reporter.submit(DOC)
    message = str(info.value)
    for secret in (USER, PASSWORD, KEY, base64.b64encode(IMAGE).decode()):
        assert secret not in message


def _webhook(handler: Any) -> WebhookReporter:
    return WebhookReporter(
        "https://hooks.example/reports", Secret(SECRET), transport=httpx.MockTransport(handler)
    )


def test_webhook_reporter_signs_and_names_the_report() -> None:
    """The POST carries the signature of its exact body and the report id as idempotency key."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    receipt = _webhook(handler).submit(DOC)
    (request,) = seen
    assert signature_ok(request.content, request.headers[SIGNATURE_HEADER], SECRET)
    assert request.headers[IDEMPOTENCY_HEADER] == "rpt-abc"
    assert request.content == body_bytes(DOC)
    assert receipt.http_status == 202


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, ServerError),
        (502, ServerError),
        (429, RateLimited),
        (404, RequestRejected),
        (301, RequestRejected),
        (401, CredentialError),
    ],
)
def test_webhook_reporter_outcomes_are_classified(status: int, error: type[Exception]) -> None:
    """5xx and 429 are retried; a redirect or another 4xx is refused for good."""
    with pytest.raises(error):
        _webhook(lambda request: httpx.Response(status, headers={"Location": "https://x"})).submit(
            DOC
        )


def test_webhook_reporter_translates_a_dropped_connection() -> None:
    """A connection error is a TransportError (transient), not an httpx exception."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError):
        _webhook(handler).submit(DOC)
