"""What a release puts back, and what the report says of it. Pure functions, tested alone.

A released version carries what the original carried: the evidence copy's metadata less
what edgematch added to it (:data:`OUR_COPY_METADATA`), plus one marker of its own
(:data:`META_RELEASED`, the report id) by which a second run finds it; the evidence copy's
tags less edgematch's verdict tag, which is set to ``quarantined`` while the copy is
verified and to ``released`` once it is (so the publication gate never serves a version
that is not yet verified). The report moves ``rejected → released``, its history naming
the operator (a ``shadow`` report, whose status never changes, records the release in its
history); a later discard of the evidence is appended to the history too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from edgematch.downstream.copies import (
    META_CORRELATION_ID,
    META_MATCH_IDS,
    META_SOURCE,
    META_SOURCE_ETAG,
    META_SOURCE_SHA256,
    META_SOURCE_SIZE,
    META_SOURCE_VERSION,
    META_TRACKING_ID,
)
from edgematch.downstream.reports import REJECTED, RELEASED, SHADOW, transition
from edgematch.infra.storage import MAX_TAGS

__all__ = [
    "META_RELEASED",
    "OUR_COPY_METADATA",
    "discarded",
    "is_released",
    "refusal",
    "released",
    "restored_metadata",
    "restored_tags",
]

#: User metadata on a released version: the report it was released for.
META_RELEASED: Final = "edgematch-released-report"
#: What quarantine added to the copy's metadata; the rest is the original's own.
OUR_COPY_METADATA: Final = frozenset(
    {
        META_SOURCE,
        META_SOURCE_SHA256,
        META_SOURCE_VERSION,
        META_SOURCE_ETAG,
        META_SOURCE_SIZE,
        META_MATCH_IDS,
        META_TRACKING_ID,
        META_CORRELATION_ID,
    }
)


def refusal(doc: Mapping[str, Any]) -> str | None:
    """Why the report ``doc`` cannot be released; None when it can (``rejected``; ``shadow``,
    quarantine off, never to be submitted) or was (``released``: a second run finishes
    what is left)."""
    status = doc.get("status")
    if status in (REJECTED, RELEASED, SHADOW):
        return None
    rid = doc.get("report_id")
    if status == "pending_review":
        return (
            f"report {rid} is pending_review: no reviewer has decided yet; a reviewer rejects "
            "it first (edgematch review reject ID --reviewer NAME --reason TEXT)"
        )
    if status == "pending" and doc.get("reporter") == "record":
        return (
            f"report {rid} is pending: no reviewer has decided yet; a reviewer rejects "
            "it first (edgematch review reject ID --reviewer NAME --reason TEXT)"
        )
    if status == "pending":
        return (
            f"report {rid} is pending: it was filed while review was off and goes to the "
            "reporter without a decision, so it is never released; hold reports for a "
            "reviewer (EDGEMATCH_REVIEW=required) to release what a reviewer rejects"
        )
    return (
        f"report {rid} is {status}: it was confirmed or handed to the reporter; its content "
        "is never released"
    )


def restored_metadata(copy_metadata: Mapping[str, str], report_id: str) -> dict[str, str]:
    """The released version's user metadata: the original's, and the release marker."""
    kept = {k: v for k, v in copy_metadata.items() if k.lower() not in OUR_COPY_METADATA}
    return {**kept, META_RELEASED: report_id}


def restored_tags(copy_tags: Mapping[str, str], tag_key: str, value: str) -> dict[str, str]:
    """The released version's tags: the original's (the copy's, less the verdict tag)
    with ``tag_key=value``; the original's alone when they already fill S3's 10."""
    platform = {k: v for k, v in copy_tags.items() if k != tag_key}
    merged = {**platform, tag_key: value}
    return merged if len(merged) <= MAX_TAGS else platform


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")


def is_released(doc: Mapping[str, Any]) -> bool:
    """Whether a release of ``doc`` finished: ``released``, or a ``shadow`` report (whose
    status never changes) that records one."""
    return doc.get("status") == RELEASED or (doc.get("status") == SHADOW and "release" in doc)


def released(
    doc: Mapping[str, Any], release: Mapping[str, Any], *, operator: str, now: float
) -> dict[str, Any]:
    """``doc`` moved ``rejected → released``, naming the operator and where the content
    is now (``release``: state, bucket, key, version id, detail); a ``shadow`` report keeps
    its status and gets the same history entry. InvalidTransition from any other status."""
    reason = str(release.get("detail") or release.get("state"))
    if doc.get("status") == SHADOW:
        updated = dict(doc)
        updated["updated_at"] = _iso(now)
        entry = {"at": _iso(now), "status": SHADOW, "reason": f"released: {reason}"}
        updated["history"] = [*doc.get("history", []), {**entry, "actor": operator}]
    else:
        updated = transition(doc, RELEASED, now=now, reason=reason, actor=operator)
    updated["release"] = {**release, "at": _iso(now), "operator": operator}
    return updated


def discarded(doc: Mapping[str, Any], *, operator: str, now: float) -> dict[str, Any]:
    """``doc`` (released) noting that its evidence copy was deleted, by whom. The history
    is appended to; the status stays ``released``."""
    updated = dict(doc)
    updated["updated_at"] = _iso(now)
    updated["release"] = {**(doc.get("release") or {}), "evidence_discarded_at": _iso(now)}
    updated["history"] = [
        *doc.get("history", []),
        {
            "at": _iso(now),
            "status": doc["status"],
            "reason": "evidence discarded",
            "actor": operator,
        },
    ]
    return updated
