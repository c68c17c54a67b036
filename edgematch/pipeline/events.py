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
from typing import Any, Final

from edgematch.errors import BadInput
from edgematch.infra.s3text import key_problem
from edgematch.pipeline.eventfields import BadRecord, json_type, short
from edgematch.pipeline.eventrecords import (
    ObjectCreated,
    SkippedRecord,
    eventbridge_event,
    s3_record,
)

# One record's shapes and fields are read in eventrecords.py and eventfields.py; the
# objects they make are re-exported here for the callers that name them through events.
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

_SNS_CONTROL_TYPES: Final = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})


@dataclass(frozen=True)
class ParsedMessage:
    """Everything one queue message announced, and what was skipped from it."""

    objects: tuple[ObjectCreated, ...]
    skipped: tuple[SkippedRecord, ...]


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
                SkippedRecord("bucket_not_allowed", f"bucket {short(obj.bucket)} not allowed")
            )
        elif not obj.key.endswith(suffix):
            skipped.append(
                SkippedRecord("suffix", f"key {short(obj.key)} does not end with {suffix!r}")
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
        raise ValueError(f"expected s3://bucket/key, got {short(uri)}")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket name in {short(uri)}")
    if any(c.isspace() or not c.isprintable() for c in bucket):
        raise ValueError(f"bucket name in {short(uri)} has whitespace or control characters")
    if key:
        problem = key_problem(key)
        if problem:
            raise ValueError(f"{problem}: {short(uri)}")
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
        raise BadInput(f"message is a JSON {json_type(document)}, not an object")

    if not via_sns and "Type" in document and ("Message" in document or "TopicArn" in document):
        return _parse_sns(document)

    if document.get("Event") == "s3:TestEvent":
        bucket = document.get("Bucket")
        where = f" for bucket {short(bucket)}" if isinstance(bucket, str) else ""
        return _only_skipped("test_event", f"s3:TestEvent{where}")

    if "Records" in document:
        return _parse_records(document["Records"], via_sns=via_sns)

    if "detail-type" in document:
        return _one(lambda: eventbridge_event(document))

    keys = ", ".join(short(str(k), 20) for k in list(document)[:5])
    raise BadInput(
        "not an S3 notification, SNS notification or EventBridge event "
        f"(top-level keys: {keys or 'none'})"
    )


def _parse_sns(document: Mapping[str, Any]) -> ParsedMessage:
    kind = document.get("Type")
    if isinstance(kind, str) and kind in _SNS_CONTROL_TYPES:
        return _only_skipped("not_object_created", f"SNS {kind}")
    if kind != "Notification":
        raise BadInput(f"SNS message of unexpected Type {short(kind)}")
    message = document.get("Message")
    if not isinstance(message, str):
        raise BadInput(f"SNS Message is a JSON {json_type(message)}, not a string")
    inner = _json(message, "SNS Message")
    return _parse_document(inner, via_sns=True)


def _parse_records(records: Any, *, via_sns: bool) -> ParsedMessage:
    if not isinstance(records, list):
        raise BadInput(f"Records is a JSON {json_type(records)}, not a list")
    if not records:
        raise BadInput("Records is empty")
    objects: list[ObjectCreated] = []
    skipped: list[SkippedRecord] = []
    for index, record in enumerate(records):
        try:
            result = s3_record(record, via_sns=via_sns)
        except BadRecord as exc:
            skipped.append(SkippedRecord("bad_record", f"record {index}: {exc}"))
            continue
        if isinstance(result, ObjectCreated):
            objects.append(result)
        else:
            skipped.append(result)
    return ParsedMessage(objects=tuple(objects), skipped=tuple(skipped))


def _one(parse: Callable[[], ObjectCreated | SkippedRecord]) -> ParsedMessage:
    try:
        result = parse()
    except BadRecord as exc:
        return _only_skipped("bad_record", f"event: {exc}")
    if isinstance(result, ObjectCreated):
        return ParsedMessage(objects=(result,), skipped=())
    return ParsedMessage(objects=(), skipped=(result,))


def _only_skipped(reason: str, detail: str) -> ParsedMessage:
    return ParsedMessage(objects=(), skipped=(SkippedRecord(reason, detail),))
