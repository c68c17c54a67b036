"""What a scrape of /metrics reads at that moment, and the server that answers it.

Levels that live in Redis — queue depths, the batch buffer per lane, batches in flight,
rate-limit use, cooldown and breaker, dead letters, the verdict log's backlog, the match
ids the flood guard holds — are read when Prometheus scrapes, by the one process that
serves them (the counters and histograms each process updates are declared in
:mod:`edgematch.infra.metrics`).
``edgematch_redis_up`` says whether those reads reached Redis: 0 only when Redis could not
be reached (the scrape still answers, without levels). A read that fails any other way is a
bug, never taken for Redis being down: it is logged (``metrics_collect_failed``, with the
traceback) and counted in ``edgematch_metrics_collect_errors_total{family}``, and the other
levels are still served.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from edgematch.errors import TransientError
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.metrics import LEVEL_FAMILIES, METRICS_COLLECT_ERRORS, PREFIX
from edgematch.names import QUEUE_STEPS

if TYPE_CHECKING:
    from edgematch.runtime import Runtime

log = get_logger(__name__)


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


def _flood(rt: Runtime) -> list[Metric]:
    # The flood guard's own set (downstream/flood.py), read here without it: infra sits
    # below downstream. Capped at MAX_FLOODED match ids, so the labels stay few.
    now = time.time()
    flooded = rt.redis.zrevrangebyscore(
        Keys(rt.settings.namespace).flooded, "+inf", now - rt.settings.flood_window_s
    )
    family = GaugeMetricFamily(
        f"{PREFIX}_flooded_match_id",
        "1 for each match id that matched more than EDGEMATCH_FLOOD_MATCHES distinct objects "
        "within EDGEMATCH_FLOOD_WINDOW_S: its further reports are held for review.",
        labels=["match_id"],
    )
    for raw in flooded:
        match_id = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        family.add_metric([match_id], 1)
    return [family]


#: One reader per entry of LEVEL_FAMILIES, in that order.
_READERS: tuple[Callable[[Runtime], list[Metric]], ...] = (
    _queue_depth,
    _buffer,
    _batches_in_flight,
    _rate_limit,
    _dead_letters,
    _verdict_log,
    _flood,
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
