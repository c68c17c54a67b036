"""Backfill: scan hash files already in a bucket (from before edgematch, or an outage).

The listing is streamed a page at a time and never held, so a prefix of a million keys
costs one page of memory. Each hash file it yields (key ending in the hash suffix,
LastModified at or after ``since``) becomes one ingest task on lane ``backfill``, with an
event built the way intake builds one (source ``backfill``).

After each task is enqueued the checkpoint (``<ns>:backfill:<bucket>/<prefix>``: the last
key fully handled, counters) is saved, so a run killed at any moment resumes with the
listing after that key. A kill between the enqueue and the save enqueues that one key
again on resume; ingest's idempotency makes the repeat cost nothing.

Objects already scanned are skipped by that same idempotency (no API call). With
``rescan``, each object is HEADed for its current version and ingest's idempotency keys
for it are forgotten first, so it is scanned again. Enqueueing waits while the backlog is
at the mark, as intake does (:class:`~edgematch.pipeline.backpressure.Gate`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import redis

from edgematch.infra.keys import Keys
from edgematch.infra.s3text import key_problem
from edgematch.ops.listing import Listed
from edgematch.ops.progress import Progress
from edgematch.ops.timespec import format_moment
from edgematch.pipeline.backpressure import Gate
from edgematch.pipeline.events import ObjectCreated

T = TypeVar("T")
LANE = "backfill"
#: A checkpoint left alone this long is forgotten (seconds; refreshed at every save).
CHECKPOINT_TTL_S = 90 * 24 * 3600

Pages = Callable[[str | None], Iterable[Sequence[Listed]]]
Enqueue = Callable[[ObjectCreated, str], None]
#: For --rescan: HEAD the object, forget its idempotency keys, return its event (None: gone).
Rescan = Callable[[Listed], ObjectCreated | None]


@dataclass
class Checkpoint:
    """Where a backfill of bucket/prefix stands. Times are epoch seconds.

    ``after`` is the last key fully handled (enqueued, or not a hash file of the period);
    ``total`` the hash files to enqueue, when a counting pass has run.
    """

    bucket: str
    prefix: str
    since: float | None = None
    rescan: bool = False
    after: str | None = None
    listed: int = 0
    enqueued: int = 0
    skipped: int = 0
    total: int | None = None
    started_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None

    def to_fields(self) -> dict[str, str]:
        """The Redis hash fields: every value as text, None as the empty string."""
        return {
            name: "" if value is None else str(int(value) if isinstance(value, bool) else value)
            for name, value in asdict(self).items()
        }

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> Checkpoint:
        """Parse :meth:`to_fields` output as Redis returns it."""
        text = {_s(k): _s(v) for k, v in raw.items()}

        def number(name: str) -> float | None:
            return float(text[name]) if text.get(name) else None

        total = number("total")
        return cls(
            bucket=text.get("bucket", ""),
            prefix=text.get("prefix", ""),
            since=number("since"),
            rescan=text.get("rescan") == "1",
            after=text.get("after") or None,
            listed=int(number("listed") or 0),
            enqueued=int(number("enqueued") or 0),
            skipped=int(number("skipped") or 0),
            total=None if total is None else int(total),
            started_at=number("started_at") or 0.0,
            updated_at=number("updated_at") or 0.0,
            finished_at=number("finished_at"),
        )


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class Checkpoints:
    """Checkpoints in Redis. Raises TransientError when Redis cannot be reached."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self._r = client
        self._k = Keys(namespace)

    def load(self, bucket: str, prefix: str) -> Checkpoint | None:
        raw = self._r.hgetall(self._k.backfill(bucket, prefix))
        return Checkpoint.from_fields(raw) if raw else None

    def save(self, cp: Checkpoint) -> None:
        key = self._k.backfill(cp.bucket, cp.prefix)

        pipe = self._r.pipeline()
        pipe.hset(key, mapping=cp.to_fields())  # type: ignore[arg-type]
        pipe.expire(key, CHECKPOINT_TTL_S)
        pipe.execute()

    def delete(self, bucket: str, prefix: str) -> None:
        self._r.delete(self._k.backfill(bucket, prefix))

    def all(self) -> list[Checkpoint]:
        """Every checkpoint of this namespace (for ``edgematch status``)."""

        found: list[Checkpoint] = []
        for key in self._r.scan_iter(match=f"{self._k.ns}:backfill:*", count=500):
            raw = self._r.hgetall(key)
            if raw:
                found.append(Checkpoint.from_fields(raw))
        return found


