"""Where edgematch's CPU goes: py-spy profiles grouped into causes.

``python -m bench --profile DIR`` records one py-spy profile (``--format raw``, collapsed
stacks, ``--gil``: only samples taken while Python code holds the GIL) for each of
edgematch's processes. ``python -m bench.causes DIR --bench OUT.json`` reads them and puts
each sample in the first cause whose pattern one of its frames matches, in the order of
``CAUSES`` (logging inside an S3 call counts as logs, not S3), and prints each cause's share
of the samples and, with the run's ``--out`` file, its ms a hash: the share times the CPU
the run measured for that process a hash (the profile misses C code running without the
GIL, so its own sample count under-states the total; the shares are what it tells).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Final

#: (cause, frame substrings), first match wins. A frame reads ``func (path/file.py:line)``.
CAUSES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("logs", ("(structlog/", "(logging/", "edgematch/infra/logs.py")),
    (
        "S3 tags GET/PUT + lock",
        ("edgematch/pipeline/tagging.py", "ObjectStore.merge_tags", "ObjectStore.get_tags"),
    ),
    ("hash GET", ("ObjectStore.read_hash", "edgematch/pipeline/ingest.py")),
    ("publishing", ("edgematch/recovery/publishing.py", "Task.apply_async", "send_task")),
    ("pump (match, API request)", ("edgematch/pipeline/match.py", "edgematch/pipeline/request.py")),
    (
        "recording results (Redis)",
        ("edgematch/pipeline/recording.py", "edgematch/pipeline/settling.py"),
    ),
    ("Celery/kombu per task", ("(celery/", "(kombu/", "(billiard/")),
    ("other edgematch", ("(edgematch/",)),
)
OTHER: Final = "other"


def cause_of(stack: str) -> str:
    """The cause a collapsed stack (frames joined by ``;``) belongs to. Pure."""
    for cause, patterns in CAUSES:
        if any(pattern in stack for pattern in patterns):
            return cause
    return OTHER


def read(path: Path) -> Counter[str]:
    """Samples by cause in one py-spy raw profile."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[cause_of(stack)] += int(n)
    return counts


def table(counts: Counter[str], cpu_ms_per_hash: float | None) -> list[dict[str, object]]:
    """Causes, biggest first, with their share (%) and, given the measured CPU, ms a hash."""
    total = sum(counts.values()) or 1
    rows: list[dict[str, object]] = []
    for cause, n in counts.most_common():
        row: dict[str, object] = {"cause": cause, "samples": n, "pct": round(100 * n / total, 1)}
        if cpu_ms_per_hash is not None:
            row["ms_per_hash"] = round(cpu_ms_per_hash * n / total, 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.causes", description=__doc__)
    parser.add_argument("dir", type=Path, help="the --profile DIR of a bench run")
    parser.add_argument("--bench", type=Path, help="that run's --out file (for ms a hash)")
    parser.add_argument("--tag", default="", help="only profiles whose name starts with it")
    args = parser.parse_args(argv)
    measured: dict[str, float] = {}
    if args.bench:
        rows = json.loads(args.bench.read_text())["rows"]
        measured = {k: float(v) for k, v in rows[0]["cpu_ms_per_hash"].items()}
    for path in sorted(args.dir.glob(f"{args.tag}*.txt")):
        process = path.stem.rsplit("-", 1)[-1]
        cpu = measured.get(process)
        print(f"{path.name}: {cpu if cpu is not None else '?'} ms CPU a hash measured")
        for row in table(read(path), cpu):
            ms = f"{row['ms_per_hash']:7.3f} ms" if "ms_per_hash" in row else ""
            print(f"  {row['cause']:<28} {row['pct']:5.1f} %  {ms}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
