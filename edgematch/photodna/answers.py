"""Which result of a PhotoDNA answer answers which item: the one rule for reading an answer.

An item is answered only by a result that names it unambiguously:

- when every result carries a ``ContentId``: the result naming the item, exactly once
  (byte-identical repeats count as once: every reading of the item agrees); an item that
  no result names is left unanswered, the others are answered;
- when no result carries one (``MatchHash`` documents ``"ContentId": null``): by
  position, and only when there are exactly as many results as items sent.

Anything else makes the answer inconsistent as a whole, and then *every* item of it is
left unanswered: a result that is not an object; a ``ContentId`` that is not a non-empty
string (or integer), that names no item sent, or that could name two (``x.bin`` when both
``x`` and ``x.bin`` were sent); results with and without ids mixed; id-less results more
or fewer than the items; two different results naming one item. An answer that mixed up
one item may have mixed up the others, and position means nothing once one result is
missing: one more request costs little, a wrong verdict is a known hit tagged clean or an
innocent upload quarantined and reported under another's match id.

An unanswered item is retried (the caller makes it ``ItemTransient``). It also carries
``match_signalled``: whether any result that may be its own said it matched — a result
naming it, and, in an inconsistent answer, every result that names no item sent or no item
at all, since it could be anyone's. The match step keeps that signal with the item across
attempts: a match, even one that could not be attributed, is never forgotten in favour of
a later clean.

Pure: decoded JSON in, decisions out; no I/O, no logging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["FILENAME_SUFFIX", "Answered", "Route", "Unanswered", "route", "says_match"]

#: MatchEdgeHash sends each hash as ``<content id>.bin``; an echo of the filename instead
#: of the form name is accepted when it reads one way only.
FILENAME_SUFFIX: Final = ".bin"


@dataclass(frozen=True)
class Answered:
    """The item's own result, to be read by the caller."""

    result: Mapping[str, Any]


@dataclass(frozen=True)
class Unanswered:
    """No result answers the item unambiguously. ``why`` is safe to log (no server text)."""

    why: str
    match_signalled: bool


Route = Answered | Unanswered


class _Unusable:
    """A ContentId that is present but cannot name anything (``""``, ``true``, a list …)."""


_UNUSABLE: Final = _Unusable()


def route(results: Sequence[object], requested_ids: Sequence[str]) -> dict[str, Route]:
    """Decide, for every id of ``requested_ids`` (in that order), which result answers it.

    ``results`` is the decoded ``MatchResults`` list; ``requested_ids`` are the ids sent,
    distinct (the request builder refuses duplicates). Never raises for any JSON value.
    """
    wanted = list(requested_ids)
    try:
        own = _own_results(results, wanted)
    except _Inconsistent as exc:
        return _inconsistent(str(exc), results, wanted)
    return {
        cid: Answered(own[cid])
        if cid in own
        else Unanswered("missing from the answer", match_signalled=False)
        for cid in wanted
    }


class _Inconsistent(Exception):
    """The answer as a whole cannot be read; the message says why (no server text)."""


def _own_results(results: Sequence[object], wanted: list[str]) -> dict[str, Mapping[str, Any]]:
    """Item id -> its own result, for the items the answer names; raises _Inconsistent."""
    objects = [result for result in results if isinstance(result, dict)]
    if len(objects) != len(results):
        raise _Inconsistent("a result that is not a JSON object")
    echoed = [_echoed(result.get("ContentId")) for result in objects]
    if any(isinstance(value, _Unusable) for value in echoed):
        raise _Inconsistent("a ContentId that is not a non-empty string")
    ids = [value for value in echoed if isinstance(value, str)]
    if not ids:
        if len(objects) != len(wanted):
            raise _Inconsistent(
                f"{len(objects)} results without a ContentId for {len(wanted)} items"
            )
        return dict(zip(wanted, objects, strict=True))
    if len(ids) != len(objects):
        raise _Inconsistent("results with and without a ContentId")
    named: dict[str, list[Mapping[str, Any]]] = {}
    for name, result in zip(_names(ids, set(wanted)), objects, strict=True):
        named.setdefault(name, []).append(result)
    if any(len({_canonical(r) for r in found}) > 1 for found in named.values()):
        raise _Inconsistent("two different results for one ContentId")
    return {name: found[0] for name, found in named.items()}


def says_match(result: object) -> bool:
    """Whether a result says, in any way, that its item matched. Never raises.

    Anything but ``false``, ``null`` or no ``IsMatch`` at all, or a ``MatchFlags`` that is
    present and not empty: an unreadable claim of a match counts as one.
    """
    if not isinstance(result, dict):
        return False
    is_match = result.get("IsMatch")
    if is_match is not None and is_match is not False:
        return True
    details = result.get("MatchDetails")
    flags = details.get("MatchFlags") if isinstance(details, dict) else None
    return flags is not None and flags != []


def _echoed(value: object) -> str | _Unusable | None:
    """The id a result names: None when it names none (absent or null)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return _UNUSABLE


def _names(ids: Sequence[str], wanted: set[str]) -> list[str]:
    """The item each id names, read one way for the whole answer; raises _Inconsistent."""
    exact = all(cid in wanted for cid in ids)
    filenames = all(_filename_of(cid) in wanted for cid in ids)
    if exact and filenames:
        raise _Inconsistent("ContentIds that name the items sent two ways")
    if exact:
        return list(ids)
    if filenames:
        return [cid[: -len(FILENAME_SUFFIX)] for cid in ids]
    raise _Inconsistent("a ContentId that names no item sent")


def _filename_of(cid: str) -> str | None:
    return cid[: -len(FILENAME_SUFFIX)] if cid.endswith(FILENAME_SUFFIX) else None


def _canonical(result: Mapping[str, Any]) -> str:
    # JSON text, not ==: in Python true == 1 and 1 == 1.0, which the API's text does not say.
    return json.dumps(result, sort_keys=True, separators=(",", ":"))


def _inconsistent(why: str, results: Sequence[object], wanted: list[str]) -> dict[str, Route]:
    """Every item unanswered; signalled when a result that may be its own said match."""
    signalled: set[str] = set()
    for result in results:
        if says_match(result):
            signalled |= _candidates(result, wanted)
    text = f"ambiguous answer: {why}"
    return {cid: Unanswered(text, match_signalled=cid in signalled) for cid in wanted}


def _candidates(result: object, wanted: list[str]) -> set[str]:
    """The items a result may belong to: those it names, else (no id, an unknown id) all."""
    echoed = _echoed(result.get("ContentId")) if isinstance(result, dict) else None
    if isinstance(echoed, str):
        named = {cid for cid in wanted if echoed in (cid, cid + FILENAME_SUFFIX)}
        if named:
            return named
    return set(wanted)
