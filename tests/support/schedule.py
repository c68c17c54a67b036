"""Longest tests first across pytest-xdist workers, from a committed list of durations.

The process tiers are a few scenarios of one to two minutes and hundreds of tests of a
second. Run in file order on three workers, a long scenario that starts last decides when
the run ends. So the collection is sorted by how long each test took when the list was
last recorded (``tests/durations.json``; a test not in it gets its tier's typical length),
and the scheduler hands the tests out one at a time in that order: the long ones start at
once, side by side, and the short ones fill in around them.

``scripts/test --record-durations`` refreshes the list from a full run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
#: Seconds assumed for a test missing from the list, by tier marker (unmarked: fast tier).
TYPICAL_S = {"chaos": 90.0, "e2e": 45.0, "integration": 2.0}
UNMARKED_S = 0.1


def load(path: Path = DURATIONS) -> dict[str, float]:
    """Test id → seconds, from the committed list (empty when there is none)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in doc.items()}


def estimate(nodeid: str, markers: Sequence[str], known: Mapping[str, float]) -> float:
    """How long ``nodeid`` should take: its recorded time, else the mean of its recorded
    parametrizations, else its tier's typical length. Pure."""
    if nodeid in known:
        return known[nodeid]
    base = nodeid.split("[", 1)[0]
    siblings = [s for k, s in known.items() if k.split("[", 1)[0] == base]
    if siblings:
        return sum(siblings) / len(siblings)
    return max((TYPICAL_S[m] for m in markers if m in TYPICAL_S), default=UNMARKED_S)


def longest_first(items: list[pytest.Item], known: Mapping[str, float]) -> None:
    """Sort ``items`` in place, longest expected first (ties keep collection order)."""
    marks = {id(i): [m.name for m in i.iter_markers()] for i in items}
    items.sort(key=lambda i: -estimate(i.nodeid, marks[id(i)], known))


def merge(old: Mapping[str, float], measured: Mapping[str, float]) -> dict[str, float]:
    """The list after a run: every measured test's new time (rounded), others kept. Pure."""
    merged = dict(old)
    merged.update({k: round(v, 1) for k, v in measured.items()})
    return dict(sorted(merged.items()))


def save(durations: Mapping[str, float], path: Path = DURATIONS) -> None:
    path.write_text(json.dumps(durations, indent=1) + "\n", encoding="utf-8")


class LongestFirst(LoadScheduling):  # type: ignore[misc]  # xdist ships no type hints
    """xdist's load scheduling with chunks of one: each worker holds the test it runs and
    the next one (a worker must know its next test), and the first ones go round-robin, so
    the longest tests start on different workers."""

    collection: list[str] | None  # the test ids every worker collected, in order

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self.maxschedchunk = 1

    def schedule(self) -> None:
        if self.collection is not None or not self._check_nodes_have_same_collection():
            super().schedule()
            return
        collection: list[str] = next(iter(self.node2collection.values()))
        self.collection = collection
        self.pending[:] = range(len(collection))
        for _ in range(2):
            for node in self.nodes:
                if self.pending:
                    self._send_tests(node, 1)
        if not self.pending:
            for node in self.nodes:
                node.shutdown()


class Recorder:
    """Adds up each process-tier test's setup, call and teardown time and merges them into
    the list at the end of the run (in the controlling process: under xdist, the workers'
    reports come to it)."""

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.measured: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not any(tier in report.keywords for tier in TYPICAL_S):
            return  # the fast tier runs in one process, in file order: no need to know
        self.measured[report.nodeid] = self.measured.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        if self.measured:
            save(merge(load(self.path), self.measured), self.path)
