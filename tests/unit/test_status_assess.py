"""What `edgematch status` calls a problem, decided from a snapshot alone. Pure."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from edgematch.ops.problems import assess
from edgematch.ops.screen import render
from edgematch.ops.status import Snapshot

WORKERS = [
    {"role": "worker", "host": "h", "pid": 1, "queues": ["edgematch.ingest", "edgematch.match"],
     "age_s": 1.0},
    {"role": "intake", "host": "h", "pid": 2, "queues": [], "age_s": 2.0},
    {"role": "beat", "host": "h", "pid": 3, "queues": [], "age_s": 3.0},
]  # fmt: skip


def _dlq(**by_reason: int) -> dict[str, Any]:
    total = sum(by_reason.values())
    return {"total": total, "limit": 100, "by_reason": by_reason, "by_queue": {},
            "refused": 0, "full": total >= 100}  # fmt: skip


HEALTHY = Snapshot(
    queues={"ingest": 0, "background": 0, "match": 0, "results": 0},
    running=0,
    buffer_waiting=0,
    lanes={"live": {"waiting": 0.0, "oldest_age_s": 0.0}},
    oldest_waiting_s=0.0,
    in_flight=0,
    expired_leases=0,
    pumps=0,
    rate_used=0,
    rate_limit=5,
    rate_window_ms=1020,
    cooldown_s=0.0,
    breaker_open=False,
    breaker_probe_in_s=0.0,
    probe_in_flight=False,
    backlog=0,
    high_water=10_000,
    dead_letters=_dlq(),
    workers=WORKERS,
)


def _whats(snap: Snapshot) -> list[str]:
    return [p.what for p in assess(snap)]


def test_healthy_snapshot_has_no_problem() -> None:
    """Every process alive, nothing waiting, no dead letter: healthy."""
    assert assess(HEALTHY) == []
    assert render(HEALTHY, []).startswith("edgematch status: healthy")


@pytest.mark.parametrize("role", ["worker", "intake", "beat"])
def test_missing_process_is_named(role: str) -> None:
    """A process type without a live heartbeat is a problem naming that type."""
    snap = replace(HEALTHY, workers=[w for w in WORKERS if w["role"] != role])
    assert any(f"no {role} process" in what for what in _whats(snap))


def test_a_webhook_stands_in_for_intake() -> None:
    """A deployment fed by the webhook runs no intake: that is not a problem."""
    webhook = {**next(w for w in WORKERS if w["role"] == "intake"), "role": "webhook"}
    snap = replace(HEALTHY, workers=[*(w for w in WORKERS if w["role"] != "intake"), webhook])
    assert _whats(snap) == []


def test_queue_nobody_consumes() -> None:
    """Tasks in a queue no live worker consumes are a problem; an empty one is not."""
    snap = replace(HEALTHY, queues={**HEALTHY.queues, "results": 4, "background": 0})
    assert _whats(snap) == ["4 tasks wait in the results queue and no worker consumes it"]


def test_cooldown_only_when_long() -> None:
    """A short 429 cooldown is the limiter working; a long one needs attention."""
    assert _whats(replace(HEALTHY, cooldown_s=3.0)) == []
    (what,) = _whats(replace(HEALTHY, cooldown_s=45.0))
    assert "429" in what and "45 s" in what


def test_a_capped_cooldown_names_what_the_server_asked_and_the_probe() -> None:
    """A 429 that asked for an hour, capped at the ceiling: status says so, how long is
    left, and that one probe goes first; once the wait is over, that the probe is out."""
    capped = replace(HEALTHY, cooldown_s=42.0, cooldown_asked_s=3600.0)
    ((problem, runbook),) = [(p.what, p.runbook) for p in assess(capped)]
    assert "asking for 3600 s" in problem and "42 s" in problem and "probe" in problem
    assert runbook == "429-storm.md"
    assert "42.0 s left (the 429 asked for 3600 s; capped, then one probe request)" in render(
        capped, []
    )
    waiting = replace(capped, cooldown_s=0.0, probe_in_flight=True)
    (what,) = _whats(waiting)
    assert "asking for 3600 s" in what and "probe" in what
    assert "over (the 429 asked for 3600 s; capped): probe in flight" in render(waiting, [])


def test_breaker_open_points_at_the_key_runbook() -> None:
    """An open breaker names the key problem and its runbook."""
    (problem,) = assess(replace(HEALTHY, breaker_open=True, breaker_probe_in_s=12.0))
    assert problem.runbook == "api-key-rejected.md" and "12 s" in problem.what


def test_stuck_buffer_and_leases() -> None:
    """Expired leases or old waiting items with no pump are stuck; with a pump they are not."""
    stuck = replace(HEALTHY, expired_leases=2, buffer_waiting=7, oldest_waiting_s=90.0)
    whats = _whats(stuck)
    assert len(whats) == 2 and all("pump" in w for w in whats)
    assert _whats(replace(stuck, pumps=1)) == []
    assert _whats(replace(stuck, cooldown_s=5.0)) == []  # paused on purpose, not stuck
    assert _whats(replace(HEALTHY, buffer_waiting=7, oldest_waiting_s=1.0)) == []


def test_backlog_at_high_water() -> None:
    """A backlog at the mark says intake has stopped receiving."""
    (what,) = _whats(replace(HEALTHY, backlog=10_000))
    assert "high-water" in what


def test_per_item_verdicts_are_not_problems() -> None:
    """Dead letters of per-item verdicts are shown, not flagged; operational ones are flagged."""
    items = replace(HEALTHY, dead_letters=_dlq(item_rejected=3, malformed_event=1))
    assert _whats(items) == []
    ops = replace(HEALTHY, dead_letters=_dlq(poison=1, item_rejected=3))
    assert _whats(ops) == ["dead letters to look at: poison 1"]


def test_store_nearly_full_or_refusing() -> None:
    """A store at 90 % of its bound, or full and refusing, is a problem."""
    nearly = replace(HEALTHY, dead_letters=_dlq(item_rejected=95))
    assert _whats(nearly) == ["the dead-letter store is nearly full (95 of 100)"]
    full = replace(HEALTHY, dead_letters={**_dlq(item_rejected=100), "refused": 7})
    assert "refused 7" in _whats(full)[0]


def _log(staged: int, oldest_age_s: float, batches: int = 0) -> dict[str, float]:
    return {"staged": staged, "batches": batches, "oldest_age_s": oldest_age_s,
            "max_staged": 1000}  # fmt: skip


def test_the_verdict_log_behind_is_a_problem() -> None:
    """Results waiting a few flush intervals are normal; one waiting minutes (the store
    refuses writes), or a staging area near or at its bound, points at the runbook."""
    assert assess(replace(HEALTHY, verdict_log=_log(400, 25.0, 1))) == []
    late = assess(replace(HEALTHY, verdict_log=_log(400, 600.0, 1)))
    assert [p.runbook for p in late] == ["verdict-log-behind.md"]
    assert "oldest for 600 s" in late[0].what
    nearly = assess(replace(HEALTHY, verdict_log=_log(950, 5.0)))
    assert [p.runbook for p in nearly] == ["verdict-log-behind.md"]
    full = assess(replace(HEALTHY, verdict_log=_log(1000, 5.0)))
    assert "no result is recorded" in full[0].what
    text = render(replace(HEALTHY, verdict_log=_log(400, 25.0, 1)), [])
    assert "verdict log   400 results waiting (oldest 25 s), 1 batch(es) being written" in text


def test_a_flooded_match_id_is_named() -> None:
    """A match id the flood guard holds is a problem naming it and how to find its reports."""
    flooded = replace(
        HEALTHY,
        flooded=[{"match_id": "m-123", "at": 1.0}],
        flood_limit=50,
        flood_window_s=86400,
    )
    (problem,) = assess(flooded)
    assert "match id m-123 matched more than 50 distinct objects" in problem.what
    assert "review list --match-id m-123" in problem.what
