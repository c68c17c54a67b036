"""Results: one versioned JSON document per scanned item.

A :class:`Result` is what the match step publishes to the ``results`` queue and what every
downstream consumer reads (quarantine, reporting, the verdict log, ``edgematch result``).
The schema is versioned: fields added after v1 have defaults, and fields a newer release
added are ignored, so old and new workers can overlap. How a result is recorded, tagged and
handed on is :mod:`edgematch.pipeline.recording`; where it is kept,
:mod:`edgematch.pipeline.resultstore`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgematch.pipeline import verdicts
from edgematch.pipeline.items import Item

SCHEMA = "edgematch.result/v1"
CLEAN, MATCH, UNSCANNABLE = verdicts.CLEAN, verdicts.MATCH, verdicts.UNSCANNABLE
ALLOWLISTED = verdicts.ALLOWLISTED


@dataclass(frozen=True)
class Result:
    """The verdict on one hash file, in the shape every downstream consumer reads."""

    item_id: str
    verdict: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    content_bucket: str
    content_key: str
    is_match: bool
    correlation_id: str
    attempts: int
    lane: str = "live"
    match_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    violations: tuple[str, ...] = ()
    tracking_id: str | None = None
    request_id: str | None = None
    status_code: int | None = None
    status_description: str | None = None
    reason: str | None = None
    event_time: str | None = None
    enqueued_at: float = 0.0
    scanned_at: float = field(default_factory=time.time)
    schema: str = SCHEMA
    # Added after v1 shipped; defaults keep older documents readable.
    #: The content object's version (or ETag) as of ingest: what quarantine acts on.
    content_version_id: str | None = None
    content_etag: str | None = None
    #: SHA-256 of the hash bytes (not the bytes): the match cache's key.
    hash_sha256: str | None = None
    #: True when the verdict came from the match cache, without an API call.
    from_cache: bool = False
    #: Other content versions that may have been the scanned one, and why (items.py).
    content_candidates: tuple[str, ...] = ()
    content_ambiguity: str | None = None

    @classmethod
    def for_item(
        cls,
        item: Item,
        *,
        verdict: str,
        is_match: bool = False,
        match_ids: tuple[str, ...] = (),
        sources: tuple[str, ...] = (),
        violations: tuple[str, ...] = (),
        tracking_id: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        status_description: str | None = None,
        reason: str | None = None,
    ) -> Result:
        return cls(
            item_id=item.id,
            verdict=verdict,
            bucket=item.bucket,
            key=item.key,
            version_id=item.version_id,
            etag=item.etag,
            content_bucket=item.content_bucket,
            content_key=item.content_key,
            is_match=is_match,
            correlation_id=item.correlation_id,
            attempts=item.attempts,
            lane=item.lane,
            match_ids=match_ids,
            sources=sources,
            violations=violations,
            tracking_id=tracking_id,
            request_id=request_id,
            status_code=status_code,
            status_description=status_description,
            reason=reason,
            event_time=item.event_time,
            enqueued_at=item.enqueued_at,
            content_version_id=item.content_version_id,
            content_etag=item.content_etag,
            hash_sha256=item.hash_sha256 if item.hash_b64 else None,
            content_candidates=item.content_candidates,
            content_ambiguity=item.content_ambiguity,
        )

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value or a tuple of strings: a shallow copy is the whole
        # document (dataclasses.asdict deep-copies each value, for nothing here).
        doc = {f.name: getattr(self, f.name) for f in _FIELDS}
        for name in _LISTS:
            doc[name] = list(doc[name])
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Result:
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"unknown result schema {doc.get('schema')!r}")
        # Fields a newer release added are ignored, so old and new workers can overlap.
        known = {f.name for f in dataclasses.fields(cls)}
        values = {name: value for name, value in doc.items() if name in known}
        for name in _LISTS:
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


_FIELDS = dataclasses.fields(Result)
_LISTS = ("match_ids", "sources", "violations", "content_candidates")

#: What takes every recorded result on from here (quarantine, reporting …).
HandOn = Callable[[Result], None]
