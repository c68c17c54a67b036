"""Parse what arrives on the intake queue into the objects it announces. Pure: no I/O.

Accepted message shapes:

* S3 event notifications sent straight to SQS (``{"Records": [...]}``), also from MinIO
  and Ceph (any ``eventSource`` ending in ``:s3``); several records per message. MinIO's
  webhook body adds ``EventName`` and ``Key`` around the same ``Records``; Ceph RGW's adds
  ``opaqueData``, ``eventId`` and object ``metadata``/``tags`` to each record;
* the same wrapped in an SNS notification (``{"Type": "Notification", "Message": "..."}``);
* EventBridge ``Object Created`` events from ``aws.s3``;
* ``s3:TestEvent`` (sent when notifications are configured), directly or inside SNS:
  skipped, not an error.

Object keys arrive URL-encoded (``quote_plus``) from S3 and MinIO and are decoded; Ceph RGW
sends them as they are (``rgw_notify.cc`` copies the object's name into the record), so a
``ceph:s3`` key is taken literally: decoding it would turn ``a+b.bin`` into ``a b.bin``.
A Ceph record's ``size`` written as a decimal string (as Ceph's documentation shows it) is
read as the number it names; from any other sender a string size is refused.

Raised: :class:`~edgematch.errors.BadInput` when the whole message is unusable
(too large, not JSON, not one of the shapes above, or every record in it malformed).
A malformed record next to good ones does not raise: it comes back as a
:class:`SkippedRecord` with reason ``bad_record`` so the caller can dead-letter it.
:func:`parse_s3_uri` raises :class:`ValueError`. Messages never echo more than a short,
truncated piece of the body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote_plus

from edgematch.errors import BadInput
from edgematch.infra.s3text import key_problem

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ObjectCreated",
    "ParsedMessage",
    "SkippedRecord",
    "parse_message",
    "parse_s3_uri",
    "select",
]

#: The SQS maximum message size; larger bodies cannot be a genuine notification.
DEFAULT_MAX_MESSAGE_BYTES: Final = 262_144

# Only writes that create new content. MinIO also sends s3:ObjectCreated:PutTagging,
# PutRetention, PutLegalHold and DeleteTagging, which change no bytes; reacting to
# PutTagging in particular could loop on our own tag writes.
_CREATED_NAMES: Final = frozenset(
    {
        "ObjectCreated:Put",
        "ObjectCreated:Post",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
    }
)
# EventBridge names the API call in detail.reason; map it to the notification names so
# that event_name means the same thing whatever the transport.
_EVENTBRIDGE_REASONS: Final = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}
# Senders that put the object key in the record as it is, not URL-encoded (and may write
# the size as a string).
_RAW_KEY_SOURCES: Final = frozenset({"ceph"})
_SNS_CONTROL_TYPES: Final = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
_SHORT: Final = 60


@dataclass(frozen=True)
class ObjectCreated:
    """One object that an event says was written."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int | None
    event_time: str | None
    event_name: str
    sequencer: str | None
    #: The transport the event came by: "s3", "sns", "eventbridge", "minio", "ceph" …
    source: str

    @property
    def identity(self) -> str:
        """A stable idempotency identity for this write of this object.

        The version id wins over the ETag: it is unique per write and names bytes that
        can still be fetched after the key is overwritten, whereas an ETag is a digest
        of the content (equal for two writes of the same bytes, dependent on the part
        layout for multipart uploads, not an MD5 at all under SSE-KMS) and says nothing
        about which write it was. Bucket names and keys cannot contain NUL (keys with
        NUL are refused), so the NUL separators keep the identity unambiguous.
        """
        if self.version_id:
            tail = self.version_id
        elif self.etag:
            tail = f"etag:{self.etag}"
        else:
            tail = "unversioned"
        return f"{self.bucket}\x00{self.key}\x00{tail}"


@dataclass(frozen=True)
class SkippedRecord:
    """A record, or a whole message, that announces nothing to scan."""

    #: "test_event", "not_object_created", "suffix", "bucket_not_allowed", "bad_record"
    reason: str
    #: Short and safe to log: never more than a truncated key or field value.
    detail: str


@dataclass(frozen=True)
class ParsedMessage:
    """Everything one queue message announced, and what was skipped from it."""

    objects: tuple[ObjectCreated, ...]
    skipped: tuple[SkippedRecord, ...]


