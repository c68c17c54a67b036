"""Unit tests for review: what a decision does in each state, holds, links, flood counts."""

from __future__ import annotations

from typing import Any

import pytest

from edgematch.downstream.flood import hold_reason, is_flood
from edgematch.downstream.quarantine import MOVED, SHADOW, Evidence
from edgematch.downstream.reports import (
    CONFIRMED,
    FAILED,
    PENDING,
    PENDING_REVIEW,
    REJECTED,
    RELEASED,
    SUBMITTED,
    new_report,
    transition,
    with_event,
)
from edgematch.downstream.review import (
    CONFIRM,
    REJECT,
    DecisionRefused,
    Link,
    decide,
    decided_by,
    link_target,
    url_digest,
)
from edgematch.ops.commands.review import _render
from tests.support.results import match_result

NOW = 1_750_000_000.0
EVIDENCE = Evidence(
    state=MOVED, mode="move", bucket="quarantine", key="uploads/a.jpg", version_id="q1", at=NOW
)


def _held(reason: str = "review required") -> dict[str, Any]:
    return new_report(match_result(), EVIDENCE, reporter="photodna", now=NOW, held=reason)


def _at(status: str) -> dict[str, Any]:
    """A report moved along the review path to ``status``."""
    doc = _held()
    path = {
        PENDING_REVIEW: [],
        CONFIRMED: [CONFIRMED],
        SUBMITTED: [CONFIRMED, SUBMITTED],
        FAILED: [CONFIRMED, FAILED],
        REJECTED: [REJECTED],
        RELEASED: [REJECTED, RELEASED],
    }[status]
    for step in path:
        actor = {CONFIRMED: "alice", REJECTED: "bob"}.get(step)
        doc = transition(doc, step, now=NOW + 1, actor=actor)
    return doc


def test_a_held_report_starts_pending_review_with_its_reason() -> None:
    """held= writes pending_review, the reason in the status and the first history entry."""
    doc = _held("flood guard: match id m1 …")
    assert doc["status"] == PENDING_REVIEW
    assert doc["status_reason"] == doc["history"][0]["reason"] == "flood guard: match id m1 …"


def test_a_shadow_report_is_never_held() -> None:
    """Quarantine off: shadow whatever the hold (it is never submitted anyway)."""
    shadow = Evidence(state=SHADOW, mode="off", detail="shadow mode: would tag", at=NOW)
    doc = new_report(match_result(), shadow, reporter="photodna", now=NOW, held="review")
    assert doc["status"] == "shadow" and doc["history"][0]["reason"] is None


def test_confirming_a_held_report_confirms_and_submits() -> None:
    """pending_review → confirmed, sent for submission."""
    decision = decide(_at(PENDING_REVIEW), CONFIRM)
    assert decision.status == CONFIRMED and decision.submit


@pytest.mark.parametrize(
    ("status", "submit"), [(CONFIRMED, True), (FAILED, True), (SUBMITTED, False)]
)
def test_confirming_again_writes_nothing(status: str, submit: bool) -> None:
    """A second confirmation writes no entry; one not yet submitted is sent again (the
    submission itself happens once)."""
    decision = decide(_at(status), CONFIRM)
    assert decision.status is None and decision.submit is submit


@pytest.mark.parametrize("status", [REJECTED, RELEASED])
def test_a_rejected_report_is_never_confirmed(status: str) -> None:
    """Confirming a rejected (or released) report is refused, naming who rejected it."""
    with pytest.raises(DecisionRefused, match="rejected by bob"):
        decide(_at(status), CONFIRM)


@pytest.mark.parametrize("status", [CONFIRMED, SUBMITTED, FAILED])
def test_a_confirmed_report_is_never_rejected(status: str) -> None:
    """Rejecting a report a reviewer confirmed is refused, naming who confirmed it."""
    with pytest.raises(DecisionRefused, match="confirmed by alice"):
        decide(_at(status), REJECT)


def test_rejecting_a_held_report_rejects_it_and_again_changes_nothing() -> None:
    """pending_review → rejected; a second rejection writes nothing."""
    first = decide(_at(PENDING_REVIEW), REJECT)
    assert first.status == REJECTED and not first.submit
    again = decide(_at(REJECTED), REJECT)
    assert again.status is None and not again.submit


