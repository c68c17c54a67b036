"""Changing the allowlist, with a record of every change in the object store.

``edgematch allow add`` / ``remove`` write one JSON record per change (schema
``edgematch.allowlist-change/v1``: the action, the entry, who, why, when) to
``EDGEMATCH_REPORTS_BUCKET`` at ``allowlist/<yyyy>/<mm>/<dd>/<time>-<action>-<digest>.json``
*before* changing the list in Redis: a change that is not on record is not made, and the
records, never rewritten, are the list's history. Redis may be lost (a failover to a
replica behind, a restore); ``edgematch allow restore`` then rebuilds the list by replaying
the records in order. Until then a lost entry fails closed: its matches are quarantined and
reported again.

Raises ConfigurationError when no reports bucket is set (the record has nowhere to go),
edgematch errors from S3 and Redis otherwise.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any, Final

from edgematch.errors import ConfigurationError
from edgematch.pipeline.allowlist import Entry

if TYPE_CHECKING:
    from edgematch.runtime import Runtime

SCHEMA: Final = "edgematch.allowlist-change/v1"
PREFIX: Final = "allowlist/"
ADD, REMOVE = "add", "remove"


def record_key(action: str, entry: Entry) -> str:
    """Where the record of one change goes, sorted by time under its day. Pure."""
    at = dt.datetime.fromtimestamp(entry.at, dt.UTC)
    digest = hashlib.sha256(entry.field.encode("utf-8")).hexdigest()[:16]
    return f"{PREFIX}{at:%Y/%m/%d}/{at:%Y%m%dT%H%M%S.%f}Z-{action}-{digest}.json"


def record_doc(action: str, entry: Entry) -> dict[str, Any]:
    """The record of one change. Pure."""
    return {"schema": SCHEMA, "action": action, **entry.to_dict()}


def _bucket(rt: Runtime) -> str:
    bucket = rt.settings.reports_bucket
    if not bucket:
        raise ConfigurationError(
            "EDGEMATCH_REPORTS_BUCKET is required: every change to the allowlist is recorded "
            "there (allowlist/)"
        )
    return bucket


def change(rt: Runtime, action: str, entry: Entry) -> str:
    """Record the change in the object store, then make it in Redis; the record's key.

    Idempotent in effect: the same change made twice leaves the list the same (and two
    records, both true).
    """
    key = record_key(action, entry)
    rt.downstream.evidence.put_json(
        _bucket(rt), key, record_doc(action, entry), kms_key_id=rt.settings.reports_kms_key_id
    )
    if action == ADD:
        rt.allowlist.put(entry)
    else:
        rt.allowlist.delete(entry.kind, entry.value)
    return key


def replayed(records: list[dict[str, Any]]) -> list[Entry]:
    """The list the records (oldest first) leave behind. Pure."""
    entries: dict[str, Entry] = {}
    for doc in records:
        if doc.get("schema") != SCHEMA:
            continue
        entry = Entry.from_dict(doc)
        if doc.get("action") == ADD:
            entries[entry.field] = entry
        else:
            entries.pop(entry.field, None)
    return list(entries.values())


def restore(rt: Runtime) -> tuple[int, int]:
    """Rebuild the list in Redis from every record; (records read, entries now)."""
    bucket = _bucket(rt)
    store = rt.downstream.evidence
    keys = sorted(store.list_keys(bucket, PREFIX, limit=10_000_000))
    records = [doc for doc in (store.get_json(bucket, k) for k in keys) if doc is not None]
    return len(records), rt.allowlist.replace_all(replayed(records))
