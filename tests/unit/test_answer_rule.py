"""The rule for reading an answer (edgematch.photodna.answers) through parse_response: which
result answers which item, and what happens to the items no result answers unambiguously.

The examples are the ones issue 12 found; the property mutates valid answers every way the
issue lists and checks that no item is ever clean without its own, unambiguous clean
result, and never a match with another item's match details.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edgematch.errors import ItemRejected, ItemTransient
from edgematch.photodna.answers import Answered, Unanswered, route, says_match
from edgematch.photodna.client import BatchResponse, ItemOutcome, parse_response

Doc = dict[str, Any]


def _result(content_id: str | None, *, match_ids: tuple[str, ...] = (), code: int = 3000) -> Doc:
    """One MatchResult as the API documents it; ``match_ids`` make it a match."""
    flags = [
        {"AdvancedInfo": [{"Key": "MatchId", "Value": mid}], "Source": "S", "Violations": ["A1"]}
        for mid in match_ids
    ]
    doc: Doc = {
        "Status": {"Code": code, "Description": "OK" if code == 3000 else f"code {code}"},
        "IsMatch": bool(match_ids),
        "MatchDetails": {"AdvancedInfo": [], "MatchFlags": flags},
    }
    if content_id is not None:
        doc["ContentId"] = content_id
    return doc


def _read(results: list[Any], ids: list[str]) -> BatchResponse:
    body = json.dumps({"TrackingId": "t", "MatchResults": results, "CMRequestId": "r"})
    return parse_response(200, {}, body.encode(), ids)


def _clean(outcome: ItemOutcome) -> bool:
    return outcome.error is None and not outcome.is_match


# --------------------------------------------------------------------------- the cases


def test_a_conflicting_duplicate_leaves_the_hit_unanswered_and_signalled() -> None:
    """A clean and a match for one ContentId: the item is retried, never clean, and the
    match is remembered; the answer as a whole is not trusted for the others either."""
    response = _read(
        [_result("hit"), _result("hit", match_ids=("m1",)), _result("b")], ["hit", "b"]
    )

    hit, other = response.outcomes["hit"], response.outcomes["b"]
    assert isinstance(hit.error, ItemTransient) and not hit.is_match
    assert hit.match_signalled
    assert "two different results for one ContentId" in str(hit.error)
    assert isinstance(other.error, ItemTransient) and not other.match_signalled


def test_the_match_first_then_a_clean_reads_the_same() -> None:
    """The order of the conflicting results changes nothing: first or last never wins."""
    response = _read([_result("hit", match_ids=("m1",)), _result("hit")], ["hit"])
    assert isinstance(response.outcomes["hit"].error, ItemTransient)
    assert response.outcomes["hit"].match_signalled


def test_two_matches_with_different_match_ids_give_no_match_details_at_all() -> None:
    """Two matches for one id naming different MatchIds: neither id is attributed."""
    results = [_result("a", match_ids=("m1",)), _result("a", match_ids=("m2",)), _result("b")]
    response = _read(results, ["a", "b"])

    a = response.outcomes["a"]
    assert isinstance(a.error, ItemTransient) and not a.is_match and a.match_ids == ()
    assert a.match_signalled
    assert all(o.match_ids == () for o in response.outcomes.values())


def test_byte_identical_duplicates_are_read_once() -> None:
    """The same result twice (a repeat, not a conflict) answers its item: every reading agrees."""
    results = [_result("a", match_ids=("m1",)), _result("b"), _result("a", match_ids=("m1",))]
    response = _read(results, ["a", "b"])
    assert response.outcomes["a"].is_match and response.outcomes["a"].match_ids == ("m1",)
    assert _clean(response.outcomes["b"])


def test_duplicates_equal_in_python_but_not_in_json_conflict() -> None:
    """``"IsMatch": 1`` and ``"IsMatch": true`` are equal in Python, not in the API's text."""
    odd = _result("a", match_ids=("m1",))
    odd["IsMatch"] = 1
    response = _read([odd, _result("a", match_ids=("m1",))], ["a"])
    assert isinstance(response.outcomes["a"].error, ItemTransient)
    assert response.outcomes["a"].match_signalled


def test_match_hash_answer_one_short_without_ids_answers_no_item() -> None:
    """MatchHash's documented ``"ContentId": null``, one result short: position means
    nothing any more, so no item is answered, and every item may be the hit."""
    # p's result is lost: by position q would get r's clean and p the hit's match id.
    results = [_result(None, match_ids=("hit-id",)), _result(None)]
    for result in results:
        result["ContentId"] = None
    response = _read(results, ["p", "q", "r"])

    for outcome in response.outcomes.values():
        assert isinstance(outcome.error, ItemTransient)
        assert not outcome.is_match and outcome.match_ids == ()
        assert outcome.match_signalled
        assert "2 results without a ContentId for 3 items" in str(outcome.error)


