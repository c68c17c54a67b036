"""Pure arithmetic of the benchmark, and reading CPU time from ``/proc``.

The ceiling. The sandbox admits at most ``R`` requests in any one-second sliding window, so
over a run whose answered requests span ``T`` seconds (first to last) at most
``R × (⌊T⌋ + 1)`` requests can be accepted: ``R`` at once at the start (the initial burst),
then ``R`` more each second. We count the ceiling as ``5 × R × (T + 1)`` hashes, which is
never less than that, so a utilisation of 1.0 means every request the quota allowed
carried 5 hashes, burst included.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

HASHES_PER_REQUEST = 5


def ceiling_hashes(rate: float, span_s: float) -> float:
    """Most hashes the API can accept between a first and last answer ``span_s`` apart."""
    return HASHES_PER_REQUEST * math.floor(rate) * (max(0.0, span_s) + 1.0)


def utilisation(hashes: int, rate: float, span_s: float) -> float:
    """Hashes scanned as a fraction of :func:`ceiling_hashes`."""
    if hashes <= 0:
        return 0.0
    return hashes / ceiling_hashes(rate, span_s)


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by linear interpolation between closest ranks (NaN if empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# -- CPU time of process trees ----------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw.rpartition(")")[2].split()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from the parent ids in ``/proc``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_ms(pids: Iterable[int]) -> float:
    """utime + stime of the live processes ``pids``, in milliseconds."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # Fields 14 and 15 of /proc/<pid>/stat; index 0 here is field 3 (state).
            total += int(fields[11]) + int(fields[12])
    return total * 1000.0 / _TICKS


class TreeCPU:
    """CPU milliseconds of a process tree since :meth:`start`, counting processes that
    appear later and keeping what processes that exit had used at the last sample."""

    def __init__(self, root: int) -> None:
        self.root = root
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def _sample(self) -> dict[int, float]:
        return {pid: cpu_ms([pid]) for pid in descendants(self.root)}

    def start(self) -> None:
        self._base = self._sample()
        self._last = dict(self._base)

    def poll(self) -> None:
        """Sample again (call now and then, so a short-lived child is not missed)."""
        self._last.update(self._sample())

    def used_ms(self) -> float:
        self.poll()
        return sum(v - self._base.get(pid, 0.0) for pid, v in self._last.items())


def machine_busy_ms() -> float:
    """CPU milliseconds every core of the machine has spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) * 1000.0 / _TICKS


class MachineLoad:
    """How busy the machine was over a phase, and how much of that was not this benchmark
    (other people's work on a shared machine), in cores."""

    def __init__(self) -> None:
        self._mine = TreeCPU(os.getpid())

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_ms()
        self._mine.start()

    def poll(self) -> None:
        self._mine.poll()

    def result(self) -> dict[str, float]:
        elapsed_ms = max(1.0, (time.monotonic() - self._t0) * 1000.0)
        busy = machine_busy_ms() - self._busy0
        mine = self._mine.used_ms()
        return {
            "busy_cores": round(busy / elapsed_ms, 2),
            "bench_cores": round(mine / elapsed_ms, 2),
            "others_cores": round(max(0.0, busy - mine) / elapsed_ms, 2),
        }


# -- steady state ----------------------------------------------------------------------

#: Requests a steady-state figure needs to count (the issue's floor).
STEADY_MIN_REQUESTS = 200


def steady_state(rate: float, requests: Sequence[tuple[float, int]]) -> dict[str, float | int]:
    """Throughput over the saturated part of a run, not crediting the initial burst.

    ``requests``: each accepted request's (answer time, hashes), in time order. The first
    second after the first answer is left out (the burst the sandbox admits at once); over
    the rest, from its first request to its last, the rate is (requests − 1) / span and the
    hashes those requests after the first carried / span. ``utilisation`` is that hash rate
    over 5 × R; ``enough`` says whether at least :data:`STEADY_MIN_REQUESTS` were counted.
    """
    if not requests:
        return {"requests": 0, "utilisation": 0.0, "enough": False}
    start = requests[0][0] + 1.0
    window = [(t, n) for t, n in requests if t >= start]
    if len(window) < 2:
        return {"requests": len(window), "utilisation": 0.0, "enough": False}
    span = window[-1][0] - window[0][0]
    hashes = sum(n for _, n in window[1:])
    per_s = (len(window) - 1) / span if span > 0 else 0.0
    hashes_per_s = hashes / span if span > 0 else 0.0
    return {
        "requests": len(window),
        "span_s": round(span, 3),
        "requests_per_s": round(per_s, 3),
        "hashes_per_s": round(hashes_per_s, 3),
        "utilisation": round(hashes_per_s / (HASHES_PER_REQUEST * math.floor(rate)), 4),
        "request_utilisation": round(per_s / math.floor(rate), 4),
        "enough": len(window) >= STEADY_MIN_REQUESTS,
    }
