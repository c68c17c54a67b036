"""Backfill decisions without S3 or Redis: which keys, checkpoints, resume, constant memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from edgematch.ops.backfill import (
    Backfill,
    Checkpoint,
    Checkpoints,
    Pages,
    count_wanted,
    event_for,
    resume_problem,
    wanted,
)
from edgematch.ops.listing import Listed
from edgematch.pipeline.events import ObjectCreated
from tests.support.hashes import HASH

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _obj(key: str, when: datetime = T0) -> Listed:
    return Listed(key=key, etag="e-" + key, size=HASH, last_modified=when)


class MemoryCheckpoints(Checkpoints):
    """Keeps the last saved checkpoint in memory and counts saves."""

    def __init__(self) -> None:
        self.saved: Checkpoint | None = None
        self.saves = 0

    def save(self, cp: Checkpoint) -> None:
        self.saved = replace(cp)
        self.saves += 1


def _pages(keys: list[str], size: int) -> Pages:
    def pages(after: str | None) -> Iterator[list[Listed]]:
        rest = [k for k in keys if after is None or k > after]
        for start in range(0, len(rest), size):
            yield [_obj(k) for k in rest[start : start + size]]

    return pages


@pytest.mark.parametrize(
    ("key", "when", "since", "expected"),
    [
        ("a.jpg.bin", T0, None, True),
        ("a.jpg", T0, None, False),
        ("a/../b.bin", T0, None, False),
        ("a.bin", T0, T0.timestamp(), True),
        ("a.bin", T0, T0.timestamp() + 1, False),
    ],
)
def test_wanted(key: str, when: datetime, since: float | None, expected: bool) -> None:
    """Only hash files (suffix, a sane key) modified at or after --since are wanted."""
    assert wanted(_obj(key, when), suffix=".bin", since=since) is expected


def test_checkpoint_round_trips_through_redis_fields() -> None:
    """Every field survives the text form Redis stores, None and booleans included."""
    cp = Checkpoint(
        bucket="b", prefix="p/", since=1.5, rescan=True, after="p/k.bin", listed=7,
        enqueued=5, skipped=2, total=10, started_at=3.25, updated_at=4.5,
    )  # fmt: skip
    fields = {k.encode(): v.encode() for k, v in cp.to_fields().items()}
    assert Checkpoint.from_fields(fields) == cp
    empty = Checkpoint(bucket="b", prefix="")
    assert Checkpoint.from_fields(empty.to_fields()) == empty


def test_resume_needs_the_same_options() -> None:
    """A checkpoint resumes only with the --since and --rescan it was started with."""
    cp = Checkpoint(bucket="b", prefix="p", since=None, rescan=False, after="p/x.bin")
    assert resume_problem(cp, since=None, rescan=False) is None
    problem = resume_problem(cp, since=5.0, rescan=False)
    assert problem is not None and "--restart" in problem and "p/x.bin" in problem
    assert resume_problem(cp, since=None, rescan=True) is not None


def test_event_is_shaped_like_intake_events() -> None:
    """A listed object becomes the ingest event intake would have built, source backfill."""
    event = event_for("b", _obj("p/a.bin"), version_id="v9")
    assert event == ObjectCreated(
        bucket="b", key="p/a.bin", version_id="v9", etag="e-p/a.bin", size=HASH,
        event_time=T0.isoformat(), event_name="ObjectCreated:Backfill", sequencer=None,
        source="backfill",
    )  # fmt: skip


def test_interrupted_run_resumes_after_the_last_enqueued_key() -> None:
    """Stopped mid-page by a failing enqueue, a second run enqueues each remaining key once."""
    keys = sorted([f"p/{n:03d}.bin" for n in range(23)] + [f"p/{n:03d}.jpg" for n in range(5)])
    store = MemoryCheckpoints()
    enqueued: list[str] = []

    def flaky(event: ObjectCreated, corr: str) -> None:
        if len(enqueued) == 9:
            raise RuntimeError("killed")
        enqueued.append(event.key)

    cp = Checkpoint(bucket="b", prefix="p/")
    with pytest.raises(RuntimeError):
        Backfill(cp, checkpoints=store, pages=_pages(keys, 4), enqueue=flaky, suffix=".bin").run()
    assert store.saved is not None
    assert store.saved.after == enqueued[-1] and store.saved.enqueued == 9

    resumed = replace(store.saved)

    def ok(event: ObjectCreated, corr: str) -> None:
        enqueued.append(event.key)

    done = Backfill(resumed, checkpoints=store, pages=_pages(keys, 4), enqueue=ok, suffix=".bin")
    final = done.run()
    assert sorted(enqueued) == [k for k in keys if k.endswith(".bin")]
    assert len(enqueued) == len(set(enqueued)) == 23
    assert final.finished_at is not None and final.enqueued == 23


def test_max_pages_stops_between_pages() -> None:
    """max_pages ends a run at a page boundary with the checkpoint at that page's last key."""
    keys = [f"k{n:02d}.bin" for n in range(10)]
    store = MemoryCheckpoints()
    cp = Checkpoint(bucket="b", prefix="")
    run = Backfill(cp, checkpoints=store, pages=_pages(keys, 3), enqueue=lambda e, c: None,
                   suffix=".bin")  # fmt: skip
    out = run.run(max_pages=2)
    assert (out.after, out.enqueued, out.finished_at) == ("k05.bin", 6, None)


def test_count_wanted() -> None:
    """The counting pass counts hash files of the period only."""
    pages = [[_obj("a.bin"), _obj("a.jpg")], [_obj("b.bin", datetime(2020, 1, 1, tzinfo=UTC))]]
    assert count_wanted(pages, suffix=".bin", since=None) == 2
    assert count_wanted(pages, suffix=".bin", since=T0.timestamp()) == 1


def _peak_bytes(count: int) -> int:
    def pages(after: str | None) -> Iterator[list[Listed]]:
        for start in range(0, count, 1000):
            yield [_obj(f"p/{n:09d}.bin") for n in range(start, min(count, start + 1000))]

    store = MemoryCheckpoints()
    cp = Checkpoint(bucket="b", prefix="p/")
    tracemalloc.start()
    try:
        Backfill(cp, checkpoints=store, pages=pages, enqueue=lambda e, c: None,
                 suffix=".bin").run()  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.saved is not None and store.saved.enqueued == count
    return peak


def test_memory_does_not_grow_with_the_listing() -> None:
    """A listing ten times longer needs no more memory: pages are streamed, never held."""
    small, large = _peak_bytes(5_000), _peak_bytes(50_000)
    assert large < small * 1.5 + 100_000
