"""The values the commands parse: times, days, durations, rates, steps, s3:// locations.

Each is a click parameter type, so a bad value is refused before the command runs, with a
one-line message naming the option (exit status 2).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import click

from edgematch.names import QUEUE_STEPS
from edgematch.ops.timespec import parse_duration, parse_moment
from edgematch.pipeline.events import parse_s3_uri

#: For --since and its kin: what a moment may be.
TIMES_HELP = "a date (2024-05-01, 2024-05-01T12:30Z) or a duration back from now (6h, 7d)"


class Moment(click.ParamType[float]):
    """A date, a date and time, or a duration back from now → epoch seconds."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_moment(str(value), now=time.time())
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Day(click.ParamType[dt.date]):
    """``2024-05-01`` → a date."""

    name = "day"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"expected YYYY-MM-DD, got {value!r}", param, ctx)


class Duration(click.ParamType[float]):
    """``7d``, ``6h``, ``1h30m`` → seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Rate(click.ParamType[float]):
    """A positive, finite number per second."""

    name = "rate"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            rate = float(value)
        except ValueError:
            self.fail(f"expected a number per second, got {value!r}", param, ctx)
        if not math.isfinite(rate) or rate <= 0:
            self.fail(f"expected a positive number per second, got {value!r}", param, ctx)
        return rate


class Steps(click.ParamType[tuple[str, ...]]):
    """Comma-separated pipeline steps (``ingest,match``) → a tuple of known steps."""

    name = "steps"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        steps = tuple(s.strip() for s in str(value).split(",") if s.strip())
        unknown = [s for s in steps if s not in QUEUE_STEPS]
        if unknown or not steps:
            self.fail(
                f"unknown step {unknown[0]!r}; the steps are {', '.join(QUEUE_STEPS)}"
                if unknown
                else f"name at least one step of {', '.join(QUEUE_STEPS)}",
                param,
                ctx,
            )
        return steps


class S3Uri(click.ParamType[tuple[str, str]]):
    """``s3://bucket/key`` (the key may be empty) → ``(bucket, key)``."""

    name = "s3uri"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_s3_uri(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


MOMENT = Moment()
DAY = Day()
DURATION = Duration()
RATE = Rate()
STEPS = Steps()
S3_URI = S3Uri()
