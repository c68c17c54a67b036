"""Prometheus metrics: what each process counts, declared once with its name and help.

Counters and histograms are updated where things happen. Under Celery's prefork pool the
worker's children write them to ``PROMETHEUS_MULTIPROC_DIR`` and the parent serves the sum,
so the figures are right however many processes run (``edgematch worker`` sets the
directory up before anything imports prometheus_client). Levels that live in Redis — queue
depths, the batch buffer per lane, batches in flight, rate-limit use, cooldown and breaker,
dead letters — are read when Prometheus scrapes (:mod:`edgematch.infra.scrape`, which also
serves ``/metrics``); their families and names are declared here with the rest.

Names follow Prometheus conventions (``_total``, ``_seconds``, base units) and every label
has a small, fixed set of values: never a key, a bucket or an object name.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PREFIX = "edgematch"

#: Seconds: API calls and Redis waits are fast; end-to-end spans linger, retries, backoff.
_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

EVENTS_RECEIVED = Counter(
    f"{PREFIX}_events_received_total",
    "SQS messages received by intake.",
)
EVENTS_SKIPPED = Counter(
    f"{PREFIX}_events_skipped_total",
    "Event records not scanned, by reason (test_event, suffix, not_object_created, …).",
    ["reason"],
)
WEBHOOK_REQUESTS = Counter(
    f"{PREFIX}_webhook_requests_total",
    "Requests to edgematch webhook, by HTTP status of the answer (200, 400, 401, 404, 405, 413, "
    "503 …).",
    ["code"],
)
WEBHOOK_LATENCY = Histogram(
    f"{PREFIX}_webhook_request_duration_seconds",
    "From a notification's arrival at edgematch webhook to its answer.",
    buckets=_FAST,
)
OBJECTS_ENQUEUED = Counter(
    f"{PREFIX}_objects_enqueued_total",
    "Hash files handed to ingest, by lane.",
    ["lane"],
)
INGESTED = Counter(
    f"{PREFIX}_ingest_total",
    "Ingest outcomes: added, duplicate, refused, cached (answered from the match cache), "
    "cached_clean (from the result cache for clean verdicts).",
    ["outcome"],
)
HASHES_SCANNED = Counter(
    f"{PREFIX}_hashes_scanned_total",
    "Hash files that got a verdict, by verdict (clean, allowlisted, match, unscannable) and lane.",
    ["verdict", "lane"],
)
MATCHES = Counter(f"{PREFIX}_matches_total", "Hash files that matched known material.")
ALLOWLISTED = Counter(
    f"{PREFIX}_allowlisted_total",
    "Matches recorded allowlisted: every match id (or the hash) on the allowlist; neither "
    "quarantined nor reported.",
)
API_REQUESTS = Counter(
    f"{PREFIX}_api_requests_total",
    "Requests to PhotoDNA by outcome (ok, rate_limited, credentials, server_error, "
    "transport, rejected) and HTTP status code.",
    ["outcome", "code"],
)
API_LATENCY = Histogram(
    f"{PREFIX}_api_request_duration_seconds",
    "Time from sending a request to PhotoDNA to its answer.",
    buckets=_FAST,
)
RATE_LIMITED = Counter(f"{PREFIX}_api_rate_limited_total", "Requests answered 429.")
TASKS_RECOVERED = Counter(
    f"{PREFIX}_tasks_recovered_total",
    "Tasks published again by the journal's sweep: lost with a killed worker.",
)
RETRIES = Counter(
    f"{PREFIX}_retries_total",
    "Items sent again, by reason (server_error, transport, item_transient, …).",
    ["reason"],
)
LIMITER_WAIT = Histogram(
    f"{PREFIX}_rate_limiter_wait_seconds",
    "How long a pump waited for the next request slot (rate, linger, cooldown).",
    ["reason"],
    buckets=_FAST,
)
BATCH_SIZE = Histogram(
    f"{PREFIX}_batch_size",
    "Hashes per request to PhotoDNA.",
    buckets=(1, 2, 3, 4, 5),
)
END_TO_END = Histogram(
    f"{PREFIX}_end_to_end_seconds",
    "From the upload event to the recorded result, by lane.",
    ["lane"],
    buckets=_SLOW,
)
QUARANTINE = Counter(
    f"{PREFIX}_quarantine_total",
    "Quarantine outcomes (moved, tagged, shadow, content_missing, dead_lettered).",
    ["outcome"],
)
REPORTS = Counter(
    f"{PREFIX}_reports_total",
    "Report outcomes (pending, pending_review, confirmed, submitted, shadow, failed, "
    "dead_lettered).",
    ["outcome"],
)
FLOOD_HELD = Counter(
    f"{PREFIX}_flood_held_total",
    "New reports held for review by the flood guard: a match id matched more than "
    "EDGEMATCH_FLOOD_MATCHES distinct objects within EDGEMATCH_FLOOD_WINDOW_S.",
)
DEAD_LETTERED = Counter(
    f"{PREFIX}_dead_lettered_total",
    "Entries added to the dead-letter store, by reason.",
    ["reason"],
)
VERDICT_LOG_WRITES = Counter(
    f"{PREFIX}_verdict_log_writes_total",
    "Objects written to the verdict log (written), and writes the store refused (failed).",
    ["outcome"],
)
VERDICT_LOG_LINES = Counter(
    f"{PREFIX}_verdict_log_results_total",
    "Results written to the verdict log.",
)

#: What the scrape-time reads are called in logs and in METRICS_COLLECT_ERRORS' label.
LEVEL_FAMILIES = (
    "queue_depth",
    "buffer",
    "batches_in_flight",
    "rate_limit",
    "dead_letters",
    "verdict_log",
    "flood",
)
METRICS_COLLECT_ERRORS = Counter(
    f"{PREFIX}_metrics_collect_errors_total",
    "Scrape-time reads of levels that failed for a reason other than Redis being unreachable "
    "(a bug; logged as metrics_collect_failed), by family.",
    ["family"],
)
for _family in LEVEL_FAMILIES:
    # Exported at 0 from the start, so an alert on it can tell "none" from "not scraped".
    METRICS_COLLECT_ERRORS.labels(_family)

#: Every metric name the code defines, for the tests that check dashboards and scalers.
NAMES = frozenset(
    m._name  # prometheus_client keeps the base name there
    for m in (
        EVENTS_RECEIVED,
        EVENTS_SKIPPED,
        WEBHOOK_REQUESTS,
        WEBHOOK_LATENCY,
        OBJECTS_ENQUEUED,
        INGESTED,
        HASHES_SCANNED,
        MATCHES,
        ALLOWLISTED,
        API_REQUESTS,
        API_LATENCY,
        RATE_LIMITED,
        RETRIES,
        LIMITER_WAIT,
        BATCH_SIZE,
        END_TO_END,
        QUARANTINE,
        REPORTS,
        FLOOD_HELD,
        DEAD_LETTERED,
        TASKS_RECOVERED,
        VERDICT_LOG_WRITES,
        VERDICT_LOG_LINES,
        METRICS_COLLECT_ERRORS,
    )
) | {
    f"{PREFIX}_queue_depth",
    f"{PREFIX}_buffer_items",
    f"{PREFIX}_buffer_oldest_age_seconds",
    f"{PREFIX}_batches_in_flight",
    f"{PREFIX}_rate_limit_requests_in_window",
    f"{PREFIX}_rate_limit_capacity",
    f"{PREFIX}_cooldown_seconds",
    f"{PREFIX}_cooldown_capped",
    f"{PREFIX}_cooldown_asked_seconds",
    f"{PREFIX}_breaker_open",
    f"{PREFIX}_dead_letters",
    f"{PREFIX}_verdict_log_staged",
    f"{PREFIX}_verdict_log_oldest_age_seconds",
    f"{PREFIX}_redis_up",
    f"{PREFIX}_flooded_match_id",
}
