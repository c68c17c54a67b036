"""Results found again, and counted, from the verdict log (``edgematch result``,
``edgematch verdicts``; the commands are in :mod:`edgematch.ops.commands.records`).

Redis holds a result for the hot window only; the verdict log holds every one
(:mod:`edgematch.pipeline.verdictlog`). :func:`lookup` answers from the content object's
tag and the hot window at once, then from the log: the partitions from the object's upload
(its ``LastModified``) onward, the first hour that holds a result of it and no further,
or the whole range given. :func:`summarise` reads every object of a range, one hour
partition at a time, and counts (:mod:`edgematch.ops.tally`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from edgematch.downstream.evidence import EvidenceStore
from edgematch.errors import ConfigurationError, PermanentError
from edgematch.infra.storage import content_location
from edgematch.ops.progress import Progress
from edgematch.ops.tally import Tally
from edgematch.ops.timespec import format_moment
from edgematch.pipeline.logpaths import hour_of, hours, name_at, partition

if TYPE_CHECKING:
    # Not at run time: only the runtime's objects are used here.
    from edgematch.infra.logstore import LogObject, LogObjects
    from edgematch.runtime import Runtime

T = TypeVar("T")
R = TypeVar("R")

#: Objects read side by side.
READERS: Final = 8
#: Without a range, ``verdicts`` counts the last day.
DEFAULT_SPAN_S: Final = 86_400.0
#: Without a range, ``result`` looks from a little before the upload (clocks differ) to a
#: day after it.
BEFORE_UPLOAD_S: Final = 300.0
AFTER_UPLOAD_S: Final = 86_400.0
#: ... or, when the object's upload time is unknown (it is gone), over the last week.
UNKNOWN_UPLOAD_SPAN_S: Final = 7 * 86_400.0


def log_objects(rt: Runtime) -> LogObjects:
    """The verdict log's objects; ConfigurationError when no bucket is set for it."""
    objects = rt.verdict_log.objects
    if objects is None:
        raise ConfigurationError(
            "EDGEMATCH_VERDICT_LOG_BUCKET (or EDGEMATCH_REPORTS_BUCKET) names the verdict log's "
            "bucket: set it as the workers have it"
        )
    return objects


# --- reading the log -----------------------------------------------------------------------


def in_order(
    work: Callable[[T], R], elements: Sequence[T], *, threads: int = READERS
) -> Iterator[R]:
    """``work`` on each element on ``threads`` threads, yielded in order, with at most twice
    ``threads`` results held at once (a partition's objects never all in memory)."""
    with ThreadPoolExecutor(threads, thread_name_prefix="log-reader") as pool:
        pending: deque[Future[R]] = deque()
        for element in elements:
            pending.append(pool.submit(work, element))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def list_hours(
    objects: LogObjects, since: float, until: float, *, progress: Progress | None = None
) -> list[tuple[datetime, list[LogObject]]]:
    """Each hour partition of ``[since, until)`` with its objects (keys only, in order)."""
    found: list[tuple[datetime, list[LogObject]]] = []
    for hour in hours(since, max(since, until - 1e-6)):
        listed = list(objects.listing(objects.prefix + partition(hour)))
        found.append((hour, listed))
        if progress is not None:
            progress.advance(note=f"{sum(len(o) for _, o in found):,} objects")
    return found


def summarise(objects: LogObjects, since: float, until: float, *, stream: Any = None) -> Tally:
    """Count the results scanned in ``[since, until)``, each once; progress on ``stream``."""
    span = hours(since, max(since, until - 1e-6))
    listing = Progress("listing", len(span), stream=stream)
    partitions = list_hours(objects, since, until, progress=listing)
    listing.finish()
    total = sum(len(listed) for _, listed in partitions)
    progress = Progress("reading", total, stream=stream)
    tally = Tally(since=since, until=until)

    def read(entry: LogObject) -> list[dict[str, Any]]:
        return objects.read(entry.key)

    for _, listed in partitions:

        def each(listed: list[LogObject] = listed) -> Iterator[list[dict[str, Any]]]:
            for lines in in_order(read, listed):
                progress.advance()
                yield lines

        tally.add_hour(each())
    progress.finish()
    return tally


@dataclass(frozen=True)
class Found:
    """A result found in the log, and where."""

    doc: dict[str, Any]
    object_key: str


