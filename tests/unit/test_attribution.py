"""Unit tests for the attribution of an unpinned hash file to its content version (pure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from edgematch.infra.versions import KeyVersion
from edgematch.pipeline.attribution import Attribution, attribute
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import Result

HASH_WRITTEN = dt.datetime(2026, 5, 1, 12, 0, 10, 400_000, tzinfo=dt.UTC)


def _v(version_id: str, second: int, *, marker: bool = False) -> KeyVersion:
    """A version written at 12:00:<second>, as S3 lists it (whole seconds)."""
    at = dt.datetime(2026, 5, 1, 12, 0, second, tzinfo=dt.UTC)
    return KeyVersion(
        version_id, at, etag=None if marker else f"e-{version_id}", delete_marker=marker
    )


def test_the_newest_version_of_an_earlier_second_is_the_scanned_one() -> None:
    """Versions written after the hash file are not it; older ones were superseded."""
    found = attribute([_v("v3", 12), _v("v2", 8), _v("v1", 5)], HASH_WRITTEN)
    assert found == Attribution(version_id="v2", etag="e-v2")


def test_a_version_of_the_hash_file_s_second_is_ambiguous_with_the_one_before() -> None:
    """Within S3's one-second resolution a version may have come before or after the hash."""
    found = attribute([_v("v3", 11), _v("v2", 10), _v("v1", 9), _v("v0", 3)], HASH_WRITTEN)
    assert (found.version_id, found.candidates) == ("v2", ("v1",))
    assert found.ambiguity == "2 content versions could have been the scanned one"


def test_several_versions_of_the_same_second_are_all_candidates() -> None:
    found = attribute([_v("c", 10), _v("b", 10), _v("a", 10)], HASH_WRITTEN)
    assert (found.version_id, found.candidates) == ("c", ("b", "a"))
    assert found.ambiguity


def test_a_single_version_of_the_same_second_with_nothing_before_is_not_ambiguous() -> None:
    assert attribute([_v("v1", 10)], HASH_WRITTEN) == Attribution("v1", "e-v1")


def test_a_delete_marker_between_the_version_and_the_hash_file_is_ambiguous() -> None:
    """The content was deleted before the hash file came: the version before stays the
    candidate, and the report says why."""
    found = attribute([_v("m", 9, marker=True), _v("v1", 4)], HASH_WRITTEN)
    assert (found.version_id, found.candidates) == ("v1", ())
    assert found.ambiguity and "delete marker" in found.ambiguity


def test_a_delete_marker_after_the_hash_file_changes_nothing() -> None:
    assert attribute([_v("m", 12, marker=True), _v("v1", 4)], HASH_WRITTEN) == Attribution(
        "v1", "e-v1"
    )


def test_nothing_written_by_then_names_the_oldest_later_version_as_ambiguous() -> None:
    """Clocks may differ: the closest version after the hash file, never nothing."""
    found = attribute([_v("v2", 14), _v("v1", 11)], HASH_WRITTEN)
    assert (found.version_id, found.candidates) == ("v1", ())
    assert found.ambiguity == "no content version was written by the time of the hash file"


def test_no_version_at_all_attributes_nothing() -> None:
    assert attribute([], HASH_WRITTEN) == Attribution()


def test_the_listing_is_read_only_as_far_as_needed() -> None:
    """Older versions than the newest one of an earlier second are never read."""
    read: list[str] = []

    def listing() -> Iterator[KeyVersion]:
        for entry in [_v("v3", 10), _v("v2", 7), _v("v1", 6), _v("v0", 5)]:
            read.append(entry.version_id)
            yield entry

    assert attribute(listing(), HASH_WRITTEN).candidates == ("v2",)
    assert read == ["v3", "v2", "v1"]


def test_candidates_travel_from_the_item_to_the_result_and_back() -> None:
    """Older workers' items have none; the JSON round trip keeps a tuple."""
    item = Item.new(
        bucket="b",
        key="k.bin",
        version_id="h1",
        etag="e",
        content_bucket="b",
        content_key="k",
        data=b"x" * 10,
        correlation_id="c",
        content_version_id="v2",
        content_candidates=("v1",),
        content_ambiguity="why",
    )
    again = Item.from_json(item.to_json())
    assert again == item
    result = Result.for_item(again, verdict="match", is_match=True)
    assert Result.from_dict(result.to_dict()) == result
    assert result.content_candidates == ("v1",)
    assert (
        Result.from_dict({**result.to_dict(), "content_candidates": None}).content_candidates == ()
    )
