"""Where a result lives in the verdict log: partitions and object names. Pure.

``verdicts/date=YYYY-MM-DD/hour=HH/<taken>-<batch>.jsonl.gz``: a line is in the partition
of the UTC hour its hash was *scanned*, so every copy of one result is in one partition;
an object is named by the time its lines were taken for writing (UTC, to the
millisecond), which is after every one of them was recorded, so a partition lists in the
order it was written. See :mod:`edgematch.pipeline.verdictlog`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Final

#: Where the log lives in its bucket.
PREFIX: Final = "verdicts/"


def hour_of(epoch: float) -> datetime:
    """The UTC hour ``epoch`` (seconds) falls in."""
    return datetime.fromtimestamp(epoch, UTC).replace(minute=0, second=0, microsecond=0)


def partition(hour: datetime) -> str:
    """``date=2026-11-22/hour=14/``: the Hive-style partition of one UTC hour."""
    return f"date={hour:%Y-%m-%d}/hour={hour:%H}/"


def object_key(prefix: str, hour: datetime, taken_ms: int, batch_id: str) -> str:
    """The key of the object holding batch ``batch_id``'s lines scanned in ``hour``.

    Named by when the batch was taken (UTC, to the millisecond), so a partition lists in
    the order its objects were written, and every line in an object was recorded before
    the time its name says.
    """
    taken = datetime.fromtimestamp(taken_ms / 1000, UTC)
    stamp = f"{taken:%Y%m%dT%H%M%S}{taken.microsecond // 1000:03d}Z"
    return f"{prefix}{partition(hour)}{stamp}-{batch_id}.jsonl.gz"


def name_at(prefix: str, hour: datetime, epoch: float) -> str:
    """A key that sorts before every object of ``hour`` named at ``epoch`` or later."""
    moment = datetime.fromtimestamp(max(epoch, 0.0), UTC)
    return f"{prefix}{partition(hour)}{moment:%Y%m%dT%H%M%S}"


def hours(since: float, until: float) -> list[datetime]:
    """Every UTC hour from the one ``since`` falls in to the one ``until`` falls in."""
    first, last = hour_of(since), hour_of(until)
    found: list[datetime] = []
    while first <= last:
        found.append(first)
        first += timedelta(hours=1)
    return found


def scanned_hour(line: str, *, fallback_ms: int) -> datetime:
    """The hour a staged line's result was scanned (the taking time for a line that does
    not say, which no line of ours is)."""
    try:
        scanned = float(json.loads(line).get("scanned_at") or 0.0)
    except (ValueError, AttributeError, TypeError):
        scanned = 0.0
    return hour_of(scanned if scanned > 0 else fallback_ms / 1000)
