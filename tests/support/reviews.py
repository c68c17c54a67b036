"""A reviewer's decision on a report, written with the report module's pure functions.

Reports start ``pending`` while EDGEMATCH_REVIEW is off, and ``pending → rejected`` is not
in the state table: a decision needs a report held for review. ``decide`` writes the
document as it would be had it been held (``pending_review``) and then decided, through
``reports.transition`` — the same history entries (status, time, reviewer, note) the
review commands append. Kept in this one place so the tests that use it can switch to
``edgematch review reject`` / ``confirm`` as one change.
"""

from __future__ import annotations

import json
import time
from typing import Any

from devtools.localstack import LocalPipeline
from edgematch.downstream.reports import CONFIRMED, PENDING_REVIEW, REJECTED, transition


def decide(
    pipe: LocalPipeline,
    report_id: str,
    decision: str,
    *,
    reviewer: str = "reviewer-e2e",
    note: str = "seen by a person",
) -> dict[str, Any]:
    """Write report ``report_id`` as held for review and then ``decision`` (rejected or
    confirmed) by ``reviewer``; return the document written."""
    if decision not in (REJECTED, CONFIRMED):
        raise ValueError(f"a review decides rejected or confirmed, not {decision!r}")
    (doc,) = [d for d in pipe.reports() if d["report_id"] == report_id]
    key = doc.pop("key")
    now = time.time()
    held = {
        **doc,
        "status": PENDING_REVIEW,
        "history": [
            *doc["history"],
            {"at": doc["updated_at"], "status": PENDING_REVIEW, "reason": "held for review"},
        ],
    }
    decided = transition(held, decision, now=now, reason=note, actor=reviewer, note=note)
    pipe.s3().put_object(
        Bucket=pipe.reports_bucket,
        Key=key,
        Body=json.dumps(decided, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
        ServerSideEncryption="AES256",
    )
    return decided
