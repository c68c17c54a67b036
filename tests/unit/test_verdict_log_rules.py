"""The verdict log's pure parts: names and partitions, batches, counting, lateness."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.infra.keys import Keys, location_digest, short_digest
from edgematch.ops.tally import Tally, render
from edgematch.pipeline.logpaths import (
    PREFIX,
    hour_of,
    hours,
    name_at,
    object_key,
    partition,
    scanned_hour,
)
from edgematch.pipeline.recording import is_late
from edgematch.pipeline.results import Result
from edgematch.pipeline.verdictlog import Batch

T = datetime(2026, 11, 22, 14, 5, 12, 345_000, tzinfo=UTC).timestamp()


def test_partitions_are_hive_style_utc_hours() -> None:
    """``date=YYYY-MM-DD/hour=HH/`` of the UTC hour, whatever the local zone."""
    assert partition(hour_of(T)) == "date=2026-11-22/hour=14/"
    assert partition(hour_of(T - 14 * 3600 - 312.345 - 1)) == "date=2026-11-21/hour=23/"


def test_an_object_is_named_by_its_batch_and_the_time_it_was_taken() -> None:
    """Under its lines' partition, the taking time to the millisecond, then the batch id."""
    key = object_key(PREFIX, hour_of(T - 7200), int(T * 1000), "b1")
    assert key == "verdicts/date=2026-11-22/hour=12/20261122T140512345Z-b1.jsonl.gz"
    # A name made at or before the taking time sorts before it (a search's start).
    assert name_at(PREFIX, hour_of(T - 7200), T) < key
    assert name_at(PREFIX, hour_of(T - 7200), T + 1) > key


@given(st.floats(min_value=1e9, max_value=4e9), st.floats(min_value=0, max_value=30 * 86_400))
def test_hours_cover_a_range_once_each(since: float, span: float) -> None:
    """Every hour from the first to the last, in order, each once."""
    found = hours(since, since + span)
    assert found[0] == hour_of(since) and found[-1] == hour_of(since + span)
    assert all((b - a).total_seconds() == 3600 for a, b in itertools.pairwise(found))


def test_a_batch_groups_its_lines_by_scan_hour_in_order() -> None:
    """A batch as the take script stores it (taken ms, then lines) parses back; its lines go
    to the hour their hash was scanned, a line that does not say to the taking hour."""
    lines = [
        json.dumps({"item_id": "a", "scanned_at": T}),
        json.dumps({"item_id": "b", "scanned_at": T - 3600}),
        json.dumps({"item_id": "c", "scanned_at": T + 1}),
        "not json",
    ]
    batch = Batch.parse("b1", f"{int(T * 1000)}\n" + "\n".join(lines))
    assert batch.taken_ms == int(T * 1000) and batch.lines == tuple(lines)
    groups = batch.by_hour()
    assert [json.loads(x)["item_id"] for x in groups[hour_of(T - 3600)]] == ["b"]
    assert groups[hour_of(T)][:2] == [lines[0], lines[2]] and groups[hour_of(T)][2] == "not json"
    assert scanned_hour("{}", fallback_ms=int(T * 1000)) == hour_of(T)


def _line(item: str, at: float, verdict: str = "clean", **more: str) -> dict[str, object]:
    return {"item_id": item, "scanned_at": at, "verdict": verdict, **more}


def test_a_tally_counts_each_result_once_within_its_range() -> None:
    """A copy in another object of the hour is skipped; lines outside the range, and lines
    without an item id or scan time, are not counted."""
    tally = Tally(since=T - 3600, until=T + 1)
    tally.add_hour(
        [
            [_line("a", T), _line("b", T - 10, "match", lane="replay", bucket="other")],
            [_line("a", T), _line("old", T - 7200), {"verdict": "clean"}],
        ]
    )
    assert (tally.results, tally.repeats, tally.unreadable, tally.objects) == (2, 1, 1, 2)
    assert dict(tally.by_verdict) == {"clean": 1, "match": 1}
    assert dict(tally.by_lane) == {"live": 1, "replay": 1}
    assert dict(tally.by_bucket) == {"?": 1, "other": 1}
    doc = tally.to_dict()
    assert doc["by_day"] == {"2026-11-22": {"results": 2, "clean": 1, "match": 1}}
    assert json.loads(json.dumps(doc)) == doc
    text = render(tally)
    assert "2 results in 2 objects" in text and "1 written twice" in text
    assert "2026-11-22" in text


def _result(**changes: object) -> Result:
    base: dict[str, object] = {
        "item_id": "i",
        "verdict": "clean",
        "bucket": "b",
        "key": "k.bin",
        "version_id": None,
        "etag": "e",
        "content_bucket": "b",
        "content_key": "k",
        "is_match": False,
        "correlation_id": "c",
        "attempts": 1,
    }
    base.update(changes)
    return Result(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "late"),
    [
        ({"event_time": "2026-11-22T14:05:12Z"}, False),  # uploaded just now
        ({"event_time": "2026-11-22T13:05:12Z"}, True),  # half the window ago
        ({"enqueued_at": T - 1800}, False),  # no event time: when ingest took it
        ({"enqueued_at": T - 3600}, True),
        ({}, False),  # nothing known: as before the hot window
        ({"lane": "replay"}, True),  # an on-call person's scan: any age
        ({"lane": "backfill", "event_time": "2026-11-22T14:05:12Z"}, True),
    ],
)
def test_a_result_is_late_from_half_the_hot_window_on(
    changes: dict[str, object], late: bool
) -> None:
    """Within the window since its upload, a newer write's record is still in Redis."""
    assert is_late(_result(**changes), hot_window_s=7200, now=T) is late


def test_keys_per_scanned_hash_are_short_digests() -> None:
    """A kilobyte-long key costs 22 characters in Redis, for the result, its content
    pointer and the idempotency key alike; the legacy names stay readable."""
    k = Keys("edgematch")
    long_key = "photos/" + "x" * 1000 + ".jpg.bin"
    for name in (
        k.result("uploads", long_key),
        k.content_result("uploads", long_key),
        k.seen(f"uploads/{long_key}#v1"),
    ):
        assert len(name) <= len("edgematch:result-content:") + 22, name
    assert k.result("uploads", long_key) == k.result_by_digest(location_digest("uploads", long_key))
    assert len(short_digest("x")) == 22 and short_digest("x") != short_digest("y")
    assert location_digest("a", "b/c") != location_digest("a/b", "c")
    assert k.legacy_result("uploads", "p.bin") == "edgematch:result:uploads/p.bin"


def test_render_of_an_empty_tally_says_so() -> None:
    """No results in range: zero, and no table of days."""
    text = render(Tally(since=T - 60, until=T))
    assert "0 results in 0 objects" in text and "by verdict  -" in text
    assert io.StringIO(text).read().count("\n") == 4
