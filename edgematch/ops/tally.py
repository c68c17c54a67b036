"""Counting the verdict log: results by verdict, lane, bucket and day, each once. Pure.

A :class:`Tally` is fed the lines of one hour partition at a time (:meth:`Tally.add_hour`):
every copy of a result is in the partition of the hour it was scanned
(:mod:`edgematch.pipeline.verdictlog`), so counting each ``item_id`` once per partition
counts it once in all, and memory stays one hour's ids however long the range.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Tally:
    """Counts of the results scanned in ``[since, until)`` (epoch seconds)."""

    since: float
    until: float
    results: int = 0
    #: Copies of a result counted already (written twice), skipped.
    repeats: int = 0
    #: Lines without an ``item_id`` or a readable ``scanned_at``: not ours, not counted.
    unreadable: int = 0
    by_verdict: Counter[str] = field(default_factory=Counter)
    by_lane: Counter[str] = field(default_factory=Counter)
    by_bucket: Counter[str] = field(default_factory=Counter)
    #: Day (UTC, ``YYYY-MM-DD``) -> verdict -> results.
    by_day: dict[str, Counter[str]] = field(default_factory=dict)
    objects: int = 0

    def add_hour(self, objects: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        """Count the lines of every object of one hour partition."""
        seen: set[str] = set()
        for lines in objects:
            self.objects += 1
            for line in lines:
                self._add(line, seen)

    def _add(self, line: Mapping[str, Any], seen: set[str]) -> None:
        item_id = line.get("item_id")
        try:
            scanned_at = float(line.get("scanned_at") or 0.0)
        except (TypeError, ValueError):
            scanned_at = 0.0
        if not isinstance(item_id, str) or not item_id or scanned_at <= 0:
            self.unreadable += 1
            return
        if not self.since <= scanned_at < self.until:
            return
        if item_id in seen:
            self.repeats += 1
            return
        seen.add(item_id)
        verdict = str(line.get("verdict") or "?")
        self.results += 1
        self.by_verdict[verdict] += 1
        self.by_lane[str(line.get("lane") or "live")] += 1
        self.by_bucket[str(line.get("bucket") or "?")] += 1
        day = datetime.fromtimestamp(scanned_at, UTC).strftime("%Y-%m-%d")
        self.by_day.setdefault(day, Counter())[verdict] += 1

    def to_dict(self) -> dict[str, Any]:
        """The counts as plain JSON (keys sorted, days in order)."""
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "results": self.results,
            "repeats_skipped": self.repeats,
            "unreadable_lines": self.unreadable,
            "objects_read": self.objects,
            "by_verdict": dict(sorted(self.by_verdict.items())),
            "by_lane": dict(sorted(self.by_lane.items())),
            "by_bucket": dict(sorted(self.by_bucket.items())),
            "by_day": {
                day: {"results": sum(c.values()), **dict(sorted(c.items()))}
                for day, c in sorted(self.by_day.items())
            },
        }


def render(tally: Tally) -> str:
    """The counts for people: totals, then one table a day."""
    doc = tally.to_dict()
    lines = [
        f"verdicts of results scanned {doc['since']} to {doc['until']}: "
        f"{tally.results:,} results in {tally.objects:,} objects"
        + (f" ({tally.repeats:,} written twice, counted once)" if tally.repeats else "")
        + (f"; {tally.unreadable:,} unreadable lines not counted" if tally.unreadable else ""),
        "",
        "  by verdict  " + _pairs(tally.by_verdict),
        "  by lane     " + _pairs(tally.by_lane),
        "  by bucket   " + _pairs(tally.by_bucket),
    ]
    if tally.by_day:
        verdicts = sorted(tally.by_verdict)
        lines += [
            "",
            "  " + "  ".join([f"{'day':<10}", f"{'results':>10}"] + [f"{v:>12}" for v in verdicts]),
        ]
        for day, counts in sorted(tally.by_day.items()):
            cells = [f"{day:<10}", f"{sum(counts.values()):>10,}"]
            cells += [f"{counts.get(v, 0):>12,}" for v in verdicts]
            lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def _pairs(counter: Counter[str]) -> str:
    if not counter:
        return "-"
    return "  ".join(f"{name} {count:,}" for name, count in counter.most_common())


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
