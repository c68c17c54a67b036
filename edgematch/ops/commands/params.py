"""The values the commands parse: times, days, durations, rates, steps, s3:// locations.

Each is a click parameter type, so a bad value is refused before the command runs, with a
one-line message naming the option and the reason (exit status 2).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any, TypeVar, cast

import click

from edgematch.names import QUEUE_STEPS
from edgematch.ops.timespec import parse_duration, parse_moment
from edgematch.pipeline.events import parse_s3_uri

#: For --since and its kin: what a moment may be.
TIMES_HELP = "a date (2024-05-01, 2024-05-01T12:30Z) or a duration back from now (6h, 7d)"


T = TypeVar("T")


class FromText(click.ParamType[T]):
    """A value read from its text by :meth:`parse`, which raises ValueError saying why not."""

    def parse(self, text: str) -> T:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):
            return cast(T, value)  # converted already
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Moment(FromText[float]):
    """A date, a date and time, or a duration back from now → epoch seconds."""

    name = "time"

    def parse(self, text: str) -> float:
        return parse_moment(text, now=time.time())


class Day(FromText[dt.date]):
    """``2024-05-01`` → a date."""

    name = "day"

    def parse(self, text: str) -> dt.date:
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected YYYY-MM-DD, got {text!r}") from None


class Duration(FromText[float]):
    """``7d``, ``6h``, ``1h30m`` → seconds."""

    name = "duration"

    def parse(self, text: str) -> float:
        return parse_duration(text)


class Rate(FromText[float]):
    """A positive, finite number per second."""

    name = "rate"

    def parse(self, text: str) -> float:
        try:
            rate = float(text)
        except ValueError:
            raise ValueError(f"expected a number per second, got {text!r}") from None
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"expected a positive number per second, got {text!r}")
        return rate


class Steps(FromText[tuple[str, ...]]):
    """Comma-separated pipeline steps (``ingest,match``) → a tuple of known steps."""

    name = "steps"

    def parse(self, text: str) -> tuple[str, ...]:
        steps = tuple(s.strip() for s in text.split(",") if s.strip())
        for step in steps:
            if step not in QUEUE_STEPS:
                raise ValueError(f"unknown step {step!r}; the steps are {', '.join(QUEUE_STEPS)}")
        if not steps:
            raise ValueError(f"name at least one step of {', '.join(QUEUE_STEPS)}")
        return steps


class S3Uri(FromText[tuple[str, str]]):
    """``s3://bucket/key`` (the key may be empty) → ``(bucket, key)``."""

    name = "s3uri"

    def parse(self, text: str) -> tuple[str, str]:
        return parse_s3_uri(text)


MOMENT = Moment()
DAY = Day()
DURATION = Duration()
RATE = Rate()
STEPS = Steps()
S3_URI = S3Uri()
