"""Review: a person's decision between a match and its report.

A report held for review (``EDGEMATCH_REVIEW=required``, or a match id the flood guard
holds) waits in ``pending_review``. A reviewer looks at the quarantined copy through a
short-lived pre-signed link (:meth:`Review.show`; every link issued is recorded in the
report's history, never the image itself on a terminal or in a log) and decides:

    pending_review ──confirm──► confirmed ──(the reporter)──► submitted | failed
          └────────reject────► rejected  ──(release)──────► released

Every decision is a history entry with the reviewer (``actor``), the time and their note
or reason; nothing is overwritten. :func:`decide` (pure) says what an action does to a
report in each status: a repeat of the same decision changes nothing (confirming twice
submits once), the opposite decision after one was made is refused
(:class:`DecisionRefused`).

A confirmation is written first, then the submission is handed to ``submit`` (the
``edgematch.submit_report`` task, with the worker's retries and dead letters); the
submission itself runs under the report's lock and only for a ``confirmed`` (or
``failed``) report, so however often it is sent the report is submitted once. A crash
between the two leaves the report ``confirmed``: confirming it again sends it again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from edgematch.downstream.custody import CONTENT_MISSING
from edgematch.downstream.filing import Downstream
from edgematch.downstream.reporters import RECORD
from edgematch.downstream.reports import (
    CONFIRMED,
    FAILED,
    PENDING,
    PENDING_REVIEW,
    REJECTED,
    RELEASED,
    SHADOW,
    SUBMITTED,
    transition,
    with_event,
)
from edgematch.infra.logs import get_logger

log = get_logger(__name__)

CONFIRM, REJECT = "confirm", "reject"
#: The history event of a pre-signed link issued to a reviewer (the status is unchanged).
LINK_ISSUED: Final = "link_issued"
#: How long a decision waits for a report task that holds the report's lock.
_LOCK_WAIT_S: Final = 10.0

#: Sends a confirmed report to be submitted: called with the report's key and document.
Submit = Callable[[str, Mapping[str, Any]], None]


class DecisionRefused(Exception):
    """A decision the report's state does not allow (rejecting a confirmed report …)."""


@dataclass(frozen=True)
class Decision:
    """What an action does to a report: write ``status`` (None: nothing to write), send it
    for submission, and what to tell the reviewer."""

    status: str | None
    submit: bool
    message: str


def decided_by(doc: Mapping[str, Any], status: str) -> str:
    """Who moved the report to ``status`` last, as its history says ("someone" if no one
    is named). Pure."""
    for entry in reversed(doc.get("history", [])):
        if entry.get("status") == status and not entry.get("event"):
            return str(entry.get("actor") or "someone")
    return "someone"


def decide(doc: Mapping[str, Any], action: str) -> Decision:
    """What ``action`` (confirm, reject) does to ``doc`` in its status. Pure.

    Raises DecisionRefused when the status forbids it; a repeat of the decision already
    made is no change (and, for a confirmation not yet submitted, a new submission).
    """
    status, rid = doc["status"], doc["report_id"]
    if status == SHADOW:
        raise DecisionRefused(f"report {rid} is a shadow report (quarantine mode off): never sent")
    if status == PENDING and action == REJECT and doc.get("reporter") == RECORD:
        # The record reporter's pending document waits for a person; nothing was sent.
        return Decision(REJECTED, False, f"report {rid} rejected; it will not be filed")
    if status == PENDING:
        raise DecisionRefused(
            f"report {rid} is not held for review (EDGEMATCH_REVIEW off when it was filed): "
            "it goes to the reporter without a decision"
        )
    if action == CONFIRM:
        return _confirm(doc, status, rid)
    if action == REJECT:
        return _reject(doc, status, rid)
    raise ValueError(f"unknown action {action!r}")


def _confirm(doc: Mapping[str, Any], status: str, rid: str) -> Decision:
    if status == PENDING_REVIEW:
        return Decision(CONFIRMED, True, f"report {rid} confirmed; sent for submission")
    if status in (REJECTED, RELEASED):
        by = decided_by(doc, REJECTED)
        raise DecisionRefused(f"report {rid} was rejected by {by}: it is never submitted")
    if status == SUBMITTED:
        return Decision(None, False, f"report {rid} is already confirmed and submitted")
    # confirmed (a submission may still be on its way) or failed: sent again, submitted once.
    return Decision(None, True, f"report {rid} is already {status}; sent for submission again")


def _reject(doc: Mapping[str, Any], status: str, rid: str) -> Decision:
    if status == PENDING_REVIEW:
        return Decision(REJECTED, False, f"report {rid} rejected; it will not be submitted")
    if status in (REJECTED, RELEASED):
        return Decision(None, False, f"report {rid} is already {status}")
    confirmed = any(e.get("status") == CONFIRMED for e in doc.get("history", []))
    if confirmed:
        by = decided_by(doc, CONFIRMED)
        raise DecisionRefused(
            f"report {rid} is {status}, confirmed by {by}: a confirmed report is never rejected"
        )
    raise DecisionRefused(
        f"report {rid} is {status}: it was sent to the reporter without review and cannot be "
        "rejected"
    )


