"""One record of an event message → the object it announces, or why it is skipped. Pure.

Two record shapes: an S3 event notification record (from S3, MinIO or Ceph) and an
EventBridge ``Object Created`` event. A record that cannot be read raises
:class:`~edgematch.pipeline.eventfields.BadRecord`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from edgematch.pipeline import eventfields as fields

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


def s3_record(record: Any, *, via_sns: bool) -> ObjectCreated | SkippedRecord:
    """One S3 event notification record (S3, MinIO, Ceph); ``via_sns``: it came inside an
    SNS notification. Raises BadRecord."""
    if not isinstance(record, dict):
        raise fields.BadRecord(f"is a JSON {fields.json_type(record)}, not an object")
    event_source = fields.required_str(record, "eventSource")
    if not event_source.endswith(":s3"):
        raise fields.BadRecord(f"eventSource {fields.short(event_source)} is not an S3 source")
    # MinIO and Ceph may prefix the name with "s3:", as in their configuration syntax.
    event_name = fields.required_str(record, "eventName").removeprefix("s3:")
    if event_name not in _CREATED_NAMES:
        return SkippedRecord("not_object_created", f"eventName {fields.short(event_name)}")
    s3 = fields.required_dict(record, "s3")
    bucket = fields.bucket_name(fields.required_dict(s3, "bucket"))
    obj = fields.required_dict(s3, "object")
    vendor = event_source.removesuffix(":s3")
    raw = vendor in _RAW_KEY_SOURCES
    key = fields.required_str(obj, "key")
    return ObjectCreated(
        bucket=bucket,
        key=fields.literal_key(key) if raw else fields.decode_key(key),
        version_id=fields.version_id(fields.optional_str(obj, "versionId")),
        etag=fields.etag(fields.optional_str(obj, "eTag")),
        size=fields.optional_size(obj, "size", text_ok=raw),
        event_time=fields.optional_time(record, "eventTime"),
        event_name=event_name,
        sequencer=fields.optional_str(obj, "sequencer") or None,
        source="sns" if via_sns else ("s3" if vendor == "aws" else vendor),
    )


def eventbridge_event(event: Mapping[str, Any]) -> ObjectCreated | SkippedRecord:
    """One EventBridge event; only ``Object Created`` from ``aws.s3`` announces an object.
    Raises BadRecord."""
    detail_type = fields.required_str(event, "detail-type")
    source = event.get("source")
    if source != "aws.s3" or detail_type != "Object Created":
        return SkippedRecord(
            "not_object_created", f"{fields.short(source, 20)} {fields.short(detail_type, 40)}"
        )
    detail = fields.required_dict(event, "detail")
    bucket = fields.bucket_name(fields.required_dict(detail, "bucket"))
    obj = fields.required_dict(detail, "object")
    reason = fields.optional_str(detail, "reason")
    event_name = _EVENTBRIDGE_REASONS.get(reason or "", f"ObjectCreated:{reason or 'unknown'}")
    # EventBridge spells it "etag"; moto's emulation spells it "eTag". Accept both.
    etag = fields.optional_str(obj, "etag") if "etag" in obj else fields.optional_str(obj, "eTag")
    return ObjectCreated(
        bucket=bucket,
        # Decoded like notification keys. AWS documents the notification key as
        # URL-encoded; for EventBridge it documents no encoding either way, and we treat
        # both transports alike so one S3 key maps to one identity. If real EventBridge
        # keys turn out to be raw, keys containing '+' or '%XX' will be misread here
        # (visible as ObjectMissing, never as reading the wrong bytes under IfMatch).
        key=fields.decode_key(fields.required_str(obj, "key")),
        version_id=fields.version_id(fields.optional_str(obj, "version-id")),
        etag=fields.etag(etag),
        size=fields.optional_size(obj, "size"),
        event_time=fields.optional_time(event, "time"),
        event_name=event_name,
        sequencer=fields.optional_str(obj, "sequencer") or None,
        source="eventbridge",
    )
