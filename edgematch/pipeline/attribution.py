"""Which content version a hash file stands for: what quarantine acts on after a match.

A platform pins it with the hash file's user metadata ``content-version-id``. Without it,
the version is attributed by evidence, not by what happens to be current when ingest gets
to the file (a hash file read after a newer upload of its content would otherwise name the
newer version, and quarantine would move an innocent upload and leave the matched one
reachable by its version id):

* one HEAD of the content. Gone, or not readable: unknown (quarantine records
  ``content_missing``) — except when S3 answers that the current version is a delete
  marker: the versions deleted under it are still stored, and the listing below finds
  the scanned one (a match must not stay readable by version id). No version id: the
  bucket is not versioned, there is one version, and it is named by its ETag as before.
  A current version written in an earlier second than the hash file is the newest
  version written before it: attributed, without a listing.
* otherwise ListObjectVersions on exactly the content key (:mod:`edgematch.infra.versions`),
  and :func:`attribute`: the newest version written before the hash file.

S3 keeps ``LastModified`` to the second, and a version written in the same second as
the hash file may have come before or after it. Every version that could have been the
scanned one is then a *candidate*: each version of that second, and the newest version
of an earlier second. More than one candidate, or a delete marker among them, is
*ambiguous*: quarantine acts on every candidate, and the result and the report say why.
Fail closed: a listing that is refused raises :class:`VersionUnknown` (ingest makes the
hash file unscannable, with a dead letter), one that fails for a while a
``TransientError`` (retried, then dead-lettered); it never falls back to the current
version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from edgematch.errors import ConfigurationError, ObjectMissing, PermanentError
from edgematch.infra.logs import get_logger
from edgematch.infra.s3text import decode_metadata_value
from edgematch.infra.storage import KeyVersion, ObjectInfo, ObjectStore

__all__ = ["Attribution", "VersionUnknown", "attribute", "content_version"]

log = get_logger(__name__)


class VersionUnknown(PermanentError):
    """The versions of the content key may not be listed: which version the hash file
    stands for cannot be told. Ingest makes the hash file unscannable (a dead letter)."""

    reason = "content_version_unknown"


@dataclass(frozen=True)
class Attribution:
    """The content version a hash file stands for, and the other versions it may stand
    for when that is ambiguous (``ambiguity`` says why)."""

    version_id: str | None = None
    etag: str | None = None
    candidates: tuple[str, ...] = ()
    ambiguity: str | None = None


def content_version(  # noqa: PLR0911 - one return per case of the module doc
    store: ObjectStore, info: ObjectInfo, bucket: str, key: str
) -> Attribution:
    """The content version the hash file ``info`` stands for (see the module doc).

    An empty Attribution when there is none to act on: the content was never uploaded (or
    is gone for good: no version is stored), or we may not read it, which quarantine then
    records. Content deleted in a versioned bucket (a delete marker) is listed.
    Raises VersionUnknown when a listing is needed and refused, and ``TransientError``
    (retried) when it fails for a while.
    """
    metadata = {k.lower(): decode_metadata_value(v) for k, v in info.metadata.items()}
    if metadata.get("content-version-id"):
        return Attribution(version_id=metadata["content-version-id"])
    written = info.last_modified
    try:
        head = store.head(bucket, key)
    except ObjectMissing as exc:
        if not exc.delete_marker:
            # Never uploaded (some platforms keep their images elsewhere) or in a bucket
            # without versions: recorded as content_missing by quarantine. Not listed: that
            # would cost a request per hash file where content is never here.
            log.info("ingest_content_version_unknown", bucket=bucket, key=key, reason=exc.reason)
            return Attribution()
        # Deleted, but a versioned bucket keeps what was deleted, still readable by
        # version id: the scanned version is looked for like any other.
        return _listed(store, bucket, key, written)
    except (PermanentError, ConfigurationError) as exc:
        # Not ours to read: recorded as such by quarantine.
        log.info("ingest_content_version_unknown", bucket=bucket, key=key, reason=exc.reason)
        return Attribution()
    if head.version_id is None:
        return Attribution(etag=head.etag)  # not versioned: the one version there is
    if written is not None and _before(head.last_modified, written):
        return Attribution(version_id=head.version_id, etag=head.etag)
    return _listed(store, bucket, key, written)


def _listed(store: ObjectStore, bucket: str, key: str, written: dt.datetime | None) -> Attribution:
    """The attribution from a listing of the content key's versions (fail closed)."""
    try:
        found = attribute(store.versions(bucket, key), written)
    except (PermanentError, ConfigurationError) as exc:
        raise VersionUnknown(
            f"the scanned version of s3://{bucket}/{key} cannot be told: {exc}"
        ) from exc
    if found.ambiguity:
        log.warning(
            "ingest_content_version_ambiguous",
            bucket=bucket,
            key=key,
            candidates=len(found.candidates) + 1,
            why=found.ambiguity,
        )
    return found


def attribute(versions: Iterable[KeyVersion], written: dt.datetime | None) -> Attribution:
    """The version a hash file written at ``written`` stands for, among ``versions`` of
    its content key, newest first (S3's order). Pure; reads only as far as it must.

    Candidates: every version of the hash file's own second, and the newest version of an
    earlier second (older ones are certainly not it: that one came between). No version
    written by then: the oldest one written after it (clocks may differ by a second),
    as ambiguous. ``written`` None: every version is a candidate.
    """
    second = _second(written) if written is not None else None
    same: list[KeyVersion] = []
    earlier: KeyVersion | None = None
    after: KeyVersion | None = None
    markers = 0
    for entry in versions:
        at = _second(entry.last_modified)
        if earlier is not None and at < _second(earlier.last_modified):
            break
        if second is not None and at > second:
            after = after if entry.delete_marker else entry
            continue
        if entry.delete_marker:
            markers += 1
        elif second is None or at == second:
            same.append(entry)
        elif earlier is None:
            earlier = entry
    found = [*same, *([earlier] if earlier else [])]
    why: list[str] = []
    if not found and after is not None:
        found = [after]
        why.append("no content version was written by the time of the hash file")
    if len(found) > 1:
        why.append(f"{len(found)} content versions could have been the scanned one")
    if markers and found:
        why.append("a delete marker lies between the content versions and the hash file")
    if not found:
        return Attribution()
    first = found[0]
    return Attribution(
        version_id=first.version_id,
        etag=first.etag,
        candidates=tuple(v.version_id for v in found[1:]),
        ambiguity="; ".join(why) or None,
    )


def _second(at: dt.datetime) -> int:
    """``at`` to the whole second, as S3 keeps it (HEAD and GET answer whole seconds)."""
    return int(at.timestamp() // 1)


def _before(content: dt.datetime | None, written: dt.datetime) -> bool:
    """Whether content written at ``content`` was certainly written before ``written``."""
    return content is not None and _second(content) < _second(written)
