"""Command-line times and progress lines: parsing, formatting, rate and ETA. Pure."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest

from edgematch.ops.progress import Progress, bar, eta_s, render
from edgematch.ops.timespec import (
    format_duration,
    format_moment,
    parse_duration,
    parse_moment,
)

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("6h", 21_600), ("7d", 604_800), ("2w", 1_209_600),
     ("1h30m", 5400), ("1.5h", 5400), (" 2D ", 172_800)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations with units add up to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "h", "5 parsecs", "-3h", "1h-", "7dd"])
def test_bad_duration_says_what_is_expected(text: str) -> None:
    """A duration without a unit or with junk is refused with examples."""
    with pytest.raises(ValueError, match="15m"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T12:30", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T12:30:00Z", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("2024-05-01T14:30:00+02:00", datetime(2024, 5, 1, 12, 30, tzinfo=UTC)),
        ("6h", datetime(2024, 5, 10, 6, 0, tzinfo=UTC)),
        ("1d", datetime(2024, 5, 9, 12, 0, tzinfo=UTC)),
    ],
)
def test_parse_moment(text: str, expected: datetime) -> None:
    """Dates are UTC unless zoned; a duration counts back from now."""
    assert parse_moment(text, now=NOW) == expected.timestamp()


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "05/01/2024", ""])
def test_bad_moment_is_refused(text: str) -> None:
    """Anything that is neither a date nor a duration is refused with the accepted forms."""
    with pytest.raises(ValueError, match="2024-05-01"):
        parse_moment(text, now=NOW)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.4, "59s"), (192, "3m12s"), (3600, "1h00m"), (7380, "2h03m"),
     (90_000, "1d01h"), (None, "?"), (float("inf"), "?"), (-1, "?")],
)  # fmt: skip
def test_format_duration(seconds: float | None, text: str) -> None:
    """Durations print with at most two units; unknown ones as '?'."""
    assert format_duration(seconds) == text


def test_format_moment() -> None:
    """Moments print as ISO 8601 UTC."""
    assert format_moment(NOW) == "2024-05-10T12:00:00Z"
    assert format_moment(None) == "-"


def test_eta() -> None:
    """ETA is what is left over the rate; unknown without a total or a rate."""
    assert eta_s(25, 100, 5.0) == 15.0
    assert eta_s(120, 100, 5.0) == 0.0
    assert eta_s(25, None, 5.0) is None
    assert eta_s(25, 100, 0.0) is None


def test_bar_is_proportional_and_clamped() -> None:
    """The bar fills in proportion and never overflows its width."""
    assert bar(0, 10, width=10) == "[..........]"
    assert bar(5, 10, width=10) == "[#####.....]"
    assert bar(50, 10, width=10) == "[##########]"
    assert bar(0, 0, width=4) == "[####]"


def test_render_with_and_without_total() -> None:
    """A line shows counts, percent, rate and ETA; without a total, count and rate only."""
    line = render("backfill", 250, 1000, 50.0, note="paused")
    assert "250/1,000" in line and "25.0%" in line and "50.0/s" in line
    assert "ETA 15s" in line and line.endswith("paused")
    assert render("replay", 3, None, 1.5) == "replay  3  1.5/s"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_periodic_lines() -> None:
    """Off a terminal: a line per interval and one at the end, never a carriage return."""
    out, clock = io.StringIO(), Clock()
    progress = Progress("replay", 100, stream=out, tty=False, interval_s=10, clock=clock)
    for second in range(1, 31):
        clock.now = float(second)
        progress.advance()
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # t=1, 11, 21 and the final one
    assert "30/100" in lines[-1] and "1.0/s" in lines[-1] and "ETA 1m10s" in lines[-1]


def test_tty_progress_redraws_in_place() -> None:
    """On a terminal the line is redrawn in place and ended with a newline."""
    out, clock = io.StringIO(), Clock()
    progress = Progress("backfill", None, stream=out, tty=True, clock=clock)
    for step in range(5):
        clock.now = step * 0.5
        progress.advance()
    progress.finish()
    text = out.getvalue()
    assert text.count("\r\x1b[K") == 6 and text.endswith("\n")


def test_rate_counts_this_run_only() -> None:
    """A resumed run starts from its checkpoint but its rate counts only what it did."""
    clock = Clock()
    progress = Progress("backfill", 1000, done=900, stream=io.StringIO(), tty=False, clock=clock)
    clock.now = 10.0
    progress.advance(50)
    assert progress.rate_per_s == 5.0
    assert "950/1,000" in progress.line() and "ETA 10s" in progress.line()
