"""What the commands share: how they print, how they refuse, and how groups behave.

The tools print their answers to stdout (tables, or JSON with ``--json``) and progress to
stderr; log events go to stderr too, warnings and errors only unless
``EDGEMATCH_LOG_LEVEL=DEBUG``, so a JSON answer can be piped into ``jq`` as it is.

Object keys are any UTF-8 text: JSON answers carry them as text (``ensure_ascii=False``;
JSON escapes control characters), and tables show them through :func:`printable`, so a
key with a newline or a terminal escape cannot break a table or the terminal. A terminal
whose encoding cannot show a character gets a backslash escape, not a crash
(:func:`safe_streams`).

This module is imported to build ``edgematch --help``: it imports nothing but click.
"""

from __future__ import annotations

import difflib
import json
import sys
from typing import Any

import click

#: Every command and group answers ``-h`` as well as ``--help``, as before.
CONTEXT: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Refused(click.UsageError):
    """A request understood and refused as given (``--all`` with IDs, purge without
    ``--yes``): exit status 2, one line naming the command, no pointer to ``--help``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, click.get_current_context(silent=True))


class Group(click.Group):
    """A group of actions (``dlq``, ``reports``): without an action it prints its help and
    exits 2; a misspelt action gets the closest name suggested; ``--help`` lists the
    actions in the order they are defined."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they are defined, not sorted

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and not ctx.resilient_parsing:
            click.echo(ctx.get_help())
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise click.UsageError(f"no such command {printable(name)!r}{hint}", ctx)
        return super().resolve_command(ctx, args)


# --- what the commands print --------------------------------------------------------------


def printable(text: str) -> str:
    """``text`` for a table: characters that are not printable (controls, bidi overrides,
    line separators …) as Python escapes (``\\n``, ``\\u202e``); the rest as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dumps(doc: Any, **options: Any) -> str:
    """A JSON answer with text as text (unicode keys readable, controls still escaped)."""
    return json.dumps(doc, ensure_ascii=False, **options)


def safe_streams() -> None:
    """Let stdout and stderr escape what their encoding cannot show, instead of raising
    UnicodeEncodeError half-way through an answer (a unicode key on a latin-1 terminal)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:  # a TextIOWrapper; tests may swap in a StringIO
            reconfigure(errors="backslashreplace")
