"""The ``edgematch status`` screen: a snapshot and its problems as text for people. Pure."""

from __future__ import annotations

from edgematch.ops.problems import Problem
from edgematch.ops.status import Snapshot
from edgematch.ops.timespec import format_moment

RUNBOOKS = "deploy/runbooks/"


def render(snap: Snapshot, problems: list[Problem]) -> str:
    """The status screen as text. Pure."""
    head = "healthy" if not problems else f"NEEDS ATTENTION ({len(problems)})"
    lines = [f"edgematch status: {head}"]
    lines += [f"  ! {p.what}  [{RUNBOOKS}{p.runbook}]" for p in problems]
    lines.append("")
    queues = "  ".join(f"{step} {n}" for step, n in snap.queues.items())
    running = snap.running if snap.running >= 0 else "n/a on RabbitMQ"
    lines.append(f"queues        {queues}  (running {running})")
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
