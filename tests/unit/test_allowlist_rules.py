"""The allowlist's rule and its records (allowlist.py, ops/allowing.py). Pure."""

from __future__ import annotations

import dataclasses

import pytest

from edgematch.ops.allowing import ADD, PREFIX, REMOVE, record_doc, record_key, replayed
from edgematch.pipeline.allowlist import (
    MATCH_ID,
    SHA256,
    Entry,
    field_of,
    fields_of,
    normalised,
    screened,
)
from edgematch.pipeline.results import ALLOWLISTED, CLEAN, UNSCANNABLE
from tests.support.results import match_result

DIGEST = "ab" * 32
BOTH = {field_of(MATCH_ID, "m1"), field_of(MATCH_ID, "m2")}


def test_a_match_whose_every_id_is_listed_is_allowlisted() -> None:
    """m1 and m2 listed: its own verdict, the match ids kept, the reason said."""
    result = screened(match_result(), BOTH)
    assert result.verdict == ALLOWLISTED
    assert result.match_ids == ("m1", "m2") and result.is_match
    assert result.reason and "every match id" in result.reason


def test_a_partly_listed_match_stays_a_match() -> None:
    """One id not listed: still a match, unchanged."""
    result = match_result()
    assert screened(result, {field_of(MATCH_ID, "m1")}) is result


def test_a_listed_hash_clears_its_match_whatever_its_ids() -> None:
    """The hash file's SHA-256 on the list clears that picture alone."""
    result = screened(match_result(hash_sha256=DIGEST), {field_of(SHA256, DIGEST)})
    assert result.verdict == ALLOWLISTED and "SHA-256" in (result.reason or "")


def test_a_match_without_ids_is_not_cleared_by_an_empty_list() -> None:
    """all() of nothing is not an allowlisting: a match naming no id stays a match."""
    result = match_result(match_ids=())
    assert screened(result, set()) is result
    assert fields_of(result) == []


@pytest.mark.parametrize("verdict", [CLEAN, UNSCANNABLE])
def test_other_verdicts_are_left_alone(verdict: str) -> None:
    """Only a match is screened."""
    result = match_result(verdict=verdict)
    assert screened(result, BOTH) is result


def test_the_candidates_are_the_ids_and_the_hash() -> None:
    """One HMGET asks for each match id and the hash's digest."""
    assert fields_of(match_result(hash_sha256=DIGEST)) == [
        "match-id:m1",
        "match-id:m2",
        f"sha256:{DIGEST}",
    ]


def test_entries_are_normalised_or_refused() -> None:
    """A digest in lower case; an id trimmed; the malformed refused."""
    assert normalised(SHA256, " " + DIGEST.upper() + " ") == DIGEST
    assert normalised(MATCH_ID, " 2ad453d9a64a8e03 ") == "2ad453d9a64a8e03"
    for kind, value in [(SHA256, "abc"), (MATCH_ID, ""), (MATCH_ID, "a\nb"), ("x", "y")]:
        with pytest.raises(ValueError):
            normalised(kind, value)


def test_records_sort_by_time_and_replay_to_the_list() -> None:
    """Keys sort in the order changes were made; replaying adds and removes in order."""
    first = Entry(MATCH_ID, "m1", "ana", "rpt-1 rejected", at=1_750_000_000.0)
    second = Entry(SHA256, DIGEST, "ana", "one picture", at=1_750_000_001.5)
    removed = dataclasses.replace(first, reviewer="bo", reason="list fixed", at=1_750_086_400.0)
    changes = [(ADD, first), (ADD, second), (REMOVE, removed)]
    keys = [record_key(action, entry) for action, entry in changes]
    assert keys == sorted(keys) and all(k.startswith(PREFIX) for k in keys)
    assert keys[0].startswith("allowlist/2025/06/15/")
    assert replayed([record_doc(a, e) for a, e in changes]) == [second]
    assert replayed([record_doc(ADD, first), {"schema": "other", "action": REMOVE}]) == [first]


def test_a_record_names_who_why_and_when() -> None:
    """The record carries the action and the whole entry."""
    doc = record_doc(ADD, Entry(MATCH_ID, "m1", "ana", "why", at=5.0))
    assert doc == {
        "schema": "edgematch.allowlist-change/v1",
        "action": "add",
        "kind": "match-id",
        "value": "m1",
        "reviewer": "ana",
        "reason": "why",
        "at": 5.0,
    }