def test_an_answer_without_ids_of_the_right_length_is_read_by_position() -> None:
    """The documented MatchHash answer: ``"ContentId": null``, request order, one each."""
    results = [_result(None), _result(None, match_ids=("m1",)), _result(None)]
    for result in results:
        result["ContentId"] = None
    response = _read(results, ["p", "q", "r"])
    assert [o.is_match for o in response.outcomes.values()] == [False, True, False]
    assert response.outcomes["q"].match_ids == ("m1",)
    assert all(o.error is None for o in response.outcomes.values())


def test_one_answer_too_many_without_ids_answers_no_item() -> None:
    """More id-less results than items: which is extra cannot be known."""
    response = _read([_result(None), _result(None), _result(None)], ["p", "q"])
    assert all(isinstance(o.error, ItemTransient) for o in response.outcomes.values())
    assert not any(o.match_signalled for o in response.outcomes.values())


@pytest.mark.parametrize(
    ("results", "why"),
    [
        ([_result("a"), _result("stranger")], "names no item sent"),
        ([_result("a"), _result(None)], "with and without a ContentId"),
        ([_result("a"), "b"], "not a JSON object"),
        ([_result("a"), {**_result("b"), "ContentId": ""}], "not a non-empty string"),
        ([_result("a"), {**_result("b"), "ContentId": ["b"]}], "not a non-empty string"),
        ([_result("a"), _result("b.bin")], "names no item sent"),
    ],
)
def test_an_inconsistent_answer_answers_none_of_its_items(results: list[Any], why: str) -> None:
    """An unknown id, ids mixed with none, a non-object, an unusable id, two ways of naming:
    every item of the answer is retried, even the ones whose own result looks fine."""
    response = _read(results, ["a", "b"])
    for outcome in response.outcomes.values():
        assert isinstance(outcome.error, ItemTransient), outcome
        assert why in str(outcome.error)
        assert not outcome.match_signalled


def test_a_match_under_an_unknown_id_may_be_anyones() -> None:
    """A match naming an id never sent could be any item's: all of them carry the signal,
    none gets its details."""
    response = _read([_result("a"), _result("zzz", match_ids=("m9",))], ["a", "b"])
    for outcome in response.outcomes.values():
        assert isinstance(outcome.error, ItemTransient)
        assert outcome.match_signalled and outcome.match_ids == ()


def test_a_match_named_by_id_in_an_inconsistent_answer_signals_only_its_item() -> None:
    """In an answer spoiled by something else, a match that names a sent id is that item's."""
    response = _read([_result("a", match_ids=("m1",)), _result("b"), _result("zzz")], ["a", "b"])
    assert response.outcomes["a"].match_signalled
    assert not response.outcomes["b"].match_signalled


def test_filename_echoes_read_one_way_or_not_at_all() -> None:
    """``x.bin`` names item ``x``; when both ``x`` and ``x.bin`` were sent it reads two ways."""
    response = _read([_result("a.bin", match_ids=("m1",)), _result("b.bin")], ["a", "b"])
    assert response.outcomes["a"].is_match and _clean(response.outcomes["b"])

    both = _read([_result("x.bin")], ["x", "x.bin"])
    assert all(isinstance(o.error, ItemTransient) for o in both.outcomes.values())


@pytest.mark.parametrize(
    ("change", "signalled"),
    [
        ({"IsMatch": None}, False),
        ({"IsMatch": "yes"}, True),
        ({"Status": None}, False),
        ({"Status": {"Description": "OK"}}, False),
    ],
)
def test_a_missing_or_unreadable_field_leaves_the_item_unanswered(
    change: Doc, signalled: bool
) -> None:
    """No IsMatch, an IsMatch that is not a boolean, no Status or no Code: retried."""
    result = {**_result("a"), **change}
    outcome = _read([result, _result("b")], ["a", "b"]).outcomes["a"]
    assert isinstance(outcome.error, ItemTransient)
    assert outcome.match_signalled is signalled


def test_match_flags_under_is_match_false_are_not_clean() -> None:
    """IsMatch false beside a MatchFlag with a MatchId contradicts itself: retried, signalled."""
    result = _result("a", match_ids=("m1",))
    result["IsMatch"] = False
    outcome = _read([result], ["a"]).outcomes["a"]
    assert isinstance(outcome.error, ItemTransient) and outcome.match_signalled


