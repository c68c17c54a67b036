"""Where a matched content version ended up: the scanned version, and the evidence record.

:class:`ContentVersion` names the version a result scanned (one quarantine and one report
each); :class:`Evidence` says where it is now and how that was established. Both are plain
values, stored as JSON (in Redis by the quarantine, in the report record by reports.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgematch.downstream.evidence import VersionInfo
from edgematch.pipeline.results import Result

__all__ = [
    "CONTENT_MISSING",
    "FAILED",
    "MOVED",
    "SHADOW",
    "TAGGED",
    "ContentVersion",
    "Evidence",
]

#: Evidence states: where a matched content version ended up.
MOVED, TAGGED, SHADOW, CONTENT_MISSING, FAILED = (
    "moved",
    "tagged",
    "shadow",
    "content_missing",
    "failed",
)


@dataclass(frozen=True)
class ContentVersion:
    """The content object version a result scanned (its version id or ETag as of ingest)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @classmethod
    def of(cls, result: Result) -> ContentVersion:
        return cls(
            result.content_bucket,
            result.content_key,
            result.content_version_id,
            result.content_etag,
        )

    @classmethod
    def candidates_of(cls, result: Result) -> list[ContentVersion]:
        """The other versions ``result`` may have scanned (an ambiguous attribution)."""
        return [
            cls(result.content_bucket, result.content_key, version_id, None)
            for version_id in result.content_candidates
            if version_id and version_id != result.content_version_id
        ]

    @property
    def identity(self) -> str:
        """Stable name of this version: one quarantine and one report each."""
        if self.version_id:
            tail = self.version_id
        elif self.etag:
            tail = f"etag:{self.etag}"
        else:
            tail = "unknown"
        return f"{self.bucket}\x00{self.key}\x00{tail}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Evidence:
    """Where a matched content version is now, and how that was established.

    ``bucket``/``key``/``version_id`` name the preserved bytes: the quarantined copy
    (``moved``), the tagged original (``tagged``), the untouched original (``shadow``,
    ``failed``), or nothing (``content_missing``). ``at`` is a Unix time in seconds.
    When which version was scanned is ambiguous (pipeline/attribution.py), ``ambiguity``
    says why and ``candidates`` holds the evidence of each other version that may have
    been the scanned one, quarantined the same way (each a dict of these fields).
    """

    state: str
    mode: str
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    checksum_sha256: str | None = None
    legal_hold: bool = False
    retain_until: str | None = None
    original_deleted: bool = False
    detail: str | None = None
    at: float = field(default_factory=time.time)
    ambiguity: str | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Evidence:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    @classmethod
    def failed(cls, result: Result, *, mode: str, reason: str) -> Evidence:
        """A quarantine of ``result``'s content that gave up: the original stays where it
        was, tagged ``match``; so may every other candidate version."""
        others = [
            cls.naming(c, state=FAILED, mode=mode, detail=reason[:500]).to_dict()
            for c in ContentVersion.candidates_of(result)
        ]
        return cls.naming(
            ContentVersion.of(result),
            state=FAILED,
            mode=mode,
            detail=reason[:500],
            ambiguity=result.content_ambiguity,
            candidates=others,
        )

    @classmethod
    def naming(
        cls,
        where: ContentVersion | VersionInfo,
        *,
        state: str,
        mode: str,
        detail: str,
        **more: Any,
    ) -> Evidence:
        """Evidence that names ``where``: its location, version id and ETag, and its size
        when it is a version read from the store."""
        return cls(
            state=state,
            mode=mode,
            bucket=where.bucket,
            key=where.key,
            version_id=where.version_id,
            etag=where.etag,
            size=where.size if isinstance(where, VersionInfo) else None,
            detail=detail,
            **more,
        )
