"""``edgematch status``: the pipeline's state at one moment, read from Redis.

:func:`collect` reads everything from Redis (queue lengths, the buffer, the limiter's log,
cooldown, breaker, pumps, dead letters, heartbeats, the verdict log's backlog, the match
ids the flood guard holds) into a
:class:`Snapshot`; :mod:`edgematch.ops.problems` (pure) turns a snapshot into the problems
on-call must act on, and :mod:`edgematch.ops.screen` prints both for people. Times come
from Redis's clock.

Raises :class:`TransientError` when Redis cannot be reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgematch.config.celery import celery_config
from edgematch.downstream.flood import FloodGuard
from edgematch.infra import heartbeat
from edgematch.names import QUEUE_STEPS
from edgematch.ops.backfill import Checkpoints
from edgematch.pipeline import backpressure
from edgematch.pipeline.buffer import capped_asked_s, limiter_window
from edgematch.runtime import Runtime


@dataclass(frozen=True)
class Snapshot:
    """The pipeline's state at one moment. Counts are tasks or items; durations seconds."""

    queues: dict[str, int]
    running: int
    buffer_waiting: int
    lanes: dict[str, dict[str, float]]
    oldest_waiting_s: float
    in_flight: int
    expired_leases: int
    pumps: int
    rate_used: int
    rate_limit: int
    rate_window_ms: int
    cooldown_s: float
    breaker_open: bool
    breaker_probe_in_s: float
    probe_in_flight: bool
    backlog: int
    high_water: int
    dead_letters: dict[str, Any]
    workers: list[dict[str, Any]]
    counters: dict[str, int] = field(default_factory=dict)
    backfills: list[dict[str, Any]] = field(default_factory=list)
    #: What the last 429 asked for when the pool capped its cooldown (0: none capped); the
    #: pool then waits ``cooldown_s`` and sends one probe before it resumes.
    cooldown_asked_s: float = 0.0
    #: Results waiting for the verdict log: ``staged``, ``batches`` being written,
    #: ``oldest_age_s``, and ``max_staged`` (EDGEMATCH_VERDICT_LOG_MAX_STAGED).
    verdict_log: dict[str, float] = field(default_factory=dict)
    #: Match ids the flood guard holds (``match_id``, ``at``: when it last flooded), the
    #: latest first, and the limit and window they went past.
    flooded: list[dict[str, Any]] = field(default_factory=list)
    flood_limit: int = 0
    flood_window_s: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect(rt: Runtime) -> Snapshot:
    """Read the pipeline's state. Raises TransientError when Redis cannot be reached."""
    return _collect(rt)


def _collect(rt: Runtime) -> Snapshot:
    s, k, r = rt.settings, rt.buffer.keys, rt.redis
    per_window, window_ms = limiter_window(s.rate_limit_per_s, s.rate_limit_margin)
    sec, usec = r.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    pipe = r.pipeline()
    for step in QUEUE_STEPS:
        pipe.llen(k.queue(step))
    # Tasks delivered and not yet acknowledged: with late acks and prefetch 1, the running ones.
    pipe.hlen(celery_config(s)["broker_transport_options"]["unacked_key"])
    pipe.zcard(k.leases)
    pipe.zcount(k.leases, "-inf", now_ms)
    pipe.zcount(k.pumps, now_ms, "+inf")
    pipe.zcount(k.rate_log, now_ms - window_ms + 1, "+inf")
    pipe.get(k.cooldown)
    pipe.get(k.breaker)
    pipe.exists(k.breaker_probe)
    pipe.get(k.cooldown_capped)
    replies = pipe.execute()
    queues = {step: int(n) for step, n in zip(QUEUE_STEPS, replies, strict=False)}
    running, leases, expired, pumps, used, cooldown, breaker, probe, capped = replies[
        len(QUEUE_STEPS) :
    ]
    lanes = _lanes(rt)
    waiting = sum(int(lane["waiting"]) for lane in lanes.values())
    dlq = rt.dead_letters.stats()
    workers = [asdict(beat) for beat in heartbeat.alive(r, s.namespace)]
    return Snapshot(
        queues=queues,
        running=int(running),
        buffer_waiting=waiting,
        lanes=lanes,
        oldest_waiting_s=max((lane["oldest_age_s"] for lane in lanes.values()), default=0.0),
        in_flight=int(leases),
        expired_leases=int(expired),
        pumps=int(pumps),
        rate_used=int(used),
        rate_limit=per_window,
        rate_window_ms=window_ms,
        cooldown_s=max(0.0, (int(cooldown) - now_ms) / 1000) if cooldown else 0.0,
        breaker_open=breaker is not None,
        breaker_probe_in_s=max(0.0, (int(breaker) - now_ms) / 1000) if breaker else 0.0,
        probe_in_flight=bool(probe),
        backlog=backpressure.backlog(rt).of("live"),
        high_water=s.intake_high_water,
        dead_letters=dlq.to_dict(),
        workers=workers,
        counters=rt.buffer.stats(),
        backfills=[asdict(cp) for cp in Checkpoints(r, s.namespace).all()],
        cooldown_asked_s=capped_asked_s(capped),
        verdict_log=_verdict_log(rt),
        flooded=[asdict(f) for f in _flood_guard(rt).flooded(now=now_ms / 1000)],
        flood_limit=s.flood_matches,
        flood_window_s=s.flood_window_s,
    )


def _flood_guard(rt: Runtime) -> FloodGuard:
    s = rt.settings
    return FloodGuard(rt.redis, s.namespace, limit=s.flood_matches, window_s=s.flood_window_s)


def _verdict_log(rt: Runtime) -> dict[str, float]:
    backlog = rt.verdict_log.backlog()
    return {
        "staged": backlog.staged,
        "batches": backlog.batches,
        "oldest_age_s": round(backlog.oldest_age_s, 1),
        "max_staged": rt.settings.verdict_log_max_staged,
    }


def _lanes(rt: Runtime) -> dict[str, dict[str, float]]:
    return {
        name: {"waiting": float(state.waiting), "oldest_age_s": round(state.oldest_age_s, 3)}
        for name, state in rt.buffer.lanes().items()
    }
