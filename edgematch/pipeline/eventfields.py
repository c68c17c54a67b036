"""Reading the fields of one event record, with messages that say what is wrong. Pure.

Every reader raises :class:`BadRecord` for a field it cannot read; the message names the
field and never echoes more than a short, truncated piece of its value (:func:`short`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

from edgematch.infra.s3text import key_problem

_SHORT: Final = 60


class BadRecord(Exception):
    """One record is unreadable; becomes a ``bad_record`` SkippedRecord, or BadInput when
    nothing else in the message could be read."""


def decode_key(raw: str) -> str:
    # S3 encodes keys with quote_plus: a space arrives as '+', a literal '+' as '%2B'.
    # Strict decoding: a key that is not valid UTF-8 once decoded cannot be an S3 key.
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise BadRecord("key is not valid percent-encoded UTF-8") from None
    return _s3_key(key, raw)


def literal_key(raw: str) -> str:
    """A key sent as it is (Ceph RGW), not URL-encoded."""
    return _s3_key(raw, raw)


def _s3_key(key: str, raw: str) -> str:
    problem = key_problem(key)
    if problem:
        raise BadRecord(f"{problem}: {short(raw)}")
    return key


def bucket_name(bucket: Mapping[str, Any]) -> str:
    name = required_str(bucket, "name")
    if not name:
        raise BadRecord("empty bucket name")
    if any(c == "/" or not c.isprintable() or c.isspace() for c in name):
        raise BadRecord(f"bucket name {short(name)} has forbidden characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRecord("bucket name is not valid UTF-8") from None
    return name


def version_id(value: str | None) -> str | None:
    # "null" is the version of objects written while versioning was off or suspended;
    # it is overwritten in place, so it identifies no particular write. Treated as
    # unversioned: identity falls back to the ETag, and reads are pinned by the ETag.
    if not value or value == "null":
        return None
    return value


def etag(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip().strip('"')
    return stripped or None


def required_dict(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise BadRecord(f"{name} is {_describe(value)}, not an object")
    return value


def required_str(parent: Mapping[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str):
        raise BadRecord(f"{name} is {_describe(value)}, not a string")
    return value


def optional_str(parent: Mapping[str, Any], name: str, *, what: str = "a string") -> str | None:
    """The text field ``name`` of ``parent``, or None when absent. ``what`` names what the
    field should be, in the message of the BadRecord raised for any other JSON type."""
    value = parent.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRecord(f"{name} is a JSON {json_type(value)}, not {what}")


def optional_size(parent: Mapping[str, Any], name: str, *, text_ok: bool = False) -> int | None:
    """A size in bytes, or None when absent; ``text_ok``: also a string of decimal digits."""
    value = parent.get(name)
    if value is None:
        return None
    if text_ok and isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 20:
            raise BadRecord(f"{name} is not a plausible size")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRecord(f"{name} is not a non-negative whole number")
    return value


def optional_time(parent: Mapping[str, Any], name: str) -> str | None:
    value = parent.get(name)
    # moto's EventBridge emulation sends epoch seconds; normalise to ISO 8601.
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise BadRecord(f"{name} is out of range") from None
    return optional_str(parent, name, what="a time")


def _describe(value: Any) -> str:
    return "missing" if value is None else f"a JSON {json_type(value)}"


_JSON_TYPES: Final = (
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    # bool before int: True is an int to isinstance.
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def short(value: Any, limit: int = _SHORT) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
