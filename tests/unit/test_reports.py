"""Unit tests for the report document: ids, keys, fields and status transitions (pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from edgematch.downstream.quarantine import MOVED, SHADOW, Evidence
from edgematch.downstream.reports import (
    FAILED,
    PENDING,
    SCHEMA,
    SUBMITTED,
    InvalidTransition,
    evidence_changed,
    new_report,
    report_id_for,
    report_key,
    transition,
    with_evidence,
)
from edgematch.downstream.reports import SHADOW as REPORT_SHADOW
from tests.support.results import match_result

NOW = 1_750_000_000.0


EVIDENCE = Evidence(
    state=MOVED,
    mode="move",
    bucket="quarantine",
    key="uploads/photos/cat.jpg",
    version_id="q-v1",
    legal_hold=True,
    at=NOW,
)


def test_report_id_is_the_same_for_every_delivery_of_a_content_version() -> None:
    """A redelivered or re-scanned result of the same content version names the same report."""
    first = match_result()
    again = dataclasses.replace(first, item_id="item-2", scanned_at=NOW + 7 * 86400)
    assert report_id_for(first) == report_id_for(again)
    assert report_id_for(first).startswith("rpt-")


def test_report_id_differs_per_content_version() -> None:
    """A new upload of the same key (a new version) gets a report of its own."""
    assert report_id_for(match_result()) != report_id_for(
        match_result(content_version_id="content-v2")
    )
    unversioned = match_result(content_version_id=None)
    assert report_id_for(unversioned) != report_id_for(
        match_result(content_version_id=None, content_etag="other")
    )


def test_report_id_without_a_content_version_falls_back_to_the_hash_write() -> None:
    """Content that was gone at ingest is named by the hash file's version instead."""
    a = match_result(content_version_id=None, content_etag=None)
    b = match_result(content_version_id=None, content_etag=None, version_id="hash-v2")
    assert report_id_for(a) != report_id_for(b)


def test_report_key_is_dated_by_the_scan_in_utc() -> None:
    """reports/<yyyy>/<mm>/<dd>/<id>.json, from the scan time in UTC."""
    late_evening_utc = dt.datetime(2025, 3, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    assert report_key("rpt-x", late_evening_utc) == "reports/2025/03/31/rpt-x.json"


def test_new_report_carries_everything_a_reviewer_needs() -> None:
    """The document names content, hash, evidence, match details and ids, and is pending."""
    doc = new_report(match_result(), EVIDENCE, reporter="record", now=NOW)
    assert doc["schema"] == SCHEMA
    assert doc["status"] == PENDING
    assert doc["report_id"] == report_id_for(match_result())
    assert doc["created_at"].startswith("2025-06-15T")
    assert doc["content"] == {
        "bucket": "uploads",
        "key": "photos/cat.jpg",
        "version_id": "content-v1",
        "etag": "content-etag",
    }
    assert doc["hash"]["key"] == "photos/cat.jpg.bin" and doc["hash"]["version_id"] == "hash-v1"
    assert doc["evidence"]["bucket"] == "quarantine" and doc["evidence"]["legal_hold"] is True
    assert doc["match_ids"] == ["m1", "m2"] and doc["sources"] == ["sandbox"]
    assert doc["violations"] == ["A1"]
    assert doc["tracking_id"] == "track-1" and doc["correlation_id"] == "corr-1"
    assert [h["status"] for h in doc["history"]] == [PENDING]


def test_shadow_evidence_makes_a_shadow_report() -> None:
    """With quarantine off the report is recorded as shadow, never to be submitted."""
    shadow = Evidence(state=SHADOW, mode="off", detail="shadow mode: would tag")
    doc = new_report(match_result(), shadow, reporter="webhook", now=NOW)
    assert doc["status"] == REPORT_SHADOW
    with pytest.raises(InvalidTransition):
        transition(doc, SUBMITTED, now=NOW)


def test_pending_report_is_submitted_once() -> None:
    """pending → submitted records the receipt and history; submitted is final."""
    doc = new_report(match_result(), EVIDENCE, reporter="webhook", now=NOW)
    done = transition(doc, SUBMITTED, now=NOW + 1, submission={"http_status": 200})
    assert done["status"] == SUBMITTED and done["submission"] == {"http_status": 200}
    assert [h["status"] for h in done["history"]] == [PENDING, SUBMITTED]
    assert doc["status"] == PENDING  # the input is not changed
    for status in (PENDING, SUBMITTED, FAILED):
        with pytest.raises(InvalidTransition):
            transition(done, status, now=NOW + 2)


def test_failed_report_keeps_its_reason_and_can_still_be_submitted() -> None:
    """pending → failed (with the reason) → submitted after a successful replay."""
    doc = new_report(match_result(), EVIDENCE, reporter="webhook", now=NOW)
    failed = transition(doc, FAILED, now=NOW + 1, reason="request_rejected: HTTP 400")
    assert failed["status_reason"] == "request_rejected: HTTP 400"
    assert transition(failed, SUBMITTED, now=NOW + 2)["status"] == SUBMITTED
    with pytest.raises(InvalidTransition):
        transition(failed, PENDING, now=NOW + 2)


def test_evidence_update_keeps_the_status() -> None:
    """A replayed quarantine that moved the evidence updates the report, not its status."""
    failed = Evidence(state="failed", mode="move", bucket="uploads", key="photos/cat.jpg")
    doc = transition(
        new_report(match_result(), failed, reporter="webhook", now=NOW), SUBMITTED, now=NOW
    )
    assert evidence_changed(doc, EVIDENCE)
    assert not evidence_changed(doc, dataclasses.replace(failed, at=NOW + 99))
    updated = with_evidence(doc, EVIDENCE, now=NOW + 5)
    assert updated["status"] == SUBMITTED
    assert updated["evidence"]["state"] == MOVED
