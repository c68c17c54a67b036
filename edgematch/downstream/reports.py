"""Reports: one versioned JSON document per matched content version, never two.

The document (schema ``edgematch.report/v1``) is written to ``EDGEMATCH_REPORTS_BUCKET``
at ``reports/<yyyy>/<mm>/<dd>/<report-id>.json`` (the scan's UTC date), encrypted at rest
(AES256, or aws:kms with ``EDGEMATCH_REPORTS_KMS_KEY_ID``). It names the content and hash
objects, where the evidence is preserved, the match ids, sources, violations, tracking
id and correlation id, and a status with its history::

    pending ──► submitted          a reporter accepted it
       │  ▲
       ▼  │ (a retry or replay succeeds)
     failed                         with the reason
    shadow                          quarantine mode off: recorded, never submitted

    pending_review ──► confirmed ──► submitted | failed     a reviewer confirmed it
          │
          └──────────► rejected ──► released                a reviewer rejected it; the
                                                            content was put back

A report held for review (``EDGEMATCH_REVIEW=required``, or a flooded match id) starts in
``pending_review`` and is never submitted before a ``confirmed`` decision. A ``pending``
report of the ``record`` reporter is a document waiting for a person (edgematch sends it
nowhere), so a reviewer may reject it too (``pending → rejected``). A ``confirmed``
report is never released; a ``rejected`` one is never submitted.

The report id is derived from the content version (bucket, key, version id or ETag), so
every delivery of the same match, however late, names the same report. Redis remembers
where each report was written (for ``EDGEMATCH_IDEMPOTENCY_TTL_S``); after that, the
scan date in the result leads to the same key again.

Raised: ``InvalidTransition`` (a ``ValueError``, our bug) for a status change the table
above does not allow; S3 and Redis failures as edgematch errors (see evidence.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any, Final

import redis

from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.quarantine import SHADOW as EVIDENCE_SHADOW
from edgematch.downstream.quarantine import ContentVersion, Evidence
from edgematch.infra.keys import Keys
from edgematch.pipeline.results import Result

SCHEMA: Final = "edgematch.report/v1"
PREFIX: Final = "reports/"
PENDING, SUBMITTED, FAILED, SHADOW = "pending", "submitted", "failed", "shadow"
PENDING_REVIEW, CONFIRMED, REJECTED, RELEASED = (
    "pending_review",
    "confirmed",
    "rejected",
    "released",
)
STATUSES: Final = (
    PENDING,
    SUBMITTED,
    FAILED,
    SHADOW,
    PENDING_REVIEW,
    CONFIRMED,
    REJECTED,
    RELEASED,
)
_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    PENDING: frozenset({SUBMITTED, FAILED, REJECTED}),
    FAILED: frozenset({SUBMITTED, FAILED}),
    SUBMITTED: frozenset(),
    SHADOW: frozenset(),
    PENDING_REVIEW: frozenset({CONFIRMED, REJECTED}),
    CONFIRMED: frozenset({SUBMITTED, FAILED}),
    REJECTED: frozenset({RELEASED}),
    RELEASED: frozenset(),
}


class InvalidTransition(ValueError):
    """A status change the report's state machine does not allow."""


def report_id_for(result: Result) -> str:
    """The report id of the content version ``result`` scanned. Pure, deterministic."""
    identity = ContentVersion.of(result).identity
    if identity.endswith("\x00unknown"):
        # The content's version was unknown at ingest: the hash file's write names it.
        tail = result.version_id or f"etag:{result.etag}"
        identity += f"\x00{result.bucket}\x00{result.key}\x00{tail}"
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return f"rpt-{digest[:32]}"


def report_key(report_id: str, scanned_at: float) -> str:
    """``reports/<yyyy>/<mm>/<dd>/<report-id>.json``, dated by the scan (UTC). Pure."""
    day = dt.datetime.fromtimestamp(scanned_at, dt.UTC)
    return f"{PREFIX}{day:%Y/%m/%d}/{report_id}.json"


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds")


def new_report(
    result: Result,
    evidence: Evidence,
    *,
    reporter: str,
    now: float,
    held: str | None = None,
) -> dict[str, Any]:
    """The first version of the report for ``result``. Pure.

    ``pending``; ``pending_review`` when ``held`` (the reason: review required, a flooded
    match id); ``shadow`` when quarantine is off (recorded, never submitted, so never held).
    """
    if evidence.state == EVIDENCE_SHADOW:
        status, reason = SHADOW, evidence.detail
    elif held is not None:
        status, reason = PENDING_REVIEW, held
    else:
        status, reason = PENDING, None
    return {
        "schema": SCHEMA,
        "report_id": report_id_for(result),
        "created_at": _iso(now),
        "updated_at": _iso(now),
        "status": status,
        "status_reason": reason,
        "reporter": reporter,
        "content": {
            "bucket": result.content_bucket,
            "key": result.content_key,
            "version_id": result.content_version_id,
            "etag": result.content_etag,
        },
        "hash": {
            "bucket": result.bucket,
            "key": result.key,
            "version_id": result.version_id,
            "etag": result.etag,
        },
        "evidence": evidence.to_dict(),
        "match_ids": list(result.match_ids),
        "sources": list(result.sources),
        "violations": list(result.violations),
        "tracking_id": result.tracking_id,
        "request_id": result.request_id,
        "from_match_cache": result.from_cache,
        "correlation_id": result.correlation_id,
        "event_time": result.event_time,
        "scanned_at": _iso(result.scanned_at),
        "submission": None,
        "history": [
            {
                "at": _iso(now),
                "status": status,
                "reason": held if status == PENDING_REVIEW else None,
            }
        ],
    }


