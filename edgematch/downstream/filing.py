"""The consumers of a match, wired together: match cache, quarantine, report, reporter.

The order, and why: every recorded result is handed here by the results consumer
(:meth:`Downstream.take`); a ``match`` result is remembered in the match cache and sent to
the ``quarantine`` queue; a finished quarantine (or one that gave up — the report then says
the evidence was not preserved) sends the ``report`` task with the :class:`Evidence`, so
the report names where the preserved bytes are and the ``photodna`` reporter can read
them. Both steps are idempotent on the content version (see quarantine.py, reports.py):
a result delivered three times, or replayed a week later, gives one copy and one report.

A new report may be held for a person (``pending_review``, never submitted before a
confirmation): when EDGEMATCH_REVIEW requires review, or when one of its match ids floods
(flood.py). A reviewer's confirmation (review.py) sends ``submit_report``, which submits
through :meth:`Downstream.submit_confirmed` under the same lock as the report step, so a
report is handed to the reporter once.

The parts are given their clients by the composition root (edgematch/runtime.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from functools import cached_property
from typing import Any

from edgematch.config.settings import Settings
from edgematch.downstream import reporters
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.flood import FloodGuard, hold_reason
from edgematch.downstream.mover import head_version
from edgematch.downstream.quarantine import CONTENT_MISSING, Evidence, Quarantine
from edgematch.downstream.quarantine import FAILED as EVIDENCE_FAILED
from edgematch.downstream.quarantine import SHADOW as EVIDENCE_SHADOW
from edgematch.downstream.reports import (
    CONFIRMED,
    FAILED,
    PENDING,
    SUBMITTED,
    ReportStore,
    evidence_changed,
    new_report,
    report_id_for,
    report_key,
    transition,
    with_evidence,
)
from edgematch.errors import BadInput, ConfigurationError, EdgematchError, TransientError
from edgematch.infra import metrics
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import Redis
from edgematch.infra.storage import ObjectStore
from edgematch.photodna.matchcache import MatchCache
from edgematch.pipeline.results import CLEAN, MATCH, Result
from edgematch.recovery.locks import exclusive

log = get_logger(__name__)

#: Statuses a report is handed to the reporter in: never one held, decided against, or sent.
SUBMITTABLE = frozenset({PENDING, CONFIRMED, FAILED})
#: The history reason of a report held because EDGEMATCH_REVIEW requires a person.
REVIEW_REQUIRED = "review required (EDGEMATCH_REVIEW): waiting for a reviewer's decision"


class Downstream:
    """The match cache, quarantine, report store and reporter of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis,
        evidence: EvidenceStore,
        objects: ObjectStore,
        match_cache: MatchCache,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.evidence = evidence
        self.objects = objects
        self.match_cache = match_cache

    def take(self, result: Result) -> bool:
        """The hand-off of every recorded result, repeats included: True when it goes on to
        quarantine (a match). A match is remembered in the match cache; with
        EDGEMATCH_CLEAN_CACHE_TTL_S > 0 a clean verdict from the API is too (one from the
        cache is not: re-serving a verdict never extends its life). Idempotent.
        """
        if result.verdict == MATCH:
            self.match_cache.remember(result)
            return True
        if result.verdict == CLEAN and self.settings.clean_cache_ttl_s > 0:
            self.match_cache.remember(result)
        return False

    @cached_property
    def quarantine(self) -> Quarantine:
        return Quarantine(
            settings=self.settings,
            evidence=self.evidence,
            objects=self.objects,
            client=self.redis,
        )

    @cached_property
    def reports(self) -> ReportStore:
        """Raises ConfigurationError when EDGEMATCH_REPORTS_BUCKET is not set."""
        bucket = self.settings.reports_bucket
        if not bucket:
            raise ConfigurationError(
                "EDGEMATCH_REPORTS_BUCKET is required: every match gets a report document"
            )
        return ReportStore(
            self.evidence,
            self.redis,
            self.settings.namespace,
            bucket=bucket,
            kms_key_id=self.settings.reports_kms_key_id,
            ttl_s=self.settings.idempotency_ttl_s,
        )

    @cached_property
    def reporter(self) -> reporters.Reporter:
        s = self.settings
        if s.reporter == reporters.WEBHOOK:
            assert s.report_webhook_url and s.report_webhook_secret  # Settings checks both
            return reporters.WebhookReporter(
                s.report_webhook_url,
                s.report_webhook_secret,
                timeout_s=s.api_timeout_s,
                connect_timeout_s=s.api_connect_timeout_s,
            )
        if s.reporter == reporters.PHOTODNA:
            assert s.report_user and s.report_password  # Settings checks them
            assert s.report_org_name and s.report_reporter_name
            return reporters.PhotoDNAReporter(
                s.api_url,
                key=s.require_subscription_key(),
                user=s.report_user,
                password=s.report_password,
                org_name=s.report_org_name,
                reporter_name=s.report_reporter_name,
                is_test=s.report_test,
                read_evidence=self.read_evidence,
                timeout_s=s.api_timeout_s,
                connect_timeout_s=s.api_connect_timeout_s,
                verify=s.tls_verify,
            )
        return reporters.RecordReporter()

    def read_evidence(self, doc: Mapping[str, Any]) -> tuple[bytes, Mapping[str, str]]:
        """The preserved image of a report and its user metadata; BadInput when none."""
        evidence = Evidence.from_dict(doc.get("evidence") or {"state": "", "mode": ""})
        if evidence.state == CONTENT_MISSING or not evidence.bucket or not evidence.key:
            raise reporters.no_image(doc)
        info = head_version(
            self.evidence, evidence.bucket, evidence.key, evidence.version_id, evidence.etag
        )
        image = self.evidence.read(
            evidence.bucket,
            evidence.key,
            version_id=info.version_id,
            max_bytes=reporters.MAX_REPORT_IMAGE_BYTES,
        )
        return image, info.metadata

    @cached_property
    def flood(self) -> FloodGuard:
        s = self.settings
        return FloodGuard(self.redis, s.namespace, limit=s.flood_matches, window_s=s.flood_window_s)

    def hold_reason(self, result: Result, *, now: float, shadow: bool = False) -> str | None:
        """Why the new report of ``result`` waits for a person, if it does: a flooded match
        id (counted here, once per report, in shadow mode too, where nothing is held:
        a shadow report is never sent), else EDGEMATCH_REVIEW."""
        flooded = self.flood.count(
            result.match_ids, result.content_bucket, result.content_key, now=now
        )
        held = hold_reason(flooded, self.flood.limit, self.flood.window_s)
        if shadow:
            return None
        if held is not None:
            metrics.FLOOD_HELD.inc()
            log.warning("report_held_flood", match_ids=flooded)
            return held
        return REVIEW_REQUIRED if self.settings.review_required else None

    def report_lock(self, report_id: str, *, wait_s: float = 0.0) -> AbstractContextManager[None]:
        """One writer of a report at a time (LockHeld, transient, when it stays held)."""
        return exclusive(
            self.redis,
            Keys(self.settings.namespace).report_lock(report_id),
            ttl_s=self.settings.lock_ttl_s,
            what=f"report {report_id}",
            wait_s=wait_s,
        )

    # -- the report step ------------------------------------------------------------------
    def file_report(self, result: Result, evidence: Evidence) -> dict[str, Any]:
        """Write the one report of this content version and hand it to the reporter.

        Idempotent: a repeat finds the document (and, when a replayed quarantine has
        moved the evidence since, records where it is now). A new report held for review
        (:meth:`hold_reason`) is written ``pending_review`` and not submitted; only a
        ``pending``, ``confirmed`` or ``failed`` one is handed to the reporter, so a
        ``submitted`` or ``shadow`` report is never sent again. A reporter error that is not
        transient marks it ``failed`` and is raised; a transient one is raised as it is.
        """
        store = self.reports
        report_id = report_id_for(result)
        dated_key = report_key(report_id, result.scanned_at)
        with self.report_lock(report_id):
            found = store.load(report_id, dated_key)
            if found is None:
                key, now = dated_key, time.time()
                shadow = evidence.state == EVIDENCE_SHADOW
                held = self.hold_reason(result, now=now, shadow=shadow)
                doc = new_report(result, evidence, reporter=self.reporter.name, now=now, held=held)
                store.save(key, doc)
                log.info("report_recorded", report_id=report_id, key=key, status=doc["status"])
            else:
                key, doc = found
                if evidence_changed(doc, evidence) and evidence.state != EVIDENCE_FAILED:
                    doc = with_evidence(doc, evidence, now=time.time())
                    store.save(key, doc)
                    log.info("report_evidence_updated", report_id=report_id, state=evidence.state)
            return self._submit(key, doc)

    def submit_confirmed(self, report_id: str, key: str | None = None) -> dict[str, Any]:
        """Submit a report a person confirmed (``edgematch review confirm``), found at
        ``key`` when given. Idempotent: under the report's lock, only a ``confirmed`` (or,
        replayed, ``failed``) report is handed to the reporter, so however often this runs
        it is submitted once. BadInput when there is no such report."""
        with self.report_lock(report_id):
            reports = self.reports
            found = reports.load(report_id, key) if key else reports.locate(report_id)
            if found is None:
                raise BadInput(f"report {report_id} not found")
            key, doc = found
            if doc["status"] not in (CONFIRMED, FAILED):
                return doc
            return self._submit(key, doc)

    def _submit(self, key: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Hand ``doc`` to the reporter when its status allows; record what came of it."""
        if doc["status"] not in SUBMITTABLE:
            return doc  # held for review, rejected, or already submitted: nothing leaves
        report_id = doc["report_id"]
        try:
            receipt = self.reporter.submit(doc)
        except TransientError:
            raise  # retried by the task; the report keeps its status meanwhile
        except EdgematchError as exc:
            # Refused for good (bad request, credentials, no image): a person must act.
            reason = f"{exc.reason}: {exc}"
            self.reports.save(key, transition(doc, FAILED, now=time.time(), reason=reason))
            raise
        if receipt is None:
            return doc  # record: the document is the output, pending a human
        doc = transition(doc, SUBMITTED, now=time.time(), submission=receipt.to_dict())
        self.reports.save(key, doc)
        log.info("report_submitted", report_id=report_id, reporter=receipt.reporter)
        return doc

    def mark_failed(self, result: Result, reason: str) -> None:
        """After the report task gave up: record why on the document, if it exists."""
        report_id = report_id_for(result)
        found = self.reports.load(report_id, report_key(report_id, result.scanned_at))
        if found is not None:
            self._mark_failed(*found, reason)

    def mark_confirmed_failed(self, report_id: str, reason: str) -> None:
        """After the submission of a confirmed report gave up: record why, if it exists."""
        found = self.reports.locate(report_id)
        if found is not None:
            self._mark_failed(*found, reason)

    def _mark_failed(self, key: str, doc: dict[str, Any], reason: str) -> None:
        if doc["status"] in (PENDING, CONFIRMED):
            self.reports.save(key, transition(doc, FAILED, now=time.time(), reason=reason))

    def close(self) -> None:
        if "reporter" in self.__dict__:
            self.reporter.close()
