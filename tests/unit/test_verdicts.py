"""The verdict rule alone: strength order, and which result may change what. Pure."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.pipeline.verdicts import (
    ALLOWLISTED,
    CLEAN,
    MATCH,
    PENDING,
    QUARANTINED,
    RELEASED,
    UNSCANNABLE,
    Facts,
    decide,
    may_replace,
    needs_hash_check,
    strength,
)

ORDER = [PENDING, CLEAN, ALLOWLISTED, UNSCANNABLE, RELEASED, MATCH, QUARANTINED]
VERDICTS = [CLEAN, UNSCANNABLE, MATCH]
LANES = ["live", "replay", "backfill"]


def _facts(
    item: str = "i1",
    *,
    write: str = "etag:h1",
    content: str | None = "etag:c1",
    verdict: str = CLEAN,
    lane: str = "live",
    at: float = 100.0,
) -> Facts:
    return Facts(
        item_id=item,
        hash_version=write,
        content_version=content,
        verdict=verdict,
        lane=lane,
        scanned_at=at,
    )


def test_strength_order() -> None:
    """pending < clean < allowlisted < unscannable < released < match < quarantined;
    anything else below them all."""
    assert [strength(v) for v in ORDER] == sorted(strength(v) for v in ORDER)
    assert len({strength(v) for v in ORDER}) == len(ORDER)
    assert strength(None) < strength(PENDING) and strength("platform-value") < strength(PENDING)


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("existing", [MATCH, QUARANTINED])
@pytest.mark.parametrize("verdict", [PENDING, CLEAN, ALLOWLISTED, UNSCANNABLE, RELEASED])
def test_match_and_quarantined_are_never_weakened(existing: str, verdict: str, lane: str) -> None:
    """Whatever the lane, nothing weaker replaces match or quarantined."""
    assert not may_replace(existing, verdict, lane=lane)


def test_at_least_as_strong_always_replaces() -> None:
    """Each value replaces itself and anything weaker, and any foreign or missing value."""
    for weaker, stronger in itertools.combinations_with_replacement(ORDER, 2):
        assert may_replace(weaker, stronger, lane="live")
    for value in ORDER:
        assert may_replace(None, value, lane="live") and may_replace("other", value, lane="live")


@pytest.mark.parametrize(
    ("lane", "allowed"), [("live", False), ("replay", True), ("backfill", True)]
)
def test_only_an_on_call_rescan_clears_unscannable(lane: str, allowed: bool) -> None:
    """clean over unscannable: dlq replay or backfill --rescan only; a late live one, never."""
    assert may_replace(UNSCANNABLE, CLEAN, lane=lane) is allowed
    assert may_replace(UNSCANNABLE, ALLOWLISTED, lane=lane) is allowed
    assert not may_replace(UNSCANNABLE, PENDING, lane=lane)


@pytest.mark.parametrize("lane", LANES)
def test_a_released_version_is_blocked_again_only_by_a_match(lane: str) -> None:
    """released stands over every readable verdict and unscannable; a match (a redelivery,
    a rescan of the released version) puts it back: fail closed."""
    for verdict in (PENDING, CLEAN, ALLOWLISTED, UNSCANNABLE):
        assert not may_replace(RELEASED, verdict, lane=lane)
    assert may_replace(RELEASED, MATCH, lane=lane)
    assert may_replace(RELEASED, QUARANTINED, lane=lane)


def test_first_result_is_recorded_and_tags() -> None:
    """Nothing recorded yet: record it; tag its version when the write reaches it."""
    decision = decide(_facts(), None, hash_current=None, content_reachable=True)
    assert decision.record and decision.tag
    unreached = decide(_facts(), None, hash_current=None, content_reachable=False)
    assert unreached.record and not unreached.tag


def test_unknown_content_version_tags_nothing() -> None:
    """A result of a hash file gone or replaced before it was read names no content."""
    decision = decide(_facts(content=None), None, hash_current=None, content_reachable=True)
    assert not decision.tag


def test_a_repeat_records_nothing_and_tags_again() -> None:
    """The same item again: the record stays; the tag is written again (a crash between)."""
    decision = decide(_facts(), _facts(), hash_current=None, content_reachable=True)
    assert not decision.record and decision.tag and decision.why == "repeat"


def test_a_late_result_of_an_older_write_is_not_recorded() -> None:
    """B's write is current: A's result, arriving after, leaves B's recorded result."""
    a = _facts("a", write="etag:hA", verdict=UNSCANNABLE)
    b = _facts("b", write="etag:hB", verdict=MATCH)
    assert needs_hash_check(a, b)
    decision = decide(a, b, hash_current=False, content_reachable=False)
    assert not decision.record and not decision.tag and decision.why == "superseded write"
    gone = decide(a, b, hash_current=None, content_reachable=False)
    assert not gone.record


