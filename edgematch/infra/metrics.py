"""Prometheus metrics: what each process counts, and what is read from Redis at scrape time.

Counters and histograms are updated where things happen. Under Celery's prefork pool the
worker's children write them to ``PROMETHEUS_MULTIPROC_DIR`` and the parent serves the sum,
so the figures are right however many processes run (``edgematch worker`` sets the
directory up before anything imports prometheus_client). Levels that live in Redis — queue
depths, the batch buffer per lane, batches in flight, rate-limit use, cooldown and breaker,
dead letters — are read when Prometheus scrapes, by the one process that serves them.
``edgematch_redis_up`` says whether those reads reached Redis: 0 only when Redis could not
be reached (the scrape still answers, without levels). A read that fails any other way is a
bug, never taken for Redis being down: it is logged (``metrics_collect_failed``, with the
traceback) and counted in ``edgematch_metrics_collect_errors_total{family}``, and the other
levels are still served.

Names follow Prometheus conventions (``_total``, ``_seconds``, base units) and every label
has a small, fixed set of values: never a key, a bucket or an object name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from edgematch.errors import TransientError
from edgematch.infra.logs import get_logger
from edgematch.names import QUEUE_STEPS

if TYPE_CHECKING:
    from edgematch.runtime import Runtime

log = get_logger(__name__)

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
    "Hash files that got a verdict, by verdict (clean, match, unscannable) and lane.",
    ["verdict", "lane"],
)
MATCHES = Counter(f"{PREFIX}_matches_total", "Hash files that matched known material.")
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
    "Report outcomes (pending, submitted, shadow, failed, dead_lettered).",
    ["outcome"],
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
        API_REQUESTS,
        API_LATENCY,
        RATE_LIMITED,
        RETRIES,
        LIMITER_WAIT,
        BATCH_SIZE,
        END_TO_END,
        QUARANTINE,
        REPORTS,
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
}


class RedisLevels(Collector):
    """Reads the pipeline's levels from Redis when Prometheus scrapes.

    Every family is read first, then exported with ``edgematch_redis_up`` 1; when Redis
    cannot be reached (a Redis boundary's TransientError) only ``edgematch_redis_up`` 0 is.
    Any other failure of one family is a bug: logged with its traceback, counted, and that
    family left out — the others are still exported, and ``redis_up`` stays what Redis says.
    """

    def __init__(self, runtime_factory: Callable[[], Runtime]) -> None:
        self._runtime = runtime_factory

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime()
        families: list[Metric] = []
        up = GaugeMetricFamily(f"{PREFIX}_redis_up", "Whether Redis answered the scrape.")
        for family, read in zip(LEVEL_FAMILIES, _READERS, strict=True):
            try:
                families.extend(read(rt))
            except TransientError as exc:
                log.warning("metrics_redis_unavailable", family=family, error=str(exc))
                up.add_metric([], 0)
                yield up
                return
            except Exception:
                # A bug in one family: seen and counted, never taken for Redis being down.
                log.exception("metrics_collect_failed", family=family)
                METRICS_COLLECT_ERRORS.labels(family).inc()
        up.add_metric([], 1)
        yield up
        yield from families


def _queue_depth(rt: Runtime) -> list[Metric]:
    keys = rt.buffer.keys
    pipe = rt.redis.pipeline()  # RedisUnavailable, a TransientError, when Redis is away
    for step in QUEUE_STEPS:
        pipe.llen(keys.queue(step))
    depths = pipe.execute()
    queues = GaugeMetricFamily(
        f"{PREFIX}_queue_depth", "Tasks waiting in each step's queue.", labels=["queue"]
    )
    for step, depth in zip(QUEUE_STEPS, depths, strict=True):
        queues.add_metric([step], int(depth))
    return [queues]


def _buffer(rt: Runtime) -> list[Metric]:
    items = GaugeMetricFamily(
        f"{PREFIX}_buffer_items", "Hashes waiting in the batch buffer.", labels=["lane"]
    )
    oldest = GaugeMetricFamily(
        f"{PREFIX}_buffer_oldest_age_seconds",
        "Age of the oldest hash waiting in each lane.",
        labels=["lane"],
    )
    for lane, state in rt.buffer.lanes().items():
        items.add_metric([lane], state.waiting)
        oldest.add_metric([lane], state.oldest_age_s)
    return [items, oldest]


def _level(name: str, documentation: str, value: float) -> Metric:
    """A gauge family ``edgematch_<name>`` of one unlabelled sample."""
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _batches_in_flight(rt: Runtime) -> list[Metric]:
    return [_level("batches_in_flight", "Batches leased to a worker.", rt.buffer.in_flight())]


def _rate_limit(rt: Runtime) -> list[Metric]:
    window = rt.buffer.window_use()
    return [
        _level(
            "rate_limit_requests_in_window",
            "Requests the pool sent in the current rate-limit window.",
            window.used,
        ),
        _level(
            "rate_limit_capacity", "Requests the rate limit allows per window.", window.capacity
        ),
        _level("cooldown_seconds", "Seconds the pool still waits after a 429.", window.cooldown_s),
        _level(
            "cooldown_capped",
            "1 while a 429 asked for more than EDGEMATCH_MAX_COOLDOWN_S: the pool waits the "
            "ceiling, then one probe request, until one is accepted.",
            1.0 if window.cooldown_asked_s else 0.0,
        ),
        _level(
            "cooldown_asked_seconds",
            "What the 429 behind a capped cooldown asked for (Retry-After); 0 when none is.",
            window.cooldown_asked_s,
        ),
        _level(
            "breaker_open",
            "1 while the API refuses the subscription key.",
            1.0 if window.breaker_open else 0.0,
        ),
    ]


def _dead_letters(rt: Runtime) -> list[Metric]:
    letters = GaugeMetricFamily(
        f"{PREFIX}_dead_letters", "Entries in the dead-letter store.", labels=["reason"]
    )
    for reason, count in rt.dead_letters.stats().by_reason.items():
        letters.add_metric([reason], count)
    return [letters]


def _verdict_log(rt: Runtime) -> list[Metric]:
    backlog = rt.verdict_log.backlog()
    staged = GaugeMetricFamily(
        f"{PREFIX}_verdict_log_staged",
        "Results recorded and waiting to be taken for the verdict log (besides the batches "
        "being written).",
    )
    staged.add_metric([], backlog.staged)
    oldest = GaugeMetricFamily(
        f"{PREFIX}_verdict_log_oldest_age_seconds",
        "Age of the oldest result waiting for the verdict log; 0 when none waits.",
    )
    oldest.add_metric([], backlog.oldest_age_s)
    return [staged, oldest]


#: One reader per entry of LEVEL_FAMILIES, in that order.
_READERS: tuple[Callable[[Runtime], list[Metric]], ...] = (
    _queue_depth,
    _buffer,
    _batches_in_flight,
    _rate_limit,
    _dead_letters,
    _verdict_log,
)


def serve(
    port: int,
    *,
    runtime_factory: Callable[[], Runtime],
    addr: str = "0.0.0.0",  # noqa: S104 - a pod's metrics port, scraped from outside
) -> None:
    """Serve /metrics on ``port``: this process's (or the pool's) metrics and Redis levels."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    registry.register(RedisLevels(runtime_factory))
    start_http_server(port, addr=addr, registry=registry)