class _BadRecord(Exception):
    """One record is unreadable; internal, becomes a SkippedRecord or BadInput."""


def parse_message(
    body: str | bytes, *, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> ParsedMessage:
    """Parse one queue message. Raises BadInput when nothing at all can be read from it."""
    document = _load(body, max_bytes)
    parsed = _parse_document(document, via_sns=False)
    if (
        not parsed.objects
        and parsed.skipped
        and all(s.reason == "bad_record" for s in parsed.skipped)
    ):
        first = parsed.skipped[0].detail
        more = len(parsed.skipped) - 1
        raise BadInput(first + (f" (and {more} more bad records)" if more else ""))
    return parsed


def select(
    parsed: ParsedMessage, *, suffix: str, allowed_buckets: Collection[str] = ()
) -> ParsedMessage:
    """Keep objects in an allowed bucket (empty: all) whose key ends with ``suffix``.

    The others move to ``skipped`` with reason ``bucket_not_allowed`` or ``suffix``.
    The suffix match is case-sensitive, like S3 keys. Raises ValueError on an empty
    suffix, which would select every object in the bucket.
    """
    if not suffix:
        raise ValueError("suffix must not be empty")
    allowed = frozenset(allowed_buckets)
    kept: list[ObjectCreated] = []
    skipped = list(parsed.skipped)
    for obj in parsed.objects:
        if allowed and obj.bucket not in allowed:
            skipped.append(
                SkippedRecord("bucket_not_allowed", f"bucket {_short(obj.bucket)} not allowed")
            )
        elif not obj.key.endswith(suffix):
            skipped.append(
                SkippedRecord("suffix", f"key {_short(obj.key)} does not end with {suffix!r}")
            )
        else:
            kept.append(obj)
    return ParsedMessage(objects=tuple(kept), skipped=tuple(skipped))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key/with/slashes`` into ``("bucket", "key/with/slashes")``.

    The key may be empty (``s3://bucket`` or ``s3://bucket/``, a whole bucket or prefix).
    The key is taken literally, not percent-decoded, as the AWS CLI does. Raises
    ValueError with a clear message on anything else.
    """
    if not isinstance(uri, str):
        raise ValueError(f"expected an s3:// URI string, got {type(uri).__name__}")
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "s3":
        raise ValueError(f"expected s3://bucket/key, got {_short(uri)}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket name in {_short(uri)}")
    if any(c.isspace() or not c.isprintable() for c in bucket):
        raise ValueError(f"bucket name in {_short(uri)} has whitespace or control characters")
    if key:
        problem = key_problem(key)
        if problem:
            raise ValueError(f"{problem}: {_short(uri)}")
    return bucket, key


# --- internals -------------------------------------------------------------------------


def _load(body: str | bytes, max_bytes: int) -> Any:
    if isinstance(body, bytes | bytearray):
        if len(body) > max_bytes:
            raise BadInput(f"message is {len(body)} bytes, over the limit of {max_bytes}")
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise BadInput("message is not UTF-8 text") from None
    elif isinstance(body, str):
        # A character is at least one byte: the cheap check first, then the exact one.
        if len(body) > max_bytes:
            raise BadInput(f"message is over the limit of {max_bytes} bytes")
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise BadInput(f"message is {size} bytes, over the limit of {max_bytes}")
        text = body
    else:
        raise BadInput(f"message body is a {type(body).__name__}, not text")
    if not text.strip():
        raise BadInput("empty message")
    return _json(text, "message")


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} is not JSON: {exc.msg} at char {exc.pos}") from None
    except (ValueError, RecursionError):
        # int() digit limit, or nesting deeper than the interpreter's recursion limit.
        raise BadInput(f"{what} is JSON too deeply nested or with too large a number") from None


def _parse_document(document: Any, *, via_sns: bool) -> ParsedMessage:
    if not isinstance(document, dict):
        raise BadInput(f"message is a JSON {_json_type(document)}, not an object")

    if not via_sns and "Type" in document and ("Message" in document or "TopicArn" in document):
        return _parse_sns(document)

    if document.get("Event") == "s3:TestEvent":
        bucket = document.get("Bucket")
        where = f" for bucket {_short(bucket)}" if isinstance(bucket, str) else ""
        return _only_skipped("test_event", f"s3:TestEvent{where}")

    if "Records" in document:
        return _parse_records(document["Records"], via_sns=via_sns)

    if "detail-type" in document:
        return _one(lambda: _eventbridge(document))

    keys = ", ".join(_short(str(k), 20) for k in list(document)[:5])
    raise BadInput(
        "not an S3 notification, SNS notification or EventBridge event "
        f"(top-level keys: {keys or 'none'})"
    )


def _parse_sns(document: Mapping[str, Any]) -> ParsedMessage:
    kind = document.get("Type")
    if isinstance(kind, str) and kind in _SNS_CONTROL_TYPES:
        return _only_skipped("not_object_created", f"SNS {kind}")
    if kind != "Notification":
        raise BadInput(f"SNS message of unexpected Type {_short(kind)}")
    message = document.get("Message")
    if not isinstance(message, str):
        raise BadInput(f"SNS Message is a JSON {_json_type(message)}, not a string")
    inner = _json(message, "SNS Message")
    return _parse_document(inner, via_sns=True)


def _parse_records(records: Any, *, via_sns: bool) -> ParsedMessage:
    if not isinstance(records, list):
        raise BadInput(f"Records is a JSON {_json_type(records)}, not a list")
    if not records:
        raise BadInput("Records is empty")
    objects: list[ObjectCreated] = []
    skipped: list[SkippedRecord] = []
    for index, record in enumerate(records):
        try:
            result = _s3_record(record, via_sns=via_sns)
        except _BadRecord as exc:
            skipped.append(SkippedRecord("bad_record", f"record {index}: {exc}"))
            continue
        if isinstance(result, ObjectCreated):
            objects.append(result)
        else:
            skipped.append(result)
    return ParsedMessage(objects=tuple(objects), skipped=tuple(skipped))


def _s3_record(record: Any, *, via_sns: bool) -> ObjectCreated | SkippedRecord:
    if not isinstance(record, dict):
        raise _BadRecord(f"is a JSON {_json_type(record)}, not an object")
    event_source = _required_str(record, "eventSource")
    if not event_source.endswith(":s3"):
        raise _BadRecord(f"eventSource {_short(event_source)} is not an S3 source")
    # MinIO and Ceph may prefix the name with "s3:", as in their configuration syntax.
    event_name = _required_str(record, "eventName").removeprefix("s3:")
    if event_name not in _CREATED_NAMES:
        return SkippedRecord("not_object_created", f"eventName {_short(event_name)}")
    s3 = _required_dict(record, "s3")
    bucket = _bucket_name(_required_dict(s3, "bucket"))
    obj = _required_dict(s3, "object")
    vendor = event_source.removesuffix(":s3")
    raw_key = _required_str(obj, "key")
    return ObjectCreated(
        bucket=bucket,
        key=_literal_key(raw_key) if vendor in _RAW_KEY_SOURCES else _decode_key(raw_key),
        version_id=_version_id(_optional_str(obj, "versionId")),
        etag=_etag(_optional_str(obj, "eTag")),
        size=_optional_size(obj, "size", text_ok=vendor in _RAW_KEY_SOURCES),
        event_time=_optional_time(record, "eventTime"),
        event_name=event_name,
        sequencer=_optional_str(obj, "sequencer") or None,
        source="sns" if via_sns else ("s3" if vendor == "aws" else vendor),
    )


def _eventbridge(event: Mapping[str, Any]) -> ObjectCreated | SkippedRecord:
    detail_type = _required_str(event, "detail-type")
    source = event.get("source")
    if source != "aws.s3" or detail_type != "Object Created":
        return SkippedRecord(
            "not_object_created", f"{_short(source, 20)} {_short(detail_type, 40)}"
        )
    detail = _required_dict(event, "detail")
    bucket = _bucket_name(_required_dict(detail, "bucket"))
    obj = _required_dict(detail, "object")
    reason = _optional_str(detail, "reason")
    event_name = _EVENTBRIDGE_REASONS.get(reason or "", f"ObjectCreated:{reason or 'unknown'}")
    # EventBridge spells it "etag"; moto's emulation spells it "eTag". Accept both.
    etag = _optional_str(obj, "etag") if "etag" in obj else _optional_str(obj, "eTag")
    return ObjectCreated(
        bucket=bucket,
        # Decoded like notification keys. AWS documents the notification key as
        # URL-encoded; for EventBridge it documents no encoding either way, and we treat
        # both transports alike so one S3 key maps to one identity. If real EventBridge
        # keys turn out to be raw, keys containing '+' or '%XX' will be misread here
        # (visible as ObjectMissing, never as reading the wrong bytes under IfMatch).
        key=_decode_key(_required_str(obj, "key")),
        version_id=_version_id(_optional_str(obj, "version-id")),
        etag=_etag(etag),
        size=_optional_size(obj, "size"),
        event_time=_optional_time(event, "time"),
        event_name=event_name,
        sequencer=_optional_str(obj, "sequencer") or None,
        source="eventbridge",
    )


def _one(parse: Callable[[], ObjectCreated | SkippedRecord]) -> ParsedMessage:
    try:
        result = parse()
    except _BadRecord as exc:
        return _only_skipped("bad_record", f"event: {exc}")
    if isinstance(result, ObjectCreated):
        return ParsedMessage(objects=(result,), skipped=())
    return ParsedMessage(objects=(), skipped=(result,))


def _only_skipped(reason: str, detail: str) -> ParsedMessage:
    return ParsedMessage(objects=(), skipped=(SkippedRecord(reason, detail),))


def _decode_key(raw: str) -> str:
    # S3 encodes keys with quote_plus: a space arrives as '+', a literal '+' as '%2B'.
    # Strict decoding: a key that is not valid UTF-8 once decoded cannot be an S3 key.
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise _BadRecord("key is not valid percent-encoded UTF-8") from None
    problem = key_problem(key)
    if problem:
        raise _BadRecord(f"{problem}: {_short(raw)}")
    return key


def _literal_key(raw: str) -> str:
    problem = key_problem(raw)
    if problem:
        raise _BadRecord(f"{problem}: {_short(raw)}")
    return raw


def _bucket_name(bucket: Mapping[str, Any]) -> str:
    name = _required_str(bucket, "name")
    if not name:
        raise _BadRecord("empty bucket name")
    if any(c == "/" or not c.isprintable() or c.isspace() for c in name):
        raise _BadRecord(f"bucket name {_short(name)} has forbidden characters")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _BadRecord("bucket name is not valid UTF-8") from None
    return name


def _version_id(value: str | None) -> str | None:
    # "null" is the version of objects written while versioning was off or suspended;
    # it is overwritten in place, so it identifies no particular write. Treated as
    # unversioned: identity falls back to the ETag, and reads are pinned by the ETag.
    if not value or value == "null":
        return None
    return value


def _etag(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip().strip('"')
    return stripped or None


def _required_dict(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise _BadRecord(f"{name} is {_describe(value)}, not an object")
    return value


def _required_str(parent: Mapping[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str):
        raise _BadRecord(f"{name} is {_describe(value)}, not a string")
    return value


def _optional_str(parent: Mapping[str, Any], name: str) -> str | None:
    value = parent.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _BadRecord(f"{name} is a JSON {_json_type(value)}, not a string")


def _optional_size(parent: Mapping[str, Any], name: str, *, text_ok: bool = False) -> int | None:
    value = parent.get(name)
    if value is None:
        return None
    if text_ok and isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 20:
            raise _BadRecord(f"{name} is not a plausible size")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadRecord(f"{name} is not a non-negative whole number")
    return value


def _optional_time(parent: Mapping[str, Any], name: str) -> str | None:
    value = parent.get(name)
    if value is None or isinstance(value, str):
        return value
    # moto's EventBridge emulation sends epoch seconds; normalise to ISO 8601.
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC).isoformat()
        except (OverflowError, OSError, ValueError):
            raise _BadRecord(f"{name} is out of range") from None
    raise _BadRecord(f"{name} is a JSON {_json_type(value)}, not a time")


def _describe(value: Any) -> str:
    return "missing" if value is None else f"a JSON {_json_type(value)}"


_JSON_TYPES: Final = (
    (bool, "boolean"),
    (int, "number"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    # bool before int: True is an int to isinstance.
    for kind, name in _JSON_TYPES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _short(value: Any, limit: int = _SHORT) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
