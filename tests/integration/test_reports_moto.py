"""The report step on in-process moto S3 and a private redis-server, with a real webhook
receiver and the real sandbox over HTTP for the two reporters that send something."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from moto import mock_aws

from devtools.sandbox.server import Sandbox, SandboxConfig
from devtools.sandbox.webhook import WebhookReceiver
from edgematch.config.settings import Secret, Settings
from edgematch.downstream.filing import Downstream
from edgematch.downstream.quarantine import CONTENT_MISSING, MOVED, SHADOW, Evidence
from edgematch.downstream.reports import report_id_for, report_key, transition
from edgematch.errors import BadInput, ServerError
from edgematch.infra.storage import make_s3_client
from edgematch.runtime import Runtime
from tests.support.results import match_result

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

REPORTS, QUARANTINE = "reports-bucket", "quarantine"
SECRET = "whsec-integration-0123"
IMAGE = b"\xff\xd8 preserved image"
MakeSettings = Callable[..., Settings]


@pytest.fixture
def s3(aws_env: None) -> Iterator[S3Client]:
    with mock_aws():
        client = make_s3_client(Settings())
        client.create_bucket(Bucket=REPORTS)
        client.create_bucket(Bucket=QUARANTINE)
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, fail_first=1) as hook:
        yield hook


def _downstream(make_settings: MakeSettings, **settings: Any) -> Downstream:
    settings.setdefault("reports_bucket", REPORTS)
    # These tests are about the reporters themselves: review off, as the docs tell an
    # operator who wants reports sent without a person's confirmation (the review path is
    # tested in tests/e2e/test_review.py and below).
    settings.setdefault("review", "off")
    return Runtime(make_settings(**settings)).downstream


def _moved(s3: S3Client) -> Evidence:
    reply = s3.put_object(
        Bucket=QUARANTINE,
        Key="uploads/photos/cat.jpg",
        Body=IMAGE,
        Metadata={"reportee-name": "user-42"},
    )
    return Evidence(
        state=MOVED,
        mode="move",
        bucket=QUARANTINE,
        key="uploads/photos/cat.jpg",
        version_id=reply.get("VersionId"),
        etag=reply["ETag"].strip('"'),
    )


def _report_keys(s3: S3Client) -> list[str]:
    listing = s3.list_objects_v2(Bucket=REPORTS, Prefix="reports/")
    return [obj["Key"] for obj in listing.get("Contents", [])]


def test_record_reporter_writes_one_encrypted_document(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Three deliveries, one pending JSON document under reports/<date>/, AES256-encrypted."""
    downstream = _downstream(make_settings)
    result = match_result()
    for _ in range(3):
        doc = downstream.file_report(result, _moved(s3))
    assert doc["status"] == "pending" and doc["reporter"] == "record"
    (key,) = _report_keys(s3)
    assert key == report_key(report_id_for(result), result.scanned_at)
    head = s3.head_object(Bucket=REPORTS, Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/json"
    assert downstream.reports.find(doc["report_id"]) == doc
    assert [d["report_id"] for d in downstream.reports.list(status="pending")] == [doc["report_id"]]
    assert downstream.reports.list(status="submitted") == []


def test_a_week_later_redis_has_forgotten_and_the_date_still_finds_it(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """With the Redis pointer gone, the scan date in the result leads to the same document."""
    downstream = _downstream(make_settings)
    result = match_result()
    first = downstream.file_report(result, _moved(s3))
    redis_client.flushdb()
    assert downstream.file_report(result, _moved(s3))["report_id"] == first["report_id"]
    assert len(_report_keys(s3)) == 1


def test_kms_key_encrypts_reports_with_kms(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """EDGEMATCH_REPORTS_KMS_KEY_ID switches the encryption to aws:kms with that key."""
    downstream = _downstream(make_settings, reports_kms_key_id="alias/edgematch-reports")
    downstream.file_report(match_result(), _moved(s3))
    (key,) = _report_keys(s3)
    assert s3.head_object(Bucket=REPORTS, Key=key)["ServerSideEncryption"] == "aws:kms"


def test_webhook_sees_one_delivery_though_it_failed_once(
    s3: S3Client,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    """500 once, then 200: one delivered report; both tries signed, with the same key."""
    downstream = _downstream(
        make_settings,
        reporter="webhook",
        report_webhook_url=receiver.url,
        report_webhook_secret=Secret(SECRET),
    )
    result = match_result()
    with pytest.raises(ServerError):
        downstream.file_report(result, _moved(s3))
    (key,) = _report_keys(s3)
    assert json.loads(s3.get_object(Bucket=REPORTS, Key=key)["Body"].read())["status"] == "pending"
    done = downstream.file_report(result, _moved(s3))
    assert done["status"] == "submitted" and done["submission"]["http_status"] == 200
    downstream.file_report(result, _moved(s3))  # a third delivery sends nothing

    requests = receiver.requests
    assert [r.status for r in requests] == [500, 200]
    assert all(r.signature_ok for r in requests)
    assert {r.idempotency_key for r in requests} == {done["report_id"]}
    (delivered,) = receiver.delivered.values()
    assert delivered.json()["report_id"] == done["report_id"]
    assert delivered.json()["match_ids"] == ["m1", "m2"]


def test_webhook_refusal_marks_the_report_failed(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A receiver that refuses the signature (wrong secret): failed, with the reason."""
    with WebhookReceiver("another-secret") as hook:
        downstream = _downstream(
            make_settings,
            reporter="webhook",
            report_webhook_url=hook.url,
            report_webhook_secret=Secret(SECRET),
        )
        with pytest.raises(Exception, match="401"):
            downstream.file_report(match_result(), _moved(s3))
        (request,) = hook.requests
        assert request.status == 401 and not request.signature_ok
    doc = downstream.reports.find(report_id_for(match_result()))
    assert doc is not None and doc["status"] == "failed" and "401" in doc["status_reason"]


def test_shadow_report_is_never_sent(
    s3: S3Client,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    """Quarantine off: the report is recorded as shadow and the webhook hears nothing."""
    downstream = _downstream(
        make_settings,
        reporter="webhook",
        report_webhook_url=receiver.url,
        report_webhook_secret=Secret(SECRET),
    )
    shadow = Evidence(state=SHADOW, mode="off", detail="shadow mode: would tag")
    assert downstream.file_report(match_result(), shadow)["status"] == "shadow"
    assert receiver.requests == []


def test_photodna_reporter_sends_the_preserved_image_to_the_sandbox(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """PhotoDNA Report: the sandbox records the body with the image, IsTest and the names."""
    with Sandbox(SandboxConfig(key="sandbox-key-01", rate=0)) as sandbox:
        downstream = _downstream(
            make_settings,
            api_url=sandbox.url,
            subscription_key=Secret("sandbox-key-01"),
            reporter="photodna",
            report_user=Secret("ncmec-user"),
            report_password=Secret("ncmec-password"),
            report_org_name="Example Org",
            report_reporter_name="Trust and Safety",
            report_test=True,
        )
        doc = downstream.file_report(match_result(), _moved(s3))
        (body,) = sandbox.reports()
    assert doc["status"] == "submitted" and doc["submission"]["reference"]
    assert doc["submission"]["is_test"] is True
    assert isinstance(body, dict)
    assert body["IsTest"] is True and body["OrgName"] == "Example Org"
    assert body["ReporteeName"] == "user-42"
    (content,) = body["ViolationContentCollection"]
    assert base64.b64decode(content["Value"]) == IMAGE
    assert "ncmec-password" not in str(body)


def test_photodna_report_without_a_preserved_image_fails(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Content gone before quarantine: nothing to send, the report says why."""
    with Sandbox(SandboxConfig(key="sandbox-key-01", rate=0)) as sandbox:
        downstream = _downstream(
            make_settings,
            api_url=sandbox.url,
            subscription_key=Secret("sandbox-key-01"),
            reporter="photodna",
            report_user=Secret("ncmec-user"),
            report_password=Secret("ncmec-password"),
            report_org_name="Example Org",
            report_reporter_name="Trust and Safety",
        )
        missing = Evidence(state=CONTENT_MISSING, mode="move", detail="gone")
        with pytest.raises(BadInput, match="no preserved image"):
            downstream.file_report(match_result(), missing)
        assert sandbox.reports() == []
    doc = downstream.reports.find(report_id_for(match_result()))
    assert doc is not None and doc["status"] == "failed"
    assert doc["evidence"]["state"] == CONTENT_MISSING


def test_replayed_quarantine_updates_where_the_evidence_is(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A report first made with failed evidence learns the quarantined location later."""
    downstream = _downstream(make_settings)
    failed = Evidence(state="failed", mode="move", bucket="uploads", key="photos/cat.jpg")
    downstream.file_report(match_result(), failed)
    doc = downstream.file_report(match_result(), _moved(s3))
    assert doc["evidence"]["state"] == MOVED and doc["evidence"]["bucket"] == QUARANTINE
    assert len(_report_keys(s3)) == 1


def test_reports_list_since_skips_older_days(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """--since picks reports dated that day or later, by their key's date."""
    downstream = _downstream(make_settings)
    day = 86400.0
    old = match_result(content_version_id="old", scanned_at=time.time() - 10 * day)
    new = match_result(content_version_id="new")
    downstream.file_report(old, _moved(s3))
    downstream.file_report(new, _moved(s3))
    since = dt.datetime.fromtimestamp(time.time() - 2 * day, dt.UTC).date()
    listed = downstream.reports.list(since=since)
    assert [d["report_id"] for d in listed] == [report_id_for(new)]
    assert len(downstream.reports.list()) == 2


def test_mark_failed_after_retries_ran_out(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """When the task gives up, a pending report is marked failed with the last reason."""
    downstream = _downstream(make_settings)
    downstream.file_report(match_result(), _moved(s3))
    downstream.mark_failed(match_result(), "retries_exhausted: webhook answered HTTP 503")
    doc = downstream.reports.find(report_id_for(match_result()))
    assert doc is not None and doc["status"] == "failed"
    assert doc["status_reason"].startswith("retries_exhausted")


def test_a_report_held_for_review_is_submitted_once_after_confirmation(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """The default with the photodna reporter holds the report; submit_confirmed sends only
    a confirmed one, and only once however often it runs."""
    with Sandbox(SandboxConfig(key="sandbox-key-01", rate=0)) as sandbox:
        downstream = _downstream(
            make_settings,
            review="auto",
            api_url=sandbox.url,
            subscription_key=Secret("sandbox-key-01"),
            reporter="photodna",
            report_user=Secret("ncmec-user"),
            report_password=Secret("ncmec-password"),
            report_org_name="Example Org",
            report_reporter_name="Trust and Safety",
        )
        held = downstream.file_report(match_result(), _moved(s3))
        assert held["status"] == "pending_review"
        assert downstream.file_report(match_result(), _moved(s3))["status"] == "pending_review"
        assert downstream.submit_confirmed(held["report_id"])["status"] == "pending_review"
        assert sandbox.reports() == []
        key, doc = downstream.reports.locate(held["report_id"]) or ("", {})
        downstream.reports.save(key, transition(doc, "confirmed", now=1.0, actor="alice"))
        for _ in range(2):
            assert downstream.submit_confirmed(held["report_id"])["status"] == "submitted"
        assert downstream.file_report(match_result(), _moved(s3))["status"] == "submitted"
        assert len(sandbox.reports()) == 1