def test_a_match_under_a_failed_status_is_still_a_signal() -> None:
    """3004 (retried) or 3002 (given up) with IsMatch true: the claim of a match is kept."""
    transient = {**_result("a", code=3004), "IsMatch": True}
    rejected = {**_result("b", code=3002), "IsMatch": True}
    response = _read([transient, rejected], ["a", "b"])
    assert isinstance(response.outcomes["a"].error, ItemTransient)
    assert isinstance(response.outcomes["b"].error, ItemRejected)
    assert response.outcomes["a"].match_signalled and response.outcomes["b"].match_signalled


def test_an_outcome_cannot_be_clean_and_signalled() -> None:
    """The value type refuses a clean verdict that carries a match signal (and the like)."""
    with pytest.raises(ValueError, match="contradicting"):
        ItemOutcome("a", 3000, "OK", False, (), None, match_signalled=True)
    with pytest.raises(ValueError, match="contradicting"):
        ItemOutcome("a", 3000, "OK", True, (), None, match_signalled=False)
    with pytest.raises(ValueError, match="a match with an error"):
        ItemOutcome("a", 0, "x", True, (), ItemTransient("x"), match_signalled=True)


def test_route_names_every_item_once_in_request_order() -> None:
    """route gives every requested id a route, in order, for an empty answer too."""
    assert route([], ["b", "a"]) == {
        "b": Unanswered("ambiguous answer: 0 results without a ContentId for 2 items", False),
        "a": Unanswered("ambiguous answer: 0 results without a ContentId for 2 items", False),
    }
    ok = _result("a")
    assert route([ok], ["a"]) == {"a": Answered(ok)}


# --------------------------------------------------------------------------- the property

KINDS = ("clean", "match", "3004", "3002")


@dataclass
class Answer:
    """A mutated answer and, hidden from the reader, which item each result was made for
    (None: a result made for no item)."""

    results: list[Any]
    made_for: list[int | None]


def _valid(kinds: list[str]) -> Answer:
    results: list[Any] = []
    for n, kind in enumerate(kinds):
        if kind == "match":
            results.append(_result(f"id{n}", match_ids=(f"mid-{n}-a", f"mid-{n}-b")))
        elif kind == "clean":
            results.append(_result(f"id{n}"))
        else:
            results.append(_result(f"id{n}", code=int(kind)))
    return Answer(results, list(range(len(kinds))))


_FIELDS = ("IsMatch", "Status", "MatchDetails", "ContentId")
_ODD_VALUES: tuple[Any, ...] = (None, True, False, 1, 0, "yes", "", [], {}, "3000")

MUTATIONS = st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 9)),
    st.tuples(st.just("duplicate"), st.integers(0, 9), st.integers(0, 9)),
    st.tuples(st.just("reorder"), st.randoms(use_true_random=False)),
    st.tuples(st.just("strip_ids")),
    st.tuples(st.just("null_ids")),
    st.tuples(st.just("strip_id"), st.integers(0, 9)),
    st.tuples(st.just("null_id"), st.integers(0, 9)),
    st.tuples(st.just("filename_id"), st.integers(0, 9)),
    st.tuples(st.just("unknown"), st.booleans(), st.integers(0, 9)),
    st.tuples(st.just("flip"), st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 9), st.sampled_from(_FIELDS)),
    st.tuples(
        st.just("set"), st.integers(0, 9), st.sampled_from(_FIELDS), st.sampled_from(_ODD_VALUES)
    ),
    st.tuples(st.just("garbage"), st.integers(0, 9)),
)


def _mutate(answer: Answer, mutation: tuple[Any, ...]) -> None:
    results, made_for = answer.results, answer.made_for
    op = mutation[0]
    if op == "reorder":
        order = list(range(len(results)))
        mutation[1].shuffle(order)
        answer.results = [results[i] for i in order]
        answer.made_for = [made_for[i] for i in order]
        return
    if op in ("strip_ids", "null_ids"):
        for doc in results:
            if isinstance(doc, dict):
                doc.pop("ContentId", None)
                if op == "null_ids":
                    doc["ContentId"] = None
        return
    if op == "unknown":
        stranger = _result("stranger", match_ids=("mid-stranger",) if mutation[1] else ())
        position = mutation[2] % (len(results) + 1)
        results.insert(position, stranger)
        made_for.insert(position, None)
        return
    if not results:
        return
    k = mutation[1] % len(results)
    doc = results[k]
    if op == "drop":
        del results[k], made_for[k]
    elif op == "duplicate":
        position = mutation[2] % (len(results) + 1)
        results.insert(position, copy.deepcopy(doc))
        made_for.insert(position, made_for[k])
    elif op == "garbage":
        results[k] = "not an object"
    elif not isinstance(doc, dict):
        return
    elif op == "strip_id":
        doc.pop("ContentId", None)
    elif op == "null_id":
        doc["ContentId"] = None
    elif op == "filename_id" and isinstance(doc.get("ContentId"), str):
        doc["ContentId"] += ".bin"
    elif op == "flip" and isinstance(doc.get("IsMatch"), bool):
        doc["IsMatch"] = not doc["IsMatch"]
    elif op == "delete":
        doc.pop(mutation[2], None)
    elif op == "set":
        doc[mutation[2]] = copy.deepcopy(mutation[3])