def transition(
    doc: Mapping[str, Any],
    status: str,
    *,
    now: float,
    reason: str | None = None,
    submission: Mapping[str, Any] | None = None,
    actor: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """A copy of ``doc`` moved to ``status``. Pure. InvalidTransition if not allowed.

    The history is append-only: the entry names the time, the new status, the reason and,
    for a person's decision, who made it (``actor``) and their ``note``.
    """
    current = doc["status"]
    if status not in _TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(f"report {doc['report_id']}: {current} → {status} is not allowed")
    updated = dict(doc)
    updated["status"] = status
    updated["status_reason"] = reason
    updated["updated_at"] = _iso(now)
    if submission is not None:
        updated["submission"] = dict(submission)
    updated["history"] = [
        *doc.get("history", []),
        _entry(now, status, reason, actor=actor, note=note),
    ]
    return updated


def _entry(
    now: float, status: str, reason: str | None, *, actor: str | None, note: str | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": _iso(now), "status": status, "reason": reason}
    if actor is not None:
        entry["actor"] = actor
    if note is not None:
        entry["note"] = note
    return entry


def with_event(
    doc: Mapping[str, Any], event: str, *, now: float, actor: str, **fields: Any
) -> dict[str, Any]:
    """A copy of ``doc`` with a history entry that changes no status (``event`` names what
    happened, e.g. ``link_issued``; ``fields`` say more). Pure."""
    updated = dict(doc)
    updated["updated_at"] = _iso(now)
    entry = {"at": _iso(now), "status": doc["status"], "reason": None, "event": event}
    updated["history"] = [*doc.get("history", []), {**entry, "actor": actor, **fields}]
    return updated


def with_evidence(doc: Mapping[str, Any], evidence: Evidence, *, now: float) -> dict[str, Any]:
    """A copy of ``doc`` naming where the evidence is now (after a replayed quarantine).

    The status is kept: a report is submitted once, wherever its evidence moves. Pure.
    """
    updated = dict(doc)
    updated["evidence"] = evidence.to_dict()
    updated["updated_at"] = _iso(now)
    updated["history"] = [
        *doc.get("history", []),
        {"at": _iso(now), "status": doc["status"], "reason": f"evidence {evidence.state}"},
    ]
    return updated


def evidence_changed(doc: Mapping[str, Any], evidence: Evidence) -> bool:
    """Whether ``evidence`` tells more than the document does (time of the check aside)."""
    before = {k: v for k, v in (doc.get("evidence") or {}).items() if k != "at"}
    after = {k: v for k, v in evidence.to_dict().items() if k != "at"}
    return before != after


class ReportStore:
    """Report documents in the reports bucket, found again through Redis or their date."""

    def __init__(
        self,
        store: EvidenceStore,
        client: redis.Redis,
        namespace: str,
        *,
        bucket: str,
        kms_key_id: str | None,
        ttl_s: int,
    ) -> None:
        self._store = store
        self._r = client
        self._k = Keys(namespace)
        self.bucket = bucket
        self._kms_key_id = kms_key_id
        self._ttl_s = ttl_s

    def load(self, report_id: str, dated_key: str) -> tuple[str, dict[str, Any]] | None:
        """The report's key and document: where Redis says, else at ``dated_key``."""
        pointer = self._r.get(self._k.report(report_id))
        key = pointer.decode() if isinstance(pointer, bytes) else dated_key
        doc = self._store.get_json(self.bucket, key)
        if doc is None and key != dated_key:
            key, doc = dated_key, self._store.get_json(self.bucket, dated_key)
        return (key, doc) if doc is not None else None

    def save(self, key: str, doc: Mapping[str, Any]) -> None:
        """Write the document (the whole object is replaced) and remember its key."""
        self._store.put_json(self.bucket, key, doc, kms_key_id=self._kms_key_id)
        self._r.set(self._k.report(doc["report_id"]), key, ex=self._ttl_s)

    def find(self, report_id: str) -> dict[str, Any] | None:
        """The report with this id, for ``edgematch reports show``."""
        found = self.locate(report_id)
        return found[1] if found is not None else None

    def locate(self, report_id: str) -> tuple[str, dict[str, Any]] | None:
        """The key and document of the report with this id: where Redis says, else found
        by listing the reports (slow, for reports older than the Redis pointer)."""
        pointer = self._r.get(self._k.report(report_id))
        if isinstance(pointer, bytes):
            doc = self._store.get_json(self.bucket, pointer.decode())
            if doc is not None:
                return pointer.decode(), doc
        suffix = f"/{report_id}.json"
        for key in self._store.list_keys(self.bucket, PREFIX, limit=1_000_000):
            if key.endswith(suffix):
                doc = self._store.get_json(self.bucket, key)
                return (key, doc) if doc is not None else None
        return None

    def list(
        self, *, since: dt.date | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Reports dated ``since`` or later, oldest first, optionally of one status."""
        # "reports/2025/06/01" sorts before that day's keys and after every earlier day's.
        start_after = f"{PREFIX}{since:%Y/%m/%d}" if since else ""
        found: list[dict[str, Any]] = []
        keys = self._store.list_keys(self.bucket, PREFIX, start_after=start_after, limit=100_000)
        for key in keys:
            if not key.endswith(".json"):
                continue
            doc = self._store.get_json(self.bucket, key)
            if doc is None or (status and doc.get("status") != status):
                continue
            found.append({**doc, "key": key})
            if len(found) >= limit:
                break
        return found
