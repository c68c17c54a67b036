"""Objects of JSON Lines in the object store: written whole, listed by prefix, read back.

The verdict log (:mod:`edgematch.pipeline.verdictlog`) is made of these: gzip-compressed
JSON Lines (``.jsonl.gz``), one JSON object a line, which DuckDB's ``read_json`` and
Athena's JSON SerDe read as they are. An object is written once, in one PUT, and never
changed: writing the same key again writes the same bytes (gzip without a timestamp), so a
write that is retried after it succeeded changes nothing.

Errors are translated at the same boundary as :mod:`edgematch.infra.storage` (its
``translated``): ``ConfigurationError`` for access denied, ``ServerError`` /
``TransportError`` / ``TransientError`` for what another try may fix, ``ObjectMissing``
for a key or bucket that is not there. Messages carry locations, never lines.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edgematch.errors import BadInput
from edgematch.infra.storage import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["LogObject", "LogObjects", "Unreadable"]

SUFFIX: Final = ".jsonl.gz"
#: A line longer than this is not one of ours: it is refused rather than parsed.
_MAX_LINE_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class LogObject:
    """One listed object: its key and size in bytes."""

    key: str
    size: int


class Unreadable(BadInput):
    """An object of the log that is not gzip JSON Lines (or a line that is not an object)."""


class LogObjects:
    """JSON Lines objects under ``prefix`` in ``bucket``, encrypted at rest (``aws:kms``
    with ``kms_key_id``, else ``AES256``)."""

    def __init__(
        self, s3: S3Client, bucket: str, prefix: str, *, kms_key_id: str | None = None
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self.prefix = prefix
        self._kms_key_id = kms_key_id

    def put(self, key: str, lines: Sequence[str]) -> int:
        """Write ``lines`` (each one JSON object, without a newline) as the object ``key``.

        Returns the bytes written. The same lines give the same bytes, so a repeat is
        harmless.
        """
        body = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), mtime=0)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ContentType": "application/x-ndjson",
            "ServerSideEncryption": "aws:kms" if self._kms_key_id else "AES256",
        }
        if self._kms_key_id:
            kwargs["SSEKMSKeyId"] = self._kms_key_id
        with translated("s3:PutObject", self.bucket, key, None):
            self._s3.put_object(**kwargs)
        return len(body)

    def listing(self, prefix: str, *, start_after: str = "") -> Iterator[LogObject]:
        """The objects under ``prefix`` (a full key prefix) in key order, after
        ``start_after``, a page at a time (never the whole listing in memory)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        while True:
            with translated("s3:ListBucket", self.bucket, prefix, None):
                page = self._s3.list_objects_v2(**kwargs)
            for entry in page.get("Contents", []):
                if entry["Key"].endswith(SUFFIX):
                    yield LogObject(entry["Key"], int(entry.get("Size", 0)))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs.pop("StartAfter", None)
            kwargs["ContinuationToken"] = token

    def read(self, key: str) -> list[dict[str, Any]]:
        """The JSON objects of one log object, in order. Unreadable when it is not gzip
        JSON Lines; ObjectMissing when it is gone."""
        with translated("s3:GetObject", self.bucket, key, None):
            body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"]
            try:
                raw = body.read()
            finally:
                body.close()
        try:
            text = gzip.decompress(raw).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise Unreadable(
                f"s3://{self.bucket}/{key} is not gzip UTF-8: {type(exc).__name__}"
            ) from None
        docs: list[dict[str, Any]] = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if len(line) > _MAX_LINE_BYTES:
                raise Unreadable(f"s3://{self.bucket}/{key} line {number} is over 1 MiB")
            try:
                doc = json.loads(line)
            except ValueError:
                raise Unreadable(f"s3://{self.bucket}/{key} line {number} is not JSON") from None
            if not isinstance(doc, dict):
                raise Unreadable(f"s3://{self.bucket}/{key} line {number} is not an object")
            docs.append(doc)
        return docs