def _names_an_item(doc: object, ids: list[str]) -> bool:
    content_id = doc.get("ContentId") if isinstance(doc, dict) else None
    return isinstance(content_id, str) and any(content_id in (c, c + ".bin") for c in ids)


def _match_ids_in(doc: Doc) -> set[str]:
    details = doc.get("MatchDetails")
    flags = details.get("MatchFlags") if isinstance(details, dict) else None
    found = set()
    for flag in flags if isinstance(flags, list) else []:
        for info in flag.get("AdvancedInfo", []) if isinstance(flag, dict) else []:
            if isinstance(info, dict) and isinstance(info.get("Value"), str):
                found.add(info["Value"])
    return found


def _canonical(doc: object) -> str:
    return json.dumps(doc, sort_keys=True)


@given(
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5),
    mutations=st.lists(MUTATIONS, max_size=6),
)
def test_no_mutation_of_an_answer_makes_an_item_clean_or_misattributes_a_match(
    kinds: list[str], mutations: list[tuple[Any, ...]]
) -> None:
    """For any mutation of a valid answer: an item is clean only when its own results, all
    alike, say clean and no result that could be its own says match; a match carries only
    its own match ids; a result of its own that says match is never lost."""
    ids = [f"id{n}" for n in range(len(kinds))]
    answer = _valid(kinds)
    for mutation in mutations:
        _mutate(answer, mutation)
    id_less = all(isinstance(d, dict) and d.get("ContentId") is None for d in answer.results)
    # An id-less answer is read by position, and one in another order (or with one result
    # lost and another repeated) cannot be told from a right one by any reader: the API
    # documents request order. Only its length can be checked, so those cases are left out.
    assume(not (id_less and answer.made_for != list(range(len(ids)))))

    outcomes = _read(answer.results, ids).outcomes
    assert list(outcomes) == ids
    # Results no reader can give to one item: made for none, or (ids in use) naming none.
    strangers = [
        d
        for d, made in zip(answer.results, answer.made_for, strict=True)
        if made is None or not (id_less or _names_an_item(d, ids))
    ]
    for n, cid in enumerate(ids):
        outcome = outcomes[cid]
        own = [d for d, made in zip(answer.results, answer.made_for, strict=True) if made == n]
        if _clean(outcome):
            assert own and len({_canonical(d) for d in own}) == 1, (cid, own)
            assert own[0]["IsMatch"] is False and not says_match(own[0])
            assert own[0]["Status"]["Code"] == 3000
            assert not any(says_match(d) for d in strangers)
        if outcome.is_match:
            assert own and len({_canonical(d) for d in own}) == 1, (cid, own)
            assert own[0]["IsMatch"] is True
            assert set(outcome.match_ids) <= _match_ids_in(own[0])
        assert all(mid.startswith(f"mid-{n}-") for mid in outcome.match_ids), outcome
        if any(says_match(d) for d in own):
            assert not _clean(outcome)
            assert outcome.is_match or outcome.match_signalled


@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=5), data=st.data())
def test_a_valid_answer_in_any_order_answers_every_item(kinds: list[str], data: Any) -> None:
    """The rule is not merely suspicious: a valid answer, results in any order, gives every
    item exactly the verdict its result says."""
    ids = [f"id{n}" for n in range(len(kinds))]
    answer = _valid(kinds)
    shuffled = data.draw(st.permutations(answer.results))
    outcomes = _read(shuffled, ids).outcomes
    for n, kind in enumerate(kinds):
        outcome = outcomes[ids[n]]
        if kind == "clean":
            assert _clean(outcome)
        elif kind == "match":
            assert outcome.is_match and outcome.match_ids == (f"mid-{n}-a", f"mid-{n}-b")
        elif kind == "3004":
            assert isinstance(outcome.error, ItemTransient) and outcome.status_code == 3004
        else:
            assert isinstance(outcome.error, ItemRejected) and outcome.status_code == 3002