@dataclass(frozen=True)
class Link:
    """A pre-signed GET of the evidence, for a reviewer's browser."""

    url: str
    expires_at: str
    bucket: str
    key: str
    version_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "expires_at": self.expires_at,
            "object": f"s3://{self.bucket}/{self.key}",
            "version_id": self.version_id,
        }


def link_target(doc: Mapping[str, Any]) -> tuple[str, str, str | None] | None:
    """The object a review link shows: the evidence the report names (the quarantined
    copy, the tagged original, or the original left in place); None when there is none.
    Pure."""
    evidence = doc.get("evidence") or {}
    if evidence.get("state") == CONTENT_MISSING or not evidence.get("bucket"):
        return None
    if not evidence.get("key"):
        return None
    return str(evidence["bucket"]), str(evidence["key"]), evidence.get("version_id")


def url_digest(url: str) -> str:
    """The SHA-256 of a link, kept in the history instead of the link (a bearer
    credential). Pure."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


class Review:
    """The reviewer's operations on the reports of one deployment."""

    def __init__(
        self,
        downstream: Downstream,
        *,
        submit: Submit,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._d = downstream
        self._submit = submit
        self._clock = clock

    def list(
        self,
        *,
        status: str | None = PENDING_REVIEW,
        since: float | None = None,
        match_id: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Reports oldest first (by creation), of ``status`` (None: any), scanned at or after
        ``since``, naming ``match_id``; at most ``limit``."""
        day = dt.datetime.fromtimestamp(since, dt.UTC).date() if since is not None else None
        docs = self._d.reports.list(since=day, status=status, limit=1_000_000)
        if since is not None:
            docs = [d for d in docs if _epoch(d.get("scanned_at")) >= since]
        if match_id is not None:
            docs = [d for d in docs if match_id in (d.get("match_ids") or ())]
        docs.sort(key=lambda d: (str(d.get("created_at")), str(d.get("report_id"))))
        return docs[:limit]

    def find(self, report_id: str) -> tuple[str, dict[str, Any]] | None:
        """The key and document of a report."""
        return self._d.reports.locate(report_id)

    def issue_link(self, report_id: str, *, reviewer: str) -> tuple[dict[str, Any], Link | None]:
        """The report and a pre-signed link to its evidence for ``reviewer``; the link is
        recorded in the history (``link_issued``) before it is returned. No link (None)
        when the report names no evidence. LookupError when there is no such report."""
        with self._d.report_lock(report_id, wait_s=_LOCK_WAIT_S):
            key, doc = self._located(report_id)
            target = link_target(doc)
            if target is None:
                return doc, None
            bucket, obj, version_id = target
            now, expires_s = self._clock(), self._d.settings.review_link_s
            url = self._d.evidence.presigned_get(
                bucket, obj, version_id=version_id, expires_s=expires_s
            )
            link = Link(url, _iso(now + expires_s), bucket, obj, version_id)
            doc = with_event(
                doc,
                LINK_ISSUED,
                now=now,
                actor=reviewer,
                object=f"s3://{bucket}/{obj}",
                version_id=version_id,
                expires_at=link.expires_at,
                url_sha256=url_digest(url),
            )
            self._d.reports.save(key, doc)
        log.info("review_link_issued", report_id=report_id, reviewer=reviewer, expires_s=expires_s)
        return doc, link

    def confirm(self, report_id: str, *, reviewer: str, note: str | None) -> Decision:
        """Confirm a held report and send it for submission (once; see the module doc)."""
        return self._decide(report_id, CONFIRM, reviewer=reviewer, note=note)

    def reject(self, report_id: str, *, reviewer: str, reason: str) -> Decision:
        """Reject a held report: it is never submitted (the content may then be released)."""
        return self._decide(report_id, REJECT, reviewer=reviewer, note=reason)

    def _decide(self, report_id: str, action: str, *, reviewer: str, note: str | None) -> Decision:
        with self._d.report_lock(report_id, wait_s=_LOCK_WAIT_S):
            key, doc = self._located(report_id)
            decision = decide(doc, action)
            if decision.status is not None:
                # A rejection's reason is the report's reason; a confirmation's note is a note.
                reason, note = (note, None) if action == REJECT else (None, note)
                doc = transition(
                    doc,
                    decision.status,
                    now=self._clock(),
                    reason=reason,
                    actor=reviewer,
                    note=note,
                )
                self._d.reports.save(key, doc)
                log.info(f"report_{decision.status}", report_id=report_id, reviewer=reviewer)
        if decision.submit and doc["status"] in (CONFIRMED, FAILED):
            self._submit(key, doc)
        return decision

    def _located(self, report_id: str) -> tuple[str, dict[str, Any]]:
        found = self._d.reports.locate(report_id)
        if found is None:
            raise LookupError(f"no report {report_id}")
        return found


def _epoch(iso: object) -> float:
    try:
        return dt.datetime.fromisoformat(str(iso)).timestamp()
    except ValueError:
        return 0.0