def search(
    objects: LogObjects,
    bucket: str,
    key: str,
    since: float,
    until: float,
    *,
    first_hour_only: bool,
    stream: Any = None,
) -> Found | None:
    """The latest result (by ``recorded_at``) of the hash or content object bucket/key
    scanned in ``[since, until)``; with ``first_hour_only``, in the first hour partition that
    holds one. None when there is none."""
    span = hours(since, max(since, until - 1e-6))
    progress = Progress("searching the verdict log", len(span), stream=stream)
    latest: Found | None = None
    try:
        for hour in span:
            # Objects are named when their lines were taken, after they were recorded: the
            # ones named before ``since`` in its own hour cannot hold a later scan.
            start_after = name_at(objects.prefix, hour, since) if hour == hour_of(since) else ""
            listed = list(
                objects.listing(objects.prefix + partition(hour), start_after=start_after)
            )

            def read(entry: LogObject) -> tuple[str, list[dict[str, Any]]]:
                return entry.key, objects.read(entry.key)

            for object_key, lines in in_order(read, listed):
                for doc in lines:
                    if not _names(doc, bucket, key):
                        continue
                    if not since <= float(doc.get("scanned_at") or 0.0) < until:
                        continue
                    if latest is None or _recorded(doc) >= _recorded(latest.doc):
                        latest = Found(doc, object_key)
            progress.advance(note="found" if latest else "")
            if latest is not None and first_hour_only:
                break
    finally:
        progress.finish()
    return latest


def _names(doc: dict[str, Any], bucket: str, key: str) -> bool:
    return (doc.get("bucket"), doc.get("key")) == (bucket, key) or (
        doc.get("content_bucket"),
        doc.get("content_key"),
    ) == (bucket, key)


def _recorded(doc: dict[str, Any]) -> float:
    return float(doc.get("recorded_at") or doc.get("scanned_at") or 0.0)


# --- edgematch result --------------------------------------------------------------------


def lookup(
    rt: Runtime,
    bucket: str,
    key: str,
    *,
    since: float | None,
    until: float | None,
    stream: Any = None,
) -> dict[str, Any] | None:
    """What is known of the hash or content object bucket/key: its recorded result (the hot
    window, else the log) with a ``lookup`` saying where it was found and what the content's
    verdict tag says; or the tag alone; None when nothing is known."""
    content = _content_of(rt, bucket, key)
    tag = _tag(rt, *content) if content else None
    doc = rt.results.get(bucket, key)
    where: dict[str, Any] = {"tag": tag}
    if doc is not None:
        where["source"] = "hot window"
    else:
        lo, hi, first_hour_only = _search_range(
            rt, bucket=bucket, key=key, content=content, since=since, until=until
        )
        found = search(
            log_objects(rt), bucket, key, lo, hi, first_hour_only=first_hour_only, stream=stream
        )
        where["searched"] = {"since": format_moment(lo), "until": format_moment(hi)}
        if found is not None:
            doc = found.doc
            where["source"] = "verdict log"
            where["object"] = f"s3://{log_objects(rt).bucket}/{found.object_key}"
    if doc is None and tag is None:
        return None
    if doc is None:
        assert content is not None
        where["source"] = "tag"
        doc = {"content_bucket": content[0], "content_key": content[1], "verdict": tag}
    return {**doc, "lookup": where}


def _content_of(rt: Runtime, bucket: str, key: str) -> tuple[str, str] | None:
    """The content object of a hash file (its metadata, else the key minus the suffix), or
    the object itself when it is not a hash file; None when that cannot be told."""
    s = rt.settings
    if not key.endswith(s.hash_suffix):
        return bucket, key
    try:
        info = rt.store.head(bucket, key)
        return content_location(info, suffix=s.hash_suffix, allowed_buckets=s.allowed_buckets)
    except PermanentError:
        return bucket, key.removesuffix(s.hash_suffix)


def _tag(rt: Runtime, bucket: str, key: str) -> str | None:
    try:
        return rt.store.get_tags(bucket, key).get(rt.settings.result_tag)
    except PermanentError:
        return None  # gone (quarantined by a move, deleted): the log still knows


def _search_range(
    rt: Runtime,
    *,
    bucket: str,
    key: str,
    content: tuple[str, str] | None,
    since: float | None,
    until: float | None,
) -> tuple[float, float, bool]:
    """``(since, until, first hour only)``: the range given, else from the upload on."""
    now = time.time()
    if since is not None or until is not None:
        hi = until if until is not None else now
        return (since if since is not None else hi - DEFAULT_SPAN_S), hi, False
    uploaded = _uploaded(rt, [(bucket, key), *([content] if content else [])])
    if uploaded is None:
        return now - UNKNOWN_UPLOAD_SPAN_S, now, True
    return uploaded - BEFORE_UPLOAD_S, min(now, uploaded + AFTER_UPLOAD_S), True


def _uploaded(rt: Runtime, locations: list[tuple[str, str]]) -> float | None:
    evidence = EvidenceStore(rt.s3)
    for bucket, key in locations:
        try:
            modified = evidence.head(bucket, key).last_modified
        except (PermanentError, ConfigurationError):
            continue
        if modified is not None:
            return modified.timestamp()
    return None
