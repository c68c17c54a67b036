"""The configuration reference, rendered from the settings' declarations.

``docs/configuration.md`` holds the reference between two marker comments; the text around
them is written by hand. From the repository's root::

    python -m edgematch.config.docs            # rewrite the reference in docs/configuration.md
    python -m edgematch.config.docs --check    # exit 1 if it differs from the declarations
    python -m edgematch.config.docs --print    # print the reference alone

A test runs the check, so a setting cannot change without its documentation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from edgematch.config.declare import Concern, Variable
from edgematch.config.settings import DAY_S, READ_ELSEWHERE, variables

BEGIN: Final = "<!-- settings:begin -->"
END: Final = "<!-- settings:end -->"
COMMAND: Final = "python -m edgematch.config.docs"
DEFAULT_PATH: Final = Path("docs/configuration.md")
_NOTICE = f"<!-- Generated from edgematch/config/settings.py by `{COMMAND}`: edit there. -->"


def reference(documented: Iterable[Variable] | None = None) -> str:
    """Markdown tables, one per concern, of every variable (Settings' and the others')."""
    found = tuple(documented) if documented is not None else (*variables(), *READ_ELSEWHERE)
    parts = [_NOTICE]
    for concern in Concern:
        rows = [_row(v) for v in found if v.spec.concern is concern]
        if rows:
            header = ["| variable | meaning | default | unit |", "|---|---|---|---|"]
            parts.append("\n".join([f"### {concern.value}", "", *header, *rows]))
    return "\n\n".join(parts) + "\n"


def _row(variable: Variable) -> str:
    cells = (
        " / ".join(f"`{name}`" for name in variable.names),
        variable.spec.help,
        default_text(variable),
        variable.spec.unit,
    )
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def default_text(variable: Variable) -> str:
    """The default as the reference shows it: the value in backticks, or the declared words."""
    value, unit = variable.default, variable.spec.unit
    if variable.spec.default_doc is not None:
        return variable.spec.default_doc
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return f"`{','.join(value)}`" if value else "empty"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if unit == "s" and isinstance(value, int) and value >= DAY_S and value % DAY_S == 0:
        return f"`{text}` ({value // DAY_S} days)"
    return f"`{text}`"


def splice(document: str, generated: str) -> str:
    """``document`` with the text between the markers replaced by ``generated``.

    Raises ValueError when the markers are missing, doubled or out of order.
    """
    if document.count(BEGIN) != 1 or document.count(END) != 1:
        raise ValueError(f"expected one {BEGIN} and one {END}")
    if document.index(END) < document.index(BEGIN):
        raise ValueError(f"{END} comes before {BEGIN}")
    head, rest = document.split(BEGIN)
    _, tail = rest.split(END)
    # Blank lines around the tables keep the markers out of them in every Markdown renderer.
    return f"{head}{BEGIN}\n{generated}\n{END}{tail}"


def spliced(document: str) -> str:
    """The generated text between the markers of ``document``, as :func:`splice` put it."""
    between = document.split(BEGIN, 1)[1].split(END, 1)[0]
    return between.removeprefix("\n").removesuffix("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Render the configuration reference from the declarations."
    )
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="default: %(default)s")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    mode.add_argument("--print", action="store_true", help="print the reference alone")
    args = parser.parse_args(argv)
    generated = reference()
    if args.print:
        sys.stdout.write(generated)
        return 0
    try:
        current = args.path.read_text(encoding="utf-8")
        updated = splice(current, generated)
    except (OSError, ValueError) as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            print(f"{args.path} is out of date: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if updated != current:
        args.path.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
