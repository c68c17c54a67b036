"""PhotoDNA status codes: the one table every decision about a code reads. Pure.

A code the table does not list is permanent: retrying what we cannot name would only
repeat it. :func:`classify_item_status` turns one item's code into None (OK), an
:class:`~edgematch.errors.ItemTransient` (retry the item) or an
:class:`~edgematch.errors.ItemRejected` (dead-letter it); whole-request codes are read
from the same table by :mod:`edgematch.photodna.wire`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Final, Literal

from edgematch.errors import ItemRejected, ItemTransient, PermanentError, TransientError
from edgematch.photodna.servertext import clean

__all__ = [
    "STATUS_OK",
    "STATUS_TABLE",
    "ErrorForItem",
    "StatusKind",
    "classify_item_status",
    "status_code",
]

STATUS_OK: Final = 3000

StatusKind = Literal["ok", "transient", "permanent"]

#: THE table: PhotoDNA status code -> (kind, description). Every decision about a status
#: code, per item or for the whole request, reads it; a code not listed is permanent.
STATUS_TABLE: Final[Mapping[int, tuple[StatusKind, str]]] = types.MappingProxyType(
    {
        3000: ("ok", "OK"),
        3002: ("permanent", "Invalid or missing request parameter(s)"),
        3004: ("transient", "Unknown scenario or unhandled error"),
        3206: ("permanent", "Could not be verified"),
        3208: ("permanent", "Size out of range"),
        # Our bug (more than 5 items): never retried as is.
        3209: ("permanent", "Request Size Exceeded"),
    }
)

ErrorForItem = TransientError | PermanentError


def classify_item_status(code: int, description: str) -> ErrorForItem | None:
    """Map one status code to None (OK), ItemTransient or ItemRejected. Never raises.

    Decided by :data:`STATUS_TABLE`; a code it does not list is permanent
    ("unknown status NNNN"). ``description`` is the server's text, used in the message
    (control characters stripped, truncated); the table's text when it is empty.
    """
    text = clean(description)
    entry = STATUS_TABLE.get(code)
    if entry is None:
        suffix = f": {text}" if text else ""
        return ItemRejected(f"unknown status {code}{suffix}", status_code=code)
    kind, table_text = entry
    if kind == "ok":
        return None
    message = f"status {code}: {text or table_text}"
    if kind == "transient":
        return ItemTransient(message, status_code=code)
    return ItemRejected(message, status_code=code)


def status_code(value: object) -> int | None:
    """A ``Status.Code`` as the answer wrote it (a number or a numeric string), or None
    when it is missing or not a whole number. Never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
