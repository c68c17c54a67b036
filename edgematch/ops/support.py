"""What the on-call commands share: a quiet runtime, and argparse types for times and rates.

The tools print their answers to stdout (tables, or JSON with ``--json``) and progress to
stderr; log events go to stderr too, warnings and errors only unless
``EDGEMATCH_LOG_LEVEL=DEBUG``, so a JSON answer can be piped into ``jq`` as it is. Heavy
modules are imported by the command that runs, never to build the parser, so
``edgematch --help`` stays fast.

Object keys are any UTF-8 text: JSON answers carry them as text (``ensure_ascii=False``;
JSON escapes control characters), and tables show them through :func:`printable`, so a
key with a newline or a terminal escape cannot break a table or the terminal. A terminal
whose encoding cannot show a character gets a backslash escape, not a crash
(:func:`safe_streams`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from edgematch.ops.timespec import parse_duration, parse_moment

if TYPE_CHECKING:
    from edgematch.runtime import Runtime


def tool_runtime() -> Runtime:
    """This process's runtime, with logs set up for a command-line tool.

    Raises ConfigurationError (exit status 2) for a bad setting.
    """
    # Imported here: `--help` must not pay for Redis, boto3 and httpx.
    from edgematch.infra import logs
    from edgematch.runtime import runtime

    rt = runtime()
    level = "DEBUG" if rt.settings.log_level == "DEBUG" else "WARNING"
    logs.configure(level, rt.settings.log_format, process="cli")
    if rt.settings.subscription_key:
        logs.register_secret(rt.settings.subscription_key.reveal())
    return rt


def moment(text: str) -> float:
    """argparse type: a date, a date and time, or a duration back from now → epoch seconds."""
    try:
        return parse_moment(text, now=time.time())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    """argparse type: ``7d``, ``6h``, ``1h30m`` → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def rate(text: str) -> float:
    """argparse type: a positive, finite number per second."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number per second, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number per second, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {text!r}")
    return value


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
