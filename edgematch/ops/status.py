"""``edgematch status``: one screen that says whether the pipeline is healthy and where not.

:func:`collect` reads everything from Redis (queue lengths, the buffer, the limiter's log,
cooldown, breaker, pumps, dead letters, heartbeats) into a :class:`Snapshot`;
:func:`assess` (pure) turns a snapshot into the problems on-call must act on, each naming
its runbook; :func:`render` prints both for people. Times come from Redis's clock.

What counts as a problem, and why:

* no live worker, intake (or webhook: either door will do) or beat process — each one's
  absence stops a part of the flow;
* a queue with tasks that no live worker consumes;
* the circuit breaker open (the API refused the key) or a 429 cooldown longer than
  ``COOLDOWN_ATTENTION_S`` (a short one is the limiter doing its job), or one capped at
  ``EDGEMATCH_MAX_COOLDOWN_S`` because the API asked for more (named with what it asked);
* batches whose lease ran out with no pump to reclaim them, or items waiting longer than
  ``STUCK_AFTER_S`` with no pump draining them — a stuck batch;
* the backlog at the high-water mark (intake has stopped receiving);
* dead letters of an operational reason (anything but the per-item verdicts in
  ``ITEM_REASONS``, which need no action), or a store at 90 % of its bound or refusing;
* the verdict log behind: a result recorded ``LOG_BEHIND_S`` ago still not written to the
  object store, or the staged results near ``EDGEMATCH_VERDICT_LOG_MAX_STAGED`` (at it,
  results are no longer recorded).

Raises :class:`TransientError` when Redis cannot be reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgematch.config.celery import celery_config
from edgematch.infra import heartbeat
from edgematch.names import QUEUE_STEPS
from edgematch.ops.backfill import Checkpoints
from edgematch.ops.timespec import format_moment
from edgematch.pipeline import backpressure
from edgematch.pipeline.buffer import capped_asked_s, limiter_window
from edgematch.runtime import Runtime

COOLDOWN_ATTENTION_S = 10.0
STUCK_AFTER_S = 30.0
DLQ_NEARLY_FULL = 0.9
#: Seconds a recorded result may wait for the verdict log: a few flush intervals, and a
#: batch whose write failed waiting out its lease to be written again.
LOG_BEHIND_S = 180.0
#: Per-item verdicts kept for inspection: the pipeline did its job, nothing to fix.
ITEM_REASONS = frozenset({"item_rejected", "bad_input", "object_missing", "malformed_event"})
PROCESS_ROLES = ("worker", "intake", "beat")
#: Roles that stand in for another: uploads come in through SQS (intake) or HTTP (webhook).
STANDS_IN = {"intake": ("webhook",)}
RUNBOOKS = "deploy/runbooks/"


@dataclass(frozen=True)
class Problem:
    """Something on-call must look at, and where the procedure is."""

    what: str
    runbook: str


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
    )


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


def assess(snap: Snapshot) -> list[Problem]:
    """The problems in ``snap``, most urgent first. Pure."""
    problems: list[Problem] = []
    roles = {w["role"] for w in snap.workers}
    for role in PROCESS_ROLES:
        if role not in roles and not roles & set(STANDS_IN.get(role, ())):
            problems.append(Problem(_MISSING[role], "stuck-batch.md"))
    consumed = {q for w in snap.workers if w["role"] == "worker" for q in w.get("queues") or ()}
    if "worker" in roles and consumed:
        for step, depth in snap.queues.items():
            if depth and not any(q == step or q.endswith(f".{step}") for q in consumed):
                problems.append(
                    Problem(f"{depth} tasks wait in the {step} queue and no worker consumes it",
                            "stuck-batch.md")
                )  # fmt: skip
    if snap.breaker_open:
        problems.append(
            Problem(
                "the API refused the subscription key: requests are paused "
                f"(next probe in {snap.breaker_probe_in_s:.0f} s)",
                "api-key-rejected.md",
            )
        )
    if snap.cooldown_asked_s:
        then = (
            f"no request for {snap.cooldown_s:.0f} s (EDGEMATCH_MAX_COOLDOWN_S), then one probe"
            if snap.cooldown_s
            else "its cooldown is over: one probe request first, the pool waits for its answer"
        )
        problems.append(
            Problem(
                f"the API answered 429 asking for {snap.cooldown_asked_s:.0f} s; capped: {then}",
                "429-storm.md",
            )
        )
    elif snap.cooldown_s > COOLDOWN_ATTENTION_S:
        problems.append(
            Problem(f"the API answered 429: no request for {snap.cooldown_s:.0f} s", "429-storm.md")
        )
    problems += _stuck(snap)
    if snap.backlog >= snap.high_water:
        problems.append(
            Problem(
                f"backlog {snap.backlog} at the high-water mark {snap.high_water}: "
                "intake has stopped receiving and the webhook answers 503",
                "stuck-batch.md",
            )
        )
    problems += _dead_letter_problems(snap.dead_letters)
    problems += _log_problems(snap.verdict_log)
    return problems


def _log_problems(vlog: dict[str, float]) -> list[Problem]:
    if not vlog:
        return []
    staged, limit = int(vlog["staged"]), int(vlog["max_staged"])
    if staged >= limit:
        return [
            Problem(
                f"the verdict log is {staged} results behind, at EDGEMATCH_VERDICT_LOG_MAX_STAGED: "
                "no result is recorded until it catches up (results retry in their queue)",
                "verdict-log-behind.md",
            )
        ]
    if vlog["oldest_age_s"] > LOG_BEHIND_S or staged >= DLQ_NEARLY_FULL * limit:
        return [
            Problem(
                f"the verdict log is behind: {staged} results wait to be written to the "
                f"object store, the oldest for {vlog['oldest_age_s']:.0f} s",
                "verdict-log-behind.md",
            )
        ]
    return []


_MISSING = {
    "worker": "no worker process is alive: nothing runs ingest, match or results",
    "intake": "no intake process (nor webhook) is alive: new uploads are not read from SQS "
    "nor received over HTTP",
    "beat": "no beat process is alive: nothing restarts the pumps that drain the buffer",
}


def _stuck(snap: Snapshot) -> list[Problem]:
    paused = snap.breaker_open or snap.cooldown_s > 0
    if snap.pumps or paused:
        return []
    found: list[Problem] = []
    if snap.expired_leases:
        found.append(
            Problem(
                f"{snap.expired_leases} batch(es) outlived their lease and no pump reclaims them",
                "stuck-batch.md",
            )
        )
    if snap.buffer_waiting and snap.oldest_waiting_s > STUCK_AFTER_S:
        found.append(
            Problem(
                f"{snap.buffer_waiting} hashes wait in the buffer, the oldest for "
                f"{snap.oldest_waiting_s:.0f} s, and no pump drains them",
                "stuck-batch.md",
            )
        )
    return found


def _dead_letter_problems(dlq: dict[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    total, limit = int(dlq["total"]), int(dlq["limit"])
    if dlq.get("refused") and dlq.get("full"):
        found.append(
            Problem(
                f"the dead-letter store is full ({total} of {limit}) and refused "
                f"{dlq['refused']} failures: they retry in their queues until entries go",
                "dead-letters-growing.md",
            )
        )
    elif total >= DLQ_NEARLY_FULL * limit:
        found.append(
            Problem(f"the dead-letter store is nearly full ({total} of {limit})",
                    "dead-letters-growing.md")
        )  # fmt: skip
    operational = {r: n for r, n in dlq["by_reason"].items() if r not in ITEM_REASONS}
    if operational:
        counts = ", ".join(f"{reason} {n}" for reason, n in operational.items())
        found.append(Problem(f"dead letters to look at: {counts}", "dead-letters-growing.md"))
    return found


def render(snap: Snapshot, problems: list[Problem]) -> str:
    """The status screen as text. Pure."""
    head = "healthy" if not problems else f"NEEDS ATTENTION ({len(problems)})"
    lines = [f"edgematch status: {head}"]
    lines += [f"  ! {p.what}  [{RUNBOOKS}{p.runbook}]" for p in problems]
    lines.append("")
    queues = "  ".join(f"{step} {n}" for step, n in snap.queues.items())
    lines.append(f"queues        {queues}  (running {snap.running})")
    lanes = ", ".join(f"{name} {int(lane['waiting'])}" for name, lane in snap.lanes.items())
    lines.append(
        f"buffer        {snap.buffer_waiting} waiting ({lanes}; oldest "
        f"{snap.oldest_waiting_s:.0f} s)  in flight {snap.in_flight} batch(es)"
        + (f", {snap.expired_leases} expired" if snap.expired_leases else "")
        + f"  pumps {snap.pumps}"
    )
    lines.append(f"backlog       {snap.backlog} (high-water mark {snap.high_water})")
    lines.append(
        f"rate limit    {snap.rate_used} of {snap.rate_limit} requests "
        f"in the last {snap.rate_window_ms} ms"
    )
    lines.append("cooldown      " + _cooldown_line(snap))
    if snap.breaker_open:
        probe = (
            "probe in flight"
            if snap.probe_in_flight
            else f"probe in {snap.breaker_probe_in_s:.0f} s"
        )
        lines.append(f"breaker       OPEN: key refused, {probe}")
    else:
        lines.append("breaker       closed")
    dlq = snap.dead_letters
    reasons = ", ".join(f"{r} {n}" for r, n in dlq["by_reason"].items()) or "none"
    lines.append(f"dead letters  {dlq['total']} of {dlq['limit']} ({reasons})")
    if snap.verdict_log:
        vlog = snap.verdict_log
        lines.append(
            f"verdict log   {int(vlog['staged'])} results waiting (oldest "
            f"{vlog['oldest_age_s']:.0f} s), {int(vlog['batches'])} batch(es) being written"
        )
    workers = ", ".join(
        f"{w['role']} {w['host']}:{w['pid']} ({w['age_s']:.0f} s)"
        if w.get("age_s") is not None
        else f"{w['role']} {w['host']}:{w['pid']}"
        for w in snap.workers
    )
    lines.append(f"processes     {workers or 'none alive'}")
    for cp in snap.backfills:
        total = "?" if cp["total"] is None else f"{cp['total']:,}"
        state = "finished" if cp["finished_at"] else "stopped or running"
        lines.append(
            f"backfill      s3://{cp['bucket']}/{cp['prefix']}: {cp['enqueued']:,}/{total} "
            f"enqueued, {state}, last saved {format_moment(cp['updated_at'])}"
        )
    return "\n".join(lines)


def _cooldown_line(snap: Snapshot) -> str:
    left = f"{snap.cooldown_s:.1f} s left" if snap.cooldown_s else ""
    if snap.cooldown_asked_s:
        asked = f"the 429 asked for {snap.cooldown_asked_s:.0f} s; capped"
        if left:
            return f"{left} ({asked}, then one probe request)"
        probe = "probe in flight" if snap.probe_in_flight else "probe next"
        return f"over ({asked}): {probe}, the pool resumes when it is answered"
    return f"{left} (429)" if left else "none"
