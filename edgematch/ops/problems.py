"""What ``edgematch status`` calls a problem: each one on-call must act on, with its runbook.

:func:`assess` (pure) turns a :class:`~edgematch.ops.status.Snapshot` into problems, most
urgent first. What counts as a problem, and why:

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
  results are no longer recorded);
* a flooded match id: one that matched more than ``EDGEMATCH_FLOOD_MATCHES`` distinct
  objects within ``EDGEMATCH_FLOOD_WINDOW_S`` — a list entry that may match innocent
  content; its reports are held for review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgematch.ops.status import Snapshot

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


@dataclass(frozen=True)
class Problem:
    """Something on-call must look at, and where the procedure is."""

    what: str
    runbook: str


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
    problems += _flood_problems(snap)
    return problems


def _flood_problems(snap: Snapshot) -> list[Problem]:
    return [
        Problem(
            f"match id {f['match_id']} matched more than {snap.flood_limit} distinct objects "
            f"within {snap.flood_window_s} s (flood guard): its matches are quarantined and "
            "their reports held for review (edgematch review list --match-id "
            f"{f['match_id']})",
            "false-positive.md",
        )
        for f in snap.flooded
    ]


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
