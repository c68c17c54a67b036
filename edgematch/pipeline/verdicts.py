"""Which verdict stands: the rule for the recorded result and the content's tag. Pure.

SQS does not keep order, and a key can be uploaded again while its first upload is still
being scanned, so results arrive late, repeated and out of order. Two rules decide what
they may change:

**A verdict is written only for the version it was made on.** A result names the hash
file write it scanned (its version id, else its ETag) and the content version that hash
stands for (the content's version id, else its ETag as of ingest; unknown when ingest
could not tell — the hash file was gone or replaced before it could be read).

* The *recorded result* of a hash file (``edgematch result``) is replaced only by a result
  of the same hash write, or of the write that is the hash file's current one (one HEAD,
  asked only when the two differ): a late event for an older write never replaces the
  newer write's result. Redis keeps the recorded result for a window only; a result that
  finds none recorded is asked the same question when it is *late* (recording.is_late):
  when another write's result could have come and gone meanwhile.
* The *tag* goes on the content version the result scanned: by version id when there is
  one (S3 tags each version apart, so an older version's verdict stays on that version),
  otherwise on the current object only while it still holds the scanned bytes (its ETag,
  checked just before). A result whose content version is unknown tags nothing.

Why ask S3 which write is current rather than order events: S3's ``sequencer`` orders the
events of one key, but not every store sends one (moto does not), and event times do not
order two writes of the same millisecond. The store's own answer holds for every store.

**A verdict never weakens a stronger one** of the same version. Strength::

    pending < clean < allowlisted < unscannable < released < match < quarantined

``pending`` is the publication gate's tag, ``quarantined`` what quarantine's tag mode
writes. ``allowlisted`` is a match whose every match id (or whose hash) a person put on
the allowlist (pipeline/allowlist.py): a definite answer that lets the content be read,
above ``clean`` because the list did match. ``released`` is what ``edgematch release``
writes on a version a reviewer rejected the match of: above every verdict that lets
content be read, below ``match``, so a later match of that version (a redelivery, a
rescan) blocks it again — fail closed; allowlisting its match ids is what keeps it out.
``match`` and ``quarantined`` are never replaced by anything weaker — not by a late
``clean``, not by an ``unscannable`` — by any step of the pipeline. The ways down are
explicit on-call actions: a scan on the ``replay`` lane (``edgematch dlq replay``) or the
``backfill`` lane (``edgematch backfill --rescan``) may turn ``unscannable`` into
``clean`` or ``allowlisted``, the definite answer a person asked for; ``edgematch
release`` turns a rejected match into ``released`` (it writes the tag whatever it holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

PENDING, CLEAN, UNSCANNABLE, MATCH, QUARANTINED = (
    "pending",
    "clean",
    "unscannable",
    "match",
    "quarantined",
)
ALLOWLISTED, RELEASED = "allowlisted", "released"
#: Weakest first. A tag value not listed (a platform's own) ranks below all of them.
STRENGTH: Final[Mapping[str, int]] = {
    PENDING: 0,
    CLEAN: 1,
    ALLOWLISTED: 2,
    UNSCANNABLE: 3,
    RELEASED: 4,
    MATCH: 5,
    QUARANTINED: 6,
}
#: What an on-call lane's scan may put over ``unscannable``: a definite answer.
_DEFINITE_READABLE: Final = frozenset({CLEAN, ALLOWLISTED})
#: Lanes an on-call person starts (dlq replay, backfill): a scan there may clear unscannable.
ON_CALL_LANES: Final = frozenset({"replay", "backfill"})


def strength(verdict: str | None) -> int:
    """The rank of a verdict or tag value; -1 for none or one that is not edgematch's."""
    return STRENGTH.get(verdict or "", -1)


def may_replace(existing: str | None, verdict: str, *, lane: str) -> bool:
    """Whether ``verdict`` may take the place of ``existing`` for the same version.

    Yes when it is at least as strong; otherwise only ``clean`` or ``allowlisted`` over
    ``unscannable`` from an on-call lane. ``match`` and ``quarantined`` are never replaced
    by a weaker one.
    """
    if strength(verdict) >= strength(existing):
        return True
    return existing == UNSCANNABLE and verdict in _DEFINITE_READABLE and lane in ON_CALL_LANES


@dataclass(frozen=True)
class Facts:
    """What the rule needs to know of one result (incoming, or the one recorded)."""

    item_id: str
    #: The hash file write: ``v:<version id>``, ``etag:<etag>``, or "" when unknown.
    hash_version: str
    #: The content version: ``v:<version id>``, ``etag:<etag>``, or None when unknown.
    content_version: str | None
    verdict: str
    lane: str
    scanned_at: float

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Facts:
        """The facts of a result document (``Result.to_dict()`` or a recorded one)."""
        return cls(
            item_id=str(doc.get("item_id") or ""),
            hash_version=version_of(doc.get("version_id"), doc.get("etag")) or "",
            content_version=version_of(doc.get("content_version_id"), doc.get("content_etag")),
            verdict=str(doc.get("verdict") or ""),
            lane=str(doc.get("lane") or "live"),
            scanned_at=float(doc.get("scanned_at") or 0.0),
        )


@dataclass(frozen=True)
class Decision:
    """What one result may change. ``why`` says it in a few words, for the log."""

    record: bool
    tag: bool
    why: str


def needs_hash_check(new: Facts, recorded: Facts | None, *, late: bool = False) -> bool:
    """Whether :func:`decide` needs to know if ``new``'s hash write is the current one:
    when another write's result is recorded, or when none is and ``new`` is late — the
    other write's result may have been recorded and left Redis's hot window since."""
    if recorded is None:
        return late
    return recorded.item_id != new.item_id and not (
        new.hash_version and new.hash_version == recorded.hash_version
    )


def decide(
    new: Facts,
    recorded: Facts | None,
    *,
    hash_current: bool | None,
    content_reachable: bool,
) -> Decision:
    """Whether ``new`` replaces the recorded result of its hash file, and tags its content.

    ``hash_current``: whether ``new``'s hash write is the hash file's current one (None
    when not asked, see :func:`needs_hash_check`, or when it could not be told — the
    hash file is gone). ``content_reachable``: whether a tag write reaches exactly the
    content version ``new`` scanned (it has a version id, or the current object still has
    its ETag). The tag itself is written only if :func:`may_replace` allows it over the
    value the version carries then.
    """
    tag = new.content_version is not None and content_reachable
    record, why = _record(new, recorded, hash_current=hash_current)
    return Decision(record=record, tag=tag, why=why)


def _record(new: Facts, recorded: Facts | None, *, hash_current: bool | None) -> tuple[bool, str]:
    if recorded is None:
        # Asked only of a late result: False means another write is the hash file's now.
        return (False, "superseded write") if hash_current is False else (True, "first result")
    if recorded.item_id == new.item_id:
        return False, "repeat"
    if not (new.hash_version and new.hash_version == recorded.hash_version):
        return (True, "current write") if hash_current else (False, "superseded write")
    if not may_replace(recorded.verdict, new.verdict, lane=new.lane):
        return False, f"{recorded.verdict} stands"
    if new.scanned_at < recorded.scanned_at and strength(new.verdict) <= strength(recorded.verdict):
        return False, "older scan of the same write"
    return True, "same write"


def version_of(version_id: Any, etag: Any) -> str | None:
    """How a version is named in :class:`Facts`: ``v:<id>``, ``etag:<etag>``, None."""
    if version_id:
        return f"v:{version_id}"
    if etag:
        return f"etag:{etag}"
    return None