def wanted(obj: Listed, *, suffix: str, since: float | None) -> bool:
    """Is this listed object a hash file of the period? Pure."""
    if not obj.key.endswith(suffix) or key_problem(obj.key) is not None:
        return False
    return since is None or obj.last_modified.timestamp() >= since


def resume_problem(cp: Checkpoint, *, since: float | None, rescan: bool) -> str | None:
    """Why this checkpoint cannot be resumed with these options (None: it can). Pure."""
    if cp.since != since or cp.rescan != rescan:
        was = f"--since {format_moment(cp.since) if cp.since else '(none)'}" + (
            " --rescan" if cp.rescan else ""
        )
        return (
            f"a backfill of s3://{cp.bucket}/{cp.prefix} with {was} stopped after "
            f"{cp.after!r}; resume it with the same options, or pass --restart"
        )
    return None


def event_for(bucket: str, obj: Listed, *, version_id: str | None = None) -> ObjectCreated:
    """The ingest event of a listed object, shaped as intake shapes one. Pure."""
    return ObjectCreated(
        bucket=bucket,
        key=obj.key,
        version_id=version_id,
        etag=obj.etag,
        size=obj.size,
        event_time=obj.last_modified.isoformat(),
        event_name="ObjectCreated:Backfill",
        sequencer=None,
        source=LANE,
    )


def count_wanted(pages: Iterable[Sequence[Listed]], *, suffix: str, since: float | None) -> int:
    """How many hash files the listing holds (a first, cheap pass for the ETA)."""
    return sum(1 for page in pages for obj in page if wanted(obj, suffix=suffix, since=since))


class Backfill:
    """One run of a backfill, from its checkpoint to the end of the listing (or a stop)."""

    def __init__(
        self,
        cp: Checkpoint,
        *,
        checkpoints: Checkpoints,
        pages: Pages,
        enqueue: Enqueue,
        suffix: str,
        gate: Gate | None = None,
        rescan: Rescan | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cp = cp
        self._checkpoints = checkpoints
        self._pages = pages
        self._enqueue = enqueue
        self._suffix = suffix
        self._gate = gate
        self._rescan = rescan
        self._progress = progress
        self._stop = stop or threading.Event()
        self._clock = clock

    def run(self, *, max_pages: int | None = None) -> Checkpoint:
        """List, enqueue and checkpoint until the listing ends, ``stop`` is set or
        ``max_pages`` pages are done. Returns the checkpoint (``finished_at`` set when
        the listing ended). Raises what the listing, the enqueue or Redis raise; the
        checkpoint then holds the last key fully enqueued."""
        cp = self.cp
        if not cp.started_at:
            cp.started_at = self._clock()
        for done, page in enumerate(self._pages(cp.after), start=1):
            for obj in page:
                if self._stop.is_set() or not self._handle(obj):
                    self._save()
                    return cp
            self._save()
            if max_pages is not None and done >= max_pages:
                return cp
        cp.finished_at = self._clock()
        self._save()
        return cp

    def _handle(self, obj: Listed) -> bool:
        """Enqueue ``obj`` if wanted; False when stopped before it could be."""
        cp = self.cp
        if not wanted(obj, suffix=self._suffix, since=cp.since):
            cp.listed += 1
            cp.skipped += 1
            cp.after = obj.key  # saved with the next enqueue or at the end of the page
            return True
        if self._gate is not None:
            self._gate.wait()
            if self._stop.is_set():
                return False
        event = self._rescan(obj) if self._rescan else event_for(cp.bucket, obj)
        cp.listed += 1
        if event is None:  # deleted since it was listed
            cp.skipped += 1
        else:
            self._enqueue(event, uuid.uuid4().hex)
            cp.enqueued += 1
        cp.after = obj.key
        self._save()
        if self._progress is not None:
            self._progress.advance()
        return True

    def _save(self) -> None:
        self.cp.updated_at = self._clock()
        self._checkpoints.save(self.cp)
