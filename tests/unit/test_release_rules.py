"""What a release puts back and what the report says of it (restored.py). Pure."""

from __future__ import annotations

from typing import Any

import pytest

from edgematch.downstream.copies import (
    META_CORRELATION_ID,
    META_MATCH_IDS,
    META_SOURCE,
    META_SOURCE_ETAG,
    META_SOURCE_SHA256,
    META_SOURCE_SIZE,
    META_SOURCE_VERSION,
    META_TRACKING_ID,
    copy_metadata,
)
from edgematch.downstream.evidence import VersionInfo
from edgematch.downstream.quarantine import MOVED, Evidence
from edgematch.downstream.reports import (
    CONFIRMED,
    PENDING,
    PENDING_REVIEW,
    REJECTED,
    RELEASED,
    SHADOW,
    SUBMITTED,
    InvalidTransition,
    new_report,
    transition,
)
from edgematch.downstream.restored import (
    META_RELEASED,
    discarded,
    is_released,
    refusal,
    released,
    restored_metadata,
    restored_tags,
)
from tests.support.results import match_result

NOW = 1_750_000_000.0
EVIDENCE = Evidence(state=MOVED, mode="move", bucket="q", key="uploads/a.jpg", at=NOW)


def _report(status: str) -> dict[str, Any]:
    doc = new_report(match_result(), EVIDENCE, reporter="record", now=NOW)
    doc["status"] = status
    return doc


def _rejected() -> dict[str, Any]:
    return transition(_report(PENDING_REVIEW), REJECTED, now=NOW + 1, actor="rev", note="no")


def test_the_copy_s_metadata_less_ours_is_the_original_s() -> None:
    """Everything quarantine added to the copy is taken off; the marker is put on."""
    original = {"uploader": "u-42", "caption": "=?UTF-8?B?w6l0w6k=?="}
    source = VersionInfo(
        bucket="uploads", key="a.jpg", version_id="v1", size=3, etag="e", metadata=original
    )
    on_copy = copy_metadata(source, match_result())
    assert set(on_copy) > set(original)
    assert restored_metadata(on_copy, "rpt-1") == {**original, META_RELEASED: "rpt-1"}


@pytest.mark.parametrize(
    "ours",
    [
        META_SOURCE,
        META_SOURCE_SHA256,
        META_SOURCE_VERSION,
        META_SOURCE_ETAG,
        META_SOURCE_SIZE,
        META_MATCH_IDS,
        META_TRACKING_ID,
        META_CORRELATION_ID,
    ],
)
def test_every_key_quarantine_adds_is_taken_off(ours: str) -> None:
    """Each edgematch key of the copy, in any case S3 returns it, is not put back."""
    assert restored_metadata({ours: "x", ours.upper(): "y", "own": "z"}, "r") == {
        "own": "z",
        META_RELEASED: "r",
    }


def test_the_platform_s_tags_come_back_with_the_verdict_tag_set() -> None:
    """The copy's tags less its verdict tag, with the value asked for."""
    copy_tags = {"owner": "platform", "edgematch-status": "quarantined"}
    assert restored_tags(copy_tags, "edgematch-status", "released") == {
        "owner": "platform",
        "edgematch-status": "released",
    }


def test_ten_platform_tags_come_back_alone() -> None:
    """S3 allows 10 tags: when the platform's fill them, ours is left off."""
    ten = {f"t{i}": "v" for i in range(10)}
    assert restored_tags(ten, "edgematch-status", "quarantined") == ten


@pytest.mark.parametrize("status", [REJECTED, RELEASED, SHADOW])
def test_rejected_released_and_shadow_reports_may_be_released(status: str) -> None:
    """A rejected report is released; a released one is finished (idempotent); a shadow
    one (quarantine off, never submitted) needs no review first."""
    assert refusal(_report(status)) is None


@pytest.mark.parametrize("status", [CONFIRMED, SUBMITTED, "failed"])
def test_a_confirmed_or_sent_report_is_never_released(status: str) -> None:
    """Confirmed, submitted or failed: decided for, or handed to the reporter."""
    why = refusal(_report(status))
    assert why is not None and "never released" in why


def test_an_undecided_report_needs_a_rejection_first() -> None:
    """Held for review: the refusal says to reject it first."""
    why = refusal(_report(PENDING_REVIEW))
    assert why is not None and "review reject" in why


def test_a_report_filed_without_review_says_how_to_hold_them() -> None:
    """pending for a reporter that sends (review off): it cannot be rejected, so the
    refusal names the setting; the record reporter's pending document is rejected first."""
    sent = _report(PENDING)
    sent["reporter"] = "webhook"
    why = refusal(sent)
    assert why is not None and "EDGEMATCH_REVIEW=required" in why
    why = refusal(_report(PENDING))
    assert why is not None and "review reject" in why
    assert refusal(transition(_report(PENDING), REJECTED, now=NOW + 1, actor="rev")) is None


def test_released_names_the_operator_and_where_the_content_is() -> None:
    """rejected → released: history appended (actor), the release recorded."""
    before = _rejected()
    where = {"state": "restored", "bucket": "uploads", "key": "a.jpg", "version_id": "v9"}
    after = released(before, {**where, "detail": "put back"}, operator="ana", now=NOW + 2)
    assert after["status"] == RELEASED
    assert after["history"][: len(before["history"])] == before["history"]
    assert after["history"][-1]["actor"] == "ana"
    assert after["release"]["operator"] == "ana"
    assert after["release"]["version_id"] == "v9"


def test_a_shadow_report_keeps_its_status_and_records_the_release() -> None:
    """Shadow never changes status: the release is a history entry and the release field;
    is_released then says a second run has nothing left to do."""
    doc = _report(SHADOW)
    assert not is_released(doc)
    after = released(doc, {"state": "retagged"}, operator="ana", now=NOW)
    assert after["status"] == SHADOW and is_released(after)
    assert after["history"][-1] == {
        "at": after["updated_at"],
        "status": SHADOW,
        "reason": "released: retagged",
        "actor": "ana",
    }


def test_only_a_rejected_report_is_marked_released() -> None:
    """The state table decides: a confirmed report cannot be marked released."""
    confirmed = transition(_report(PENDING_REVIEW), CONFIRMED, now=NOW)
    with pytest.raises(InvalidTransition):
        released(confirmed, {"state": "restored"}, operator="ana", now=NOW)


def test_a_discard_is_appended_to_the_history() -> None:
    """The status stays released; who discarded the evidence, and when, is added."""
    doc = released(_rejected(), {"state": "restored"}, operator="ana", now=NOW + 2)
    after = discarded(doc, operator="bo", now=NOW + 3)
    assert after["status"] == RELEASED
    assert after["history"][:-1] == doc["history"]
    assert after["history"][-1]["reason"] == "evidence discarded"
    assert after["history"][-1]["actor"] == "bo"
    assert after["release"]["evidence_discarded_at"]
    assert after["release"]["operator"] == "ana"
