"""Moving what an earlier release kept in Redis for months (``edgematch migrate-results``,
in :mod:`edgematch.ops.commands.records`).

Releases before the verdict log kept every result in Redis for 90 days under its hash
object's location (``<ns>:result:<bucket>/<key>``, with a content pointer
``<ns>:result-content:<bucket>/<key>``), and their idempotency keys, "recorded once"
markers and quarantine and report memories for 30 to 90 days. This release reads those
results until they expire (:meth:`ResultStore.get`); this command, run once after every
worker runs this release, makes the space free now:

* each old result is written to the verdict log (``current: true``, ``decision:
  "migrated"``), in the partition of the hour it was scanned, a few thousand an object, and
  only once the object is written is the old key deleted, with its content pointer;
* old idempotency keys (a 64-character digest: this release names them by a shorter one,
  so nothing reads them) are deleted;
* old markers and quarantine and report memories are given the new windows
  (``EDGEMATCH_RESULT_TTL_S``, ``EDGEMATCH_IDEMPOTENCY_TTL_S``) when theirs is longer.

Interrupted or failed, it is run again: what was moved is gone from Redis, and a result
written twice is counted once (same ``item_id``, same partition). Without objects to write
to (``--dry-run``) it only counts.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edgematch.ops.progress import Progress
from edgematch.pipeline.logpaths import hour_of, object_key

if TYPE_CHECKING:
    import redis

    from edgematch.infra.logstore import LogObjects
    from edgematch.runtime import Runtime

#: Keys asked of Redis per SCAN call.
_SCAN_COUNT: Final = 1000
#: Old results written per batch (an object per scan hour in it), as a flush takes.
_BATCH: Final = 5000
_HEX_DIGEST_CHARS: Final = 64


@dataclass
class Migration:
    """What was (or, dry, would be) done."""

    results: int = 0
    pointers: int = 0
    idempotency_keys: int = 0
    shortened: int = 0
    objects: int = 0

    def line(self, *, dry: bool) -> str:
        verb = "would move" if dry else "moved"
        return (
            f"{verb} {self.results:,} results to the verdict log ({self.objects:,} objects), "
            f"{'would delete' if dry else 'deleted'} {self.pointers:,} content pointers and "
            f"{self.idempotency_keys:,} old idempotency keys, "
            f"{'would shorten' if dry else 'shortened'} {self.shortened:,} keys to the new windows"
        )


def migrate(rt: Runtime, objects: LogObjects | None, *, progress: Progress) -> Migration:
    """Move the old results to ``objects`` (None: count only) and free the rest."""
    r = rt.redis
    ns = rt.settings.namespace
    done = Migration()
    batch: list[tuple[str, str]] = []  # (old key, line)
    for raw_key in _scan(r, f"{ns}:result:*"):
        name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        progress.advance()
        if "/" not in name.removeprefix(f"{ns}:result:"):
            continue  # this release's: a digest has no slash
        raw = r.get(name)
        if raw is None:
            continue  # expired meanwhile
        done.results += 1
        if objects is None:
            continue
        doc = json.loads(raw)
        batch.append((name, json.dumps({**doc, "current": True, "decision": "migrated"})))
        if len(batch) >= _BATCH:
            done.objects += _write(r, objects, batch)
            batch = []
    if batch and objects is not None:
        done.objects += _write(r, objects, batch)
    dry = objects is None
    done.pointers = _each(r, f"{ns}:result-content:*", dry, lambda k, _: "/" in k, delete=True)
    seen_prefix = f"{ns}:seen:"
    done.idempotency_keys = _each(
        r,
        f"{seen_prefix}*",
        dry,
        lambda k, _: len(k) - len(seen_prefix) == _HEX_DIGEST_CHARS,
        delete=True,
    )
    s = rt.settings
    for pattern, window in (
        (f"{ns}:result-item:*", s.result_ttl_s),
        (f"{ns}:quarantine:*", s.idempotency_ttl_s),
        (f"{ns}:report:*", s.idempotency_ttl_s),
    ):
        done.shortened += _each(r, pattern, dry, lambda _, ttl, w=window: ttl > w, expire_s=window)
    return done


def _scan(r: redis.Redis, pattern: str) -> Iterator[Any]:
    yield from r.scan_iter(match=pattern, count=_SCAN_COUNT)


def _each(
    r: redis.Redis,
    pattern: str,
    dry: bool,
    wanted: Any,
    *,
    delete: bool = False,
    expire_s: int = 0,
) -> int:
    """Delete (or expire after ``expire_s``) the keys matching ``pattern`` that ``wanted(name,
    ttl)`` picks; return how many."""
    count = 0
    for raw_key in _scan(r, pattern):
        name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        ttl = int(r.ttl(name)) if expire_s else 0
        if not wanted(name, ttl):
            continue
        count += 1
        if dry:
            continue
        if delete:
            r.delete(name)
        else:
            r.expire(name, expire_s)
    return count


def _write(r: redis.Redis, objects: LogObjects, batch: list[tuple[str, str]]) -> int:
    """Write one batch's lines (an object per scan hour), then delete their old keys."""
    taken_ms = int(time.time() * 1000)
    batch_id = "migrated-" + uuid.uuid4().hex
    by_hour: dict[Any, list[str]] = {}
    for _, line in batch:
        scanned = float(json.loads(line).get("scanned_at") or 0.0) or taken_ms / 1000
        by_hour.setdefault(hour_of(scanned), []).append(line)
    for hour, lines in by_hour.items():
        objects.put(object_key(objects.prefix, hour, taken_ms, batch_id), lines)
    r.delete(*(name for name, _ in batch))
    return len(by_hour)
