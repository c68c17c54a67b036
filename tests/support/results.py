"""A match result as the match step records it, for the tests of what follows it."""

from __future__ import annotations

from typing import Any

from edgematch.pipeline.results import MATCH, Result


def match_result(**overrides: Any) -> Result:
    """A matched upload of ``uploads/photos/cat.jpg`` (hash file ``photos/cat.jpg.bin``),
    every field filled in: item ``item-1``, hash version ``hash-v1`` / ETag ``hash-etag``,
    content version ``content-v1`` / ETag ``content-etag``, correlation ``corr-1``, match
    ids ``m1`` and ``m2`` from source ``sandbox``, violation ``A1``, tracking ``track-1``.
    ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "item_id": "item-1",
        "verdict": MATCH,
        "bucket": "uploads",
        "key": "photos/cat.jpg.bin",
        "version_id": "hash-v1",
        "etag": "hash-etag",
        "content_bucket": "uploads",
        "content_key": "photos/cat.jpg",
        "content_version_id": "content-v1",
        "content_etag": "content-etag",
        "is_match": True,
        "correlation_id": "corr-1",
        "attempts": 1,
        "match_ids": ("m1", "m2"),
        "sources": ("sandbox",),
        "violations": ("A1",),
        "tracking_id": "track-1",
    }
    fields.update(overrides)
    return Result(**fields)
