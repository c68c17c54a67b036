"""Backpressure decisions and the producers' gate, without Redis."""

from __future__ import annotations

import threading

import pytest

from edgematch.pipeline.backpressure import Backlog, Gate, high_water_for
from edgematch.pipeline.intake import UNWEIGHED_RECEIVES, Room


def test_live_counts_what_competes_with_live_uploads() -> None:
    """Live intake weighs its queue and the buffer; background producers weigh everything.
    A live ingest task counts as the ten hash files it may carry, a background one as one."""
    backlog = Backlog(ingest=3, background=50, buffered=7)
    assert backlog.of("live") == 3 * 10 + 7
    assert backlog.of("backfill") == backlog.of("replay") == backlog.total == 30 + 50 + 7


@pytest.mark.parametrize(
    ("lane", "high_water", "mark"),
    [("live", 10_000, 10_000), ("backfill", 10_000, 8_000), ("replay", 10, 8), ("backfill", 1, 1)],
)
def test_background_leaves_room_for_live(lane: str, high_water: int, mark: int) -> None:
    """Background lanes stop at 80 % of the mark (never below 1); live at the mark itself."""
    assert high_water_for(lane, high_water) == mark


class FakeBacklog:
    """Backlogs to return in turn; counts the reads."""

    def __init__(self, *totals: int) -> None:
        self.totals = list(totals)
        self.reads = 0

    def __call__(self) -> Backlog:
        self.reads += 1
        total = self.totals.pop(0) if len(self.totals) > 1 else self.totals[0]
        return Backlog(ingest=0, background=total, buffered=0)


def test_gate_pauses_until_there_is_room() -> None:
    """At the mark the gate sleeps and reports the pause; it returns once the backlog drops."""
    read = FakeBacklog(8, 9, 3)
    slept: list[float] = []
    paused: list[tuple[int, int]] = []
    gate = Gate(
        read,
        lane="backfill",
        high_water=10,
        sleep=slept.append,
        on_pause=lambda b, mark: paused.append((b.total, mark)),
    )
    gate.wait()
    assert read.reads == 3
    assert len(slept) == 2
    assert paused == [(8, 8), (9, 8)]


def test_gate_reads_once_per_room_seen() -> None:
    """With room for many, the gate reads the backlog once per check_every waits, not per wait."""
    read = FakeBacklog(0)
    gate = Gate(read, lane="backfill", high_water=10_000, check_every=25, sleep=lambda s: None)
    for _ in range(100):
        gate.wait()
    assert read.reads == 4


def test_gate_rechecks_as_room_runs_out() -> None:
    """Near the mark the gate never lets more through than the room it saw."""
    read = FakeBacklog(5, 8)
    slept: list[float] = []
    gate = Gate(read, lane="backfill", high_water=10, check_every=100, sleep=slept.append)
    for _ in range(3):  # room for 3 (mark 8, backlog 5)
        gate.wait()
    assert read.reads == 1 and not slept
    stop = threading.Event()
    gate2 = Gate(read, lane="backfill", high_water=10, stop=stop, sleep=lambda s: stop.set())
    gate2.wait()  # the backlog is at the mark: it pauses until stopped
    assert stop.is_set()


def test_intake_weighs_the_backlog_again_before_its_room_may_run_out() -> None:
    """Live intake skips weighing the backlog only while it was at half the mark or under,
    for a few receives, and only while what it enqueued since (ten a task, as the backlog
    counts a live ingest task) cannot have used up the room it saw."""
    room = Room(100)
    assert not room.known()  # never weighed: weigh
    room.weighed(50)
    assert room.known()  # room 50
    room.spent(25)  # three tasks: 30
    assert room.known()  # room 20
    room.spent(20)  # two tasks: 20
    assert not room.known()  # room 0: weigh again
    room.weighed(51)  # over half the mark: weigh before every receive
    assert not room.known()
    room.weighed(0)
    seen = 0
    while room.known():
        seen += 1
        room.spent(1)
    assert seen == UNWEIGHED_RECEIVES  # at most that many receives without a weight
