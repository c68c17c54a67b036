"""What the on-call commands share: a quiet runtime, and argparse types for times and rates.

The tools print their answers to stdout (tables, or JSON with ``--json``) and progress to
stderr; log events go to stderr too, warnings and errors only unless
``EDGEMATCH_LOG_LEVEL=DEBUG``, so a JSON answer can be piped into ``jq`` as it is. Heavy
modules are imported by the command that runs, never to build the parser, so
``edgematch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import TYPE_CHECKING

from edgematch.worker.timespec import parse_duration, parse_moment

if TYPE_CHECKING:
    from edgematch.worker.runtime import Runtime


def tool_runtime() -> Runtime:
    """This process's runtime, with logs set up for a command-line tool.

    Raises ConfigurationError (exit status 2) for a bad setting.
    """
    # Imported here: `--help` must not pay for Redis, boto3 and httpx.
    from edgematch.worker import logs
    from edgematch.worker.runtime import runtime

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
