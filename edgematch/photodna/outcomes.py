"""What a PhotoDNA request carries and what its answer says: plain values.

:class:`HashItem` goes out; a :class:`BatchResponse` with one :class:`ItemOutcome` per
item comes back. Built by :mod:`edgematch.photodna.wire`, read by the match step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgematch.photodna.status import STATUS_OK, ErrorForItem

__all__ = ["BatchResponse", "HashItem", "ItemOutcome", "MatchFlag", "unique"]


@dataclass(frozen=True)
class HashItem:
    """One hash to match. ``content_id`` is an opaque id made by the caller."""

    content_id: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class MatchFlag:
    """One source that matched: its name, violation codes and match ids."""

    source: str
    violations: tuple[str, ...]
    match_ids: tuple[str, ...]


@dataclass(frozen=True)
class ItemOutcome:
    """The answer for one item. ``error`` is None exactly when ``status_code`` is 3000.

    ``match_signalled``: a result that may be this item's said it matched. A verdict
    (``error`` None) has it exactly when it is a match, so a clean verdict with a match
    signal cannot be built; an unanswered item keeps it for the match step to remember.
    Raises ValueError for a combination that breaks these rules (our bug).
    """

    content_id: str
    status_code: int
    description: str
    is_match: bool
    flags: tuple[MatchFlag, ...]
    error: ErrorForItem | None
    match_signalled: bool = False

    def __post_init__(self) -> None:
        answered = self.error is None
        if answered != (self.status_code == STATUS_OK):
            raise ValueError(f"outcome of {self.content_id}: an error exactly when not 3000")
        if self.is_match and not answered:
            raise ValueError(f"outcome of {self.content_id}: a match with an error")
        if answered and self.match_signalled != self.is_match:
            raise ValueError(f"outcome of {self.content_id}: a verdict contradicting its signal")

    @property
    def match_ids(self) -> tuple[str, ...]:
        """Every match id of every flag, de-duplicated, in the order the API gave them."""
        return unique(mid for flag in self.flags for mid in flag.match_ids)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source that matched, de-duplicated, in order."""
        return unique(flag.source for flag in self.flags if flag.source)

    @property
    def violations(self) -> tuple[str, ...]:
        """Every violation code of every flag, de-duplicated, in order."""
        return unique(v for flag in self.flags for v in flag.violations)


@dataclass(frozen=True)
class BatchResponse:
    """A whole-request answer. ``outcomes`` holds every requested content id."""

    tracking_id: str | None
    request_id: str | None
    outcomes: dict[str, ItemOutcome]
    http_status: int
    elapsed_s: float


def unique(values: Iterable[str]) -> tuple[str, ...]:
    """De-duplicated, order kept, empty strings dropped."""
    return tuple(dict.fromkeys(value for value in values if value))
