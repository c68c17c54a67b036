"""Print the chaos scenarios' ledger as the Markdown table docs/reliability.md shows.

Usage: ``.venv/bin/python tests/chaos/ledger.py [tests/chaos/results/ledger.json]``

The file is written by the chaos tests (tests/chaos/conftest.py), one entry per scenario.
Standard library only, so it runs anywhere the results file is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT = Path(__file__).resolve().parent / "results" / "ledger.json"
COLUMNS = (
    "scenario",
    "broker",
    "uploads",
    "results",
    "matches",
    "quarantined",
    "reports",
    "lost",
    "wrong verdicts",
    "duplicated effects",
    "dead letters",
    "every verdict, after the fault",
    "in the verdict log",
)


#: How each broker is named in the tables.
BROKERS = {"redis": "Redis", "rabbitmq": "RabbitMQ"}


def _letters(letters: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in letters.items()) or "0"


def _logged(entry: Mapping[str, Any]) -> str:
    """Results in the verdict log, and any recorded but missing from it or miscounted."""
    if "logged" not in entry:
        return "—"  # a row written before the verdict log
    text = str(entry["logged"])
    if entry.get("unlogged"):
        text += f" ({entry['unlogged']} missing)"
    if entry.get("miscounted"):
        text += f" (miscounted by {entry['miscounted']})"
    return text


def _seconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.1f} s"


def row(entry: Mapping[str, Any]) -> list[str]:
    """One scenario's cells, in COLUMNS order. Pure."""
    return [
        str(entry["scenario"]),
        BROKERS.get(str(entry.get("broker", "redis")), str(entry.get("broker"))),
        str(entry["uploads"]),
        str(entry["results"]),
        str(entry["matches"]),
        str(entry["quarantined"]),
        str(entry["reports"]),
        str(entry["lost"]),
        str(entry["wrong"]),
        str(entry["duplicated"]),
        _letters(entry.get("dead_letters") or {}),
        _seconds(entry.get("verdicts_s")),
        _logged(entry),
    ]


def table(book: Mapping[str, Any]) -> str:
    """The Markdown table of every scenario in a results document. Pure."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for entry in book.get("scenarios", {}).values():
        lines.append("| " + " | ".join(row(entry)) + " |")
    return "\n".join(lines)


def _outcome(entry: Mapping[str, Any]) -> str:
    """One scenario's promise on one broker: lost / wrong / duplicated, and its time. Pure."""
    held = (entry["lost"], entry["wrong"], entry["duplicated"]) == (0, 0, 0)
    text = (
        "kept"
        if held
        else (f"{entry['lost']} lost, {entry['wrong']} wrong, {entry['duplicated']} duplicated")
    )
    return (
        f"{text}; {_seconds(entry.get('verdicts_s'))}; {_letters(entry.get('dead_letters') or {})}"
    )


def both(book: Mapping[str, Any]) -> str:
    """The scenarios side by side on each broker (a dash where one did not run). Pure."""
    by_scenario: dict[str, dict[str, Mapping[str, Any]]] = {}
    for entry in book.get("scenarios", {}).values():
        broker = str(entry.get("broker", "redis"))
        by_scenario.setdefault(str(entry["scenario"]), {})[broker] = entry
    names = list(BROKERS)
    lines = [
        "| scenario | " + " | ".join(BROKERS[b] for b in names) + " |",
        "|---|" + "|".join("---" for _ in names) + "|",
    ]
    for scenario, entries in by_scenario.items():
        cells = [_outcome(entries[b]) if b in entries else "—" for b in names]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT
    try:
        book = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return 1
    print(table(book))
    print(
        "\nOn each broker (nothing lost, wrong or duplicated; every verdict after the fault; "
        "dead letters):\n"
    )
    print(both(book))
    notes = [(e["scenario"], e.get("notes")) for e in book.get("scenarios", {}).values()]
    for scenario, note in notes:
        if note:
            print(f"\n- {scenario}: {note}", end="")
    print(f"\n\n(written {book.get('written_at', '?')})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
