"""The unit of work: one hash file on its way through the pipeline.

An item is created by ingest, waits in the batch buffer, travels in a batch to the API and
ends as a result. It is serialized as JSON (never pickle) and carries the hash bytes as
base64; ``repr`` never shows them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Item:
    """One hash file to scan. ``attempts`` counts API requests that carried it."""

    id: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int
    content_bucket: str
    content_key: str
    correlation_id: str
    hash_b64: str = field(repr=False)
    lane: str = "live"
    attempts: int = 0
    event_time: str | None = None
    enqueued_at: float = 0.0
    last_error: str | None = None
    # The content object's version as of ingest: quarantine acts on that version only.
    content_version_id: str | None = None
    content_etag: str | None = None
    #: When the hash file did not pin its content version and the evidence leaves more
    #: than one possible (pipeline/attribution.py): the other versions that may have been
    #: the scanned one, and why. Quarantine acts on each of them too.
    content_candidates: tuple[str, ...] = ()
    content_ambiguity: str | None = None
    #: Set when an answer that could not be read may have said this item matched (which
    #: request, and why it could not be read). It travels with the item through its
    #: retries: such an item ends ``match`` or ``unscannable``, never ``clean``.
    match_signal: str | None = None

    @classmethod
    def new(
        cls,
        *,
        bucket: str,
        key: str,
        version_id: str | None,
        etag: str | None,
        content_bucket: str,
        content_key: str,
        data: bytes,
        correlation_id: str,
        lane: str = "live",
        event_time: str | None = None,
        content_version_id: str | None = None,
        content_etag: str | None = None,
        content_candidates: tuple[str, ...] = (),
        content_ambiguity: str | None = None,
    ) -> Item:
        return cls(
            id=uuid.uuid4().hex,
            bucket=bucket,
            key=key,
            version_id=version_id,
            etag=etag,
            size=len(data),
            content_bucket=content_bucket,
            content_key=content_key,
            correlation_id=correlation_id,
            hash_b64=base64.b64encode(data).decode("ascii"),
            lane=lane,
            event_time=event_time,
            enqueued_at=time.time(),
            content_version_id=content_version_id,
            content_etag=content_etag,
            content_candidates=content_candidates,
            content_ambiguity=content_ambiguity,
        )

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.hash_b64)

    @property
    def hash_sha256(self) -> str:
        """A digest of the hash bytes: safe to store, used to find repeats."""
        return hashlib.sha256(self.data).hexdigest()

    def sent(self, error: str | None = None) -> Item:
        """This item after one more request carried it (``error``: what went wrong)."""
        return replace(self, attempts=self.attempts + 1, last_error=error or self.last_error)

    def signalled(self, note: str) -> Item:
        """This item remembering a match signal; the first one is kept, later ones add
        nothing on-call needs."""
        return self if self.match_signal else replace(self, match_signal=note)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Item:
        doc: dict[str, Any] = json.loads(raw)
        # Fields a newer release added are ignored, so old and new workers can overlap.
        known = {f.name for f in fields(cls)}
        values = {name: value for name, value in doc.items() if name in known}
        values["content_candidates"] = tuple(values.get("content_candidates") or ())
        return cls(**values)

    def log_fields(self) -> dict[str, Any]:
        """What may be logged about an item: locations and ids, never the hash bytes."""
        return {
            "item_id": self.id,
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "lane": self.lane,
            "attempts": self.attempts,
            "correlation_id": self.correlation_id,
        }