def test_reports_never_held_cannot_be_decided() -> None:
    """A pending report (filed with review off) or a failed one sent without review is not
    a reviewer's to decide."""
    pending = new_report(match_result(), EVIDENCE, reporter="webhook", now=NOW)
    assert pending["status"] == PENDING
    for action in (CONFIRM, REJECT):
        with pytest.raises(DecisionRefused, match="not held for review"):
            decide(pending, action)
    failed = transition(pending, FAILED, now=NOW, reason="request_rejected: 400")
    with pytest.raises(DecisionRefused, match="without review"):
        decide(failed, REJECT)


def test_a_pending_record_report_can_be_rejected_not_confirmed() -> None:
    """The record reporter's pending document waits for a person (nothing was sent): a
    reviewer may reject it (and so release its content); confirming it is refused."""
    pending = new_report(match_result(), EVIDENCE, reporter="record", now=NOW)
    decision = decide(pending, REJECT)
    assert decision.status == REJECTED and not decision.submit
    rejected = transition(pending, REJECTED, now=NOW + 1, reason="innocent", actor="bob")
    assert rejected["history"][-1]["actor"] == "bob"
    assert decide(rejected, REJECT).status is None
    with pytest.raises(DecisionRefused, match="not held for review"):
        decide(pending, CONFIRM)


def test_decided_by_reads_the_last_decision_and_skips_events() -> None:
    """Who decided comes from the status entries, not from a link issued later."""
    doc = with_event(_at(CONFIRMED), "link_issued", now=NOW + 2, actor="mallory")
    assert decided_by(doc, CONFIRMED) == "alice"
    assert decided_by(_held(), CONFIRMED) == "someone"


def test_an_event_entry_keeps_the_status_and_appends() -> None:
    """with_event appends a non-status entry and changes nothing else."""
    doc = _held()
    linked = with_event(doc, "link_issued", now=NOW + 5, actor="alice", url_sha256="ab")
    assert linked["status"] == doc["status"] and linked["history"][:-1] == doc["history"]
    assert linked["history"][-1] == {
        "at": "2025-06-15T15:06:45.000+00:00",
        "status": PENDING_REVIEW,
        "reason": None,
        "event": "link_issued",
        "actor": "alice",
        "url_sha256": "ab",
    }


def test_the_link_shows_the_evidence_or_nothing() -> None:
    """The link names the preserved copy; a report whose content was missing has none."""
    assert link_target(_held()) == ("quarantine", "uploads/a.jpg", "q1")
    missing = {**_held(), "evidence": {"state": "content_missing", "bucket": None}}
    assert link_target(missing) is None
    assert url_digest("https://x/") == url_digest("https://x/") != url_digest("https://y/")


def test_the_flood_limit_is_exclusive() -> None:
    """N distinct objects are allowed; the N+1st floods."""
    assert not is_flood(50, 50) and is_flood(51, 50)


def test_the_flood_reason_names_every_flooded_match_id_once() -> None:
    """The history reason names the match ids, sorted, once each; none: no reason."""
    reason = hold_reason(["m2", "m1", "m2"], 50, 86400)
    assert reason is not None and "match id m1, m2 matched more than 50" in reason
    assert hold_reason([], 50, 86400) is None


def test_show_prints_the_report_and_the_link_and_escapes_keys() -> None:
    """`review show` for people: state, content, matches, evidence, history, the link; a
    key with a control character cannot break the terminal."""
    doc = with_event(_held(), "link_issued", now=NOW + 1, actor="alice")
    doc["content"] = {**doc["content"], "key": "photos/evil\x1b[2J.jpg"}
    link = Link("https://s3.example/q?X-Amz-Signature=ab", "2025-06-15T15:21:41+00:00",
                "quarantine", "uploads/a.jpg", "q1")  # fmt: skip
    text = _render(doc, link, linked=True)
    assert "pending_review" in text and "evidence  moved s3://quarantine/uploads/a.jpg" in text
    assert "link_issued by alice" in text and "match ids m1, m2" in text
    assert "link      https://s3.example/q?X-Amz-Signature=ab" in text
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "none: the report names no evidence" in _render(_held(), None, linked=True)