def test_a_late_result_with_no_record_asks_which_write_is_current() -> None:
    """The newer write's result may have left Redis's hot window: a late result with none
    recorded is asked about, and is not recorded when another write is current; a result
    that is not late is recorded as the first, with no question."""
    a = _facts("a", write="etag:hA")
    assert needs_hash_check(a, None, late=True) and not needs_hash_check(a, None)
    superseded = decide(a, None, hash_current=False, content_reachable=True)
    assert not superseded.record and superseded.tag and superseded.why == "superseded write"
    for current in (True, None):  # current, or the hash file is gone: nothing newer known
        assert decide(a, None, hash_current=current, content_reachable=True).record


def test_the_current_write_replaces_an_older_writes_result_whatever_its_verdict() -> None:
    """New content: its own verdict is recorded, even clean after an older match."""
    old = _facts("a", write="etag:hA", content="etag:cA", verdict=MATCH)
    new = _facts("b", write="etag:hB", content="etag:cB", verdict=CLEAN)
    decision = decide(new, old, hash_current=True, content_reachable=True)
    assert decision.record and decision.tag


@pytest.mark.parametrize("lane", LANES)
@pytest.mark.parametrize("weaker", [CLEAN, UNSCANNABLE])
def test_same_write_never_weakens_a_match(weaker: str, lane: str) -> None:
    """A second item of the same write (a replay, a rescan) cannot record less than match."""
    recorded = _facts("first", verdict=MATCH, at=100.0)
    new = _facts("second", verdict=weaker, lane=lane, at=200.0)
    assert not needs_hash_check(new, recorded)
    assert not decide(new, recorded, hash_current=None, content_reachable=True).record


def test_same_write_older_scan_of_equal_strength_is_not_recorded() -> None:
    """Two clean scans of one write out of order: the newer one stays recorded."""
    recorded = _facts("newer", at=200.0)
    older = _facts("older", at=100.0)
    assert not decide(older, recorded, hash_current=None, content_reachable=True).record
    assert decide(recorded, older, hash_current=None, content_reachable=True).record


def test_replay_clears_unscannable_of_the_same_write() -> None:
    """A replayed scan that answers clean is recorded over the unscannable it replays."""
    failed = _facts("failed", verdict=UNSCANNABLE, at=100.0)
    replayed = _facts("replayed", verdict=CLEAN, lane="replay", at=200.0)
    live = _facts("late-live", verdict=CLEAN, lane="live", at=200.0)
    assert decide(replayed, failed, hash_current=None, content_reachable=True).record
    assert not decide(live, failed, hash_current=None, content_reachable=True).record


def test_facts_are_read_from_result_documents() -> None:
    """Version id first, else ETag; no content version when ingest could not tell."""
    doc = {
        "item_id": "x",
        "version_id": "hv",
        "etag": "he",
        "content_version_id": None,
        "content_etag": "ce",
        "verdict": MATCH,
        "lane": "replay",
        "scanned_at": 5,
    }
    facts = Facts.of(doc)
    assert (facts.hash_version, facts.content_version) == ("v:hv", "etag:ce")
    assert Facts.of({**doc, "content_etag": None}).content_version is None
    assert Facts.of({"item_id": "y"}).hash_version == ""


RESULTS = st.lists(
    st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(VERDICTS), st.sampled_from(LANES)),
    min_size=1,
    max_size=8,
).filter(lambda results: any(write == "B" for write, _, _ in results))


@given(RESULTS, st.randoms())
def test_any_arrival_order_ends_with_the_current_writes_strongest_verdict(
    results: list[tuple[str, str, str]], rnd: random.Random
) -> None:
    """Results of two writes of one key (B current), in any order: B's result is recorded,
    each version's tag is the strongest verdict it got (its clean only over unscannable
    by an on-call rescan), and no match is ever replaced by something weaker on the way."""
    facts = [
        _facts(f"item{n}", write=f"v:{w}", content=f"v:c{w}", verdict=v, lane=lane, at=float(n))
        for n, (w, v, lane) in enumerate(results)
    ]
    rnd.shuffle(facts)
    recorded: Facts | None = None
    tags: dict[str, str | None] = {"v:cA": None, "v:cB": None}
    for new in facts:
        decision = decide(
            new,
            recorded,
            hash_current=new.hash_version == "v:B",
            content_reachable=True,
        )
        if decision.record:
            if recorded is not None and recorded.hash_version == new.hash_version:
                assert not (recorded.verdict == MATCH and new.verdict != MATCH)
            recorded = new
        assert decision.tag and new.content_version is not None
        existing = tags[new.content_version]
        if may_replace(existing, new.verdict, lane=new.lane):
            tags[new.content_version] = new.verdict
        elif existing == MATCH:
            assert strength(new.verdict) < strength(MATCH)
    assert recorded is not None and recorded.hash_version == "v:B"
    for version in ("A", "B"):
        got = [f.verdict for f in facts if f.hash_version == f"v:{version}"]
        if not got:
            continue
        # A match, once in, stays; otherwise the tag is one of the verdicts it got.
        assert (tags[f"v:c{version}"] == MATCH) == (MATCH in got)
        assert tags[f"v:c{version}"] in got
    b_verdicts = [f.verdict for f in facts if f.hash_version == "v:B"]
    if MATCH in b_verdicts:
        assert recorded.verdict == MATCH
