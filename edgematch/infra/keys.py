"""Every Redis key and queue name edgematch uses, in one place, under one namespace.

Deployments that share a Redis set different ``EDGEMATCH_NAMESPACE`` values and never see
each other's keys. Keys that a crashed process could leak carry a TTL where they are set.
Keys made per scanned hash name it by a short digest (:func:`short_digest`), never by its
bucket and key, which may be a kilobyte long: Redis holds millions of them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from edgematch.names import queue_name

#: Lanes in the order they are served: live uploads first, then replays, then backfills.
LANES = ("live", "replay", "backfill")


@dataclass(frozen=True)
class Keys:
    """Key names for one namespace. Pure: builds strings, touches nothing."""

    ns: str

    # -- batch buffer -------------------------------------------------------------------
    @property
    def ready(self) -> str:
        """ZSET item id -> the time (ms) it may be sent: live items waiting for a batch."""
        return self.ready_lane("live")

    def ready_lane(self, lane: str) -> str:
        """The waiting items of one lane (live, replay, backfill)."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        return f"{self.ns}:buf:ready:{lane}"

    @property
    def ready_lanes(self) -> tuple[str, ...]:
        """Every lane's waiting items, in the order batches are filled from them."""
        return tuple(self.ready_lane(lane) for lane in LANES)

    @property
    def background_credit(self) -> str:
        """STRING: how much of a batch the background lanes are owed (their minimum share)."""
        return f"{self.ns}:buf:background_credit"

    @property
    def items(self) -> str:
        """HASH item id -> item JSON, for items waiting or leased."""
        return f"{self.ns}:buf:items"

    @property
    def leases(self) -> str:
        """ZSET batch id -> lease expiry (ms): batches a worker is sending."""
        return f"{self.ns}:buf:leases"

    @property
    def lease_items(self) -> str:
        """HASH batch id -> comma-separated item ids of that batch."""
        return f"{self.ns}:buf:lease_items"

    # -- rate limit, cooldown, circuit breaker, pumps ------------------------------------
    @property
    def rate_log(self) -> str:
        """ZSET of the pool's recent requests, scored by when each was allowed (ms)."""
        return f"{self.ns}:rl:log"

    @property
    def cooldown(self) -> str:
        """STRING: no request before this time (ms); set from a 429's Retry-After."""
        return f"{self.ns}:rl:cooldown"

    @property
    def cooldown_capped(self) -> str:
        """STRING JSON with a TTL of what the server asked: the last 429 asked for more than
        EDGEMATCH_MAX_COOLDOWN_S, so once the (capped) cooldown is over one probe goes first."""
        return f"{self.ns}:rl:cooldown:capped"

    @property
    def breaker(self) -> str:
        """STRING: the key was refused; no request before this time (ms) but one probe."""
        return f"{self.ns}:breaker"

    @property
    def breaker_probe(self) -> str:
        """STRING with a TTL: the batch id of the one probe request in flight (after the
        breaker's pause, or after a capped cooldown)."""
        return f"{self.ns}:breaker:probe"

    @property
    def pumps(self) -> str:
        """ZSET pump id -> expiry (ms): match tasks that are draining the buffer."""
        return f"{self.ns}:pumps"

    @property
    def pump_waiters(self) -> str:
        """ZSET pump id -> expiry (ms): the one pump sleeping until the next request slot."""
        return f"{self.ns}:pumps:waiting"

    @property
    def stats(self) -> str:
        """HASH of pipeline counters (requests, items, 429s …) for status and tests."""
        return f"{self.ns}:stats"

    # -- idempotency, results, dead letters -----------------------------------------------
    def seen(self, identity: str) -> str:
        """STRING with a TTL (the idempotency window): this object version was accepted for
        scanning."""
        return f"{self.ns}:seen:{short_digest(identity)}"

    def result(self, bucket: str, key: str) -> str:
        """STRING with a TTL (the hot window): the latest recorded result for the hash
        object bucket/key."""
        return self.result_by_digest(location_digest(bucket, key))

    def result_by_digest(self, digest: str) -> str:
        """:meth:`result` of the hash object whose :func:`location_digest` is ``digest``."""
        return f"{self.ns}:result:{digest}"

    def content_result(self, bucket: str, key: str) -> str:
        """STRING with a TTL (the hot window): the :func:`location_digest` of the hash
        object whose result covers content object bucket/key."""
        return f"{self.ns}:result-content:{location_digest(bucket, key)}"

    # Before the verdict log, results were kept for months under their location; these
    # keys are read until they expire, or `edgematch migrate-results` moves them to the log.
    def legacy_result(self, bucket: str, key: str) -> str:
        """STRING: a result recorded by an earlier release, under its hash object's location."""
        return f"{self.ns}:result:{bucket}/{key}"

    def legacy_content_result(self, bucket: str, key: str) -> str:
        """STRING: an earlier release's pointer, content location -> ``bucket/key`` of the hash."""
        return f"{self.ns}:result-content:{bucket}/{key}"

    def result_item(self, item_id: str) -> str:
        """STRING with a TTL: this item's result was recorded once (later ones are repeats)."""
        return f"{self.ns}:result-item:{item_id}"

    # -- the verdict log's staging area (pipeline/verdictlog.py) ------------------------------
    @property
    def log_staged(self) -> str:
        """LIST of result lines recorded but not yet written to the verdict log, oldest first."""
        return f"{self.ns}:vlog:staged"

    @property
    def log_batches(self) -> str:
        """HASH batch id -> JSON of the lines one flush took (until they are written)."""
        return f"{self.ns}:vlog:batches"

    @property
    def log_leases(self) -> str:
        """ZSET batch id -> lease expiry (ms): batches a flush is writing to the object store."""
        return f"{self.ns}:vlog:leases"

    @property
    def log_due(self) -> str:
        """STRING with a TTL of the flush interval: a flush started within it."""
        return f"{self.ns}:vlog:due"

    def tag_lock(self, bucket: str, key: str) -> str:
        """STRING with a TTL: one writer at a time of a content object's verdict tag."""
        return f"{self.ns}:tag-lock:{_digest(bucket + chr(0) + key)}"

    @property
    def dead_letters(self) -> str:
        """HASH dead-letter id -> entry JSON."""
        return f"{self.ns}:dlq:entries"

    @property
    def dead_letter_index(self) -> str:
        """ZSET dead-letter id -> time of the last failure (ms)."""
        return f"{self.ns}:dlq:index"

    @property
    def dead_letter_replays(self) -> str:
        """HASH dead-letter id -> JSON of its latest replay (task id, time, failures then)."""
        return f"{self.ns}:dlq:replaying"

    @property
    def dead_letter_meta(self) -> str:
        """HASH of store-wide facts: entries refused because the store was full, and when."""
        return f"{self.ns}:dlq:meta"

    def deliveries(self, task_id: str) -> str:
        """HASH with a TTL: retry number -> times a worker began this task (poison check)."""
        return f"{self.ns}:deliveries:{task_id}"

    # -- downstream of a result: match and clean caches, quarantine, reports --------------
    def match_cache(self, hash_sha256: str) -> str:
        """STRING with a TTL: the match details of a hash that matched, by its SHA-256."""
        return f"{self.ns}:match-cache:{hash_sha256}"

    def clean_cache(self, hash_sha256: str) -> str:
        """STRING with a TTL: a hash the API found clean, by its SHA-256 (result cache)."""
        return f"{self.ns}:clean-cache:{hash_sha256}"

    def quarantine_done(self, identity: str) -> str:
        """STRING with a TTL: where a matched content version's evidence is (JSON)."""
        return f"{self.ns}:quarantine:{_digest(identity)}"

    def quarantine_lock(self, identity: str) -> str:
        """STRING with a TTL: one worker at a time quarantines a content version."""
        return f"{self.ns}:quarantine-lock:{_digest(identity)}"

    def report(self, report_id: str) -> str:
        """STRING with a TTL: the reports-bucket key of a report, by report id."""
        return f"{self.ns}:report:{report_id}"

    @property
    def allowlist(self) -> str:
        """HASH ``<kind>:<value>`` -> entry JSON: match ids and hashes a person cleared
        (no TTL: on-call's list; every change is also recorded in the object store)."""
        return f"{self.ns}:allowlist"

    def report_lock(self, report_id: str) -> str:
        """STRING with a TTL: one worker at a time writes or submits a report."""
        return f"{self.ns}:report-lock:{report_id}"

    def flood(self, match_id: str) -> str:
        """ZSET with a TTL: content objects (their location digest) a match id matched,
        scored by time; at most EDGEMATCH_FLOOD_MATCHES + 1 members, within the window."""
        return f"{self.ns}:flood:{short_digest(match_id)}"

    @property
    def flooded(self) -> str:
        """ZSET with a TTL: match id -> when it last flooded (s); capped, within the window."""
        return f"{self.ns}:flooded"

    # -- Celery queues ------------------------------------------------------------------
    def queue(self, step: str) -> str:
        """The Celery queue (and Redis list) of one step: ``<ns>.ingest`` …"""
        return queue_name(self.ns, step)

    # -- on-call: heartbeats, backfill checkpoints ------------------------------------------
    @property
    def heartbeat_prefix(self) -> str:
        return f"{self.ns}:heartbeat:"

    def heartbeat(self, host: str, pid: int) -> str:
        """STRING with a TTL: one live process (worker, intake, beat) and when it last beat."""
        return f"{self.heartbeat_prefix}{host}:{pid}"

    def backfill(self, bucket: str, prefix: str) -> str:
        """HASH: a backfill's checkpoint (last key fully enqueued, counters)."""
        return f"{self.ns}:backfill:{bucket}/{prefix}"


def _digest(identity: str) -> str:
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def short_digest(identity: str) -> str:
    """128 bits of the SHA-256 of ``identity``, URL-safe base64 (22 characters). Pure.

    Enough to tell apart every object ever scanned (a collision is expected after some
    10^19 of them), and a third the size of the hex digest.
    """
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def location_digest(bucket: str, key: str) -> str:
    """:func:`short_digest` of an object location (bucket and key). Pure."""
    return short_digest(bucket + "\0" + key)
