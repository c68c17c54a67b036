"""Unit tests for edgematch.pipeline.buffer.limiter_window (pure; no Redis)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.pipeline.buffer import limiter_window

rates = st.floats(min_value=0.01, max_value=100_000.0, allow_nan=False, allow_infinity=False)
margins = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)


def _max_in_one_second(rate: float, margin: float, horizon_ms: int = 4000) -> int:
    """Greedy clients against the sliding log of take_batch.lua, at 1 ms resolution.

    Returns the most requests admitted in any half-open one-second interval.
    """
    per_window, window_ms = limiter_window(rate, margin)
    log: list[int] = []
    admitted: list[int] = []
    for now in range(horizon_ms):
        # ZREMRANGEBYSCORE log -inf (now - window); admit while ZCARD < per_window.
        log = [t for t in log if t > now - window_ms]
        while len(log) < per_window:
            log.append(now)
            admitted.append(now)
    return max(sum(1 for t in admitted if start <= t < start + 1000) for start in admitted)


@pytest.mark.parametrize(
    ("rate", "margin", "expected"),
    [
        (1.0, 0.0, (1, 1000)),
        (5.0, 0.0, (5, 1000)),
        (5.0, 0.02, (5, 1020)),
        (10.0, 0.1, (10, 1100)),
        (100.0, 0.0, (100, 1000)),
    ],
)
def test_whole_rate_is_that_many_per_widened_second(
    rate: float, margin: float, expected: tuple[int, int]
) -> None:
    """A whole rate R gives R requests per 1000 ms widened by the margin."""
    assert limiter_window(rate, margin) == expected


@pytest.mark.parametrize(("margin", "window_ms"), [(0.0, 1000), (0.02, 1020), (0.5, 1500)])
def test_seven_and_a_half_runs_at_seven_per_second(margin: float, window_ms: int) -> None:
    """7.5/s becomes 7 requests per second × (1 + margin): no second may see an eighth."""
    assert limiter_window(7.5, margin) == (7, window_ms)


@pytest.mark.parametrize(("margin", "window_ms"), [(0.0, 2000), (0.02, 2040), (0.5, 3000)])
def test_half_a_request_per_second(margin: float, window_ms: int) -> None:
    """0.5/s becomes 1 request per 2000 ms × (1 + margin)."""
    assert limiter_window(0.5, margin) == (1, window_ms)


@pytest.mark.parametrize(
    ("rate", "margin"),
    [
        (0.0, 0.0),
        (-0.0, 0.02),
        (-1.0, 0.02),
        (math.nan, 0.02),
        (math.inf, 0.02),
        (-math.inf, 0.02),
        (5.0, -0.01),
        (5.0, 1.0),
        (5.0, 1.5),
        (5.0, math.nan),
        (5.0, math.inf),
    ],
)
def test_bad_inputs_raise_value_error(rate: float, margin: float) -> None:
    """A rate that is not a positive finite number, or a margin outside [0, 1), is refused."""
    with pytest.raises(ValueError, match=r"rate|margin"):
        limiter_window(rate, margin)


@pytest.mark.parametrize("rate", [1e-310, 1e-9])
def test_vanishing_rate_raises_value_error(rate: float) -> None:
    """A positive rate too small to express as a window is refused with ValueError."""
    with pytest.raises(ValueError, match="rate"):
        limiter_window(rate, 0.0)


@given(rate=rates, margin=margins)
def test_at_least_one_request_per_window(rate: float, margin: float) -> None:
    """per_window is a whole number ≥ 1 (the whole part of the rate) and the window ≥ 1 ms."""
    per_window, window_ms = limiter_window(rate, margin)
    assert isinstance(per_window, int)
    assert isinstance(window_ms, int)
    assert per_window >= 1
    assert per_window == max(1, math.floor(rate))
    assert window_ms >= 1


@given(rate=rates, margin=margins)
def test_average_rate_never_exceeds_the_limit(rate: float, margin: float) -> None:
    """per_window / window never exceeds the configured rate (exact arithmetic)."""
    per_window, window_ms = limiter_window(rate, margin)
    assert Fraction(per_window * 1000, window_ms) <= Fraction(rate)


@given(rate=rates, margin=margins)
def test_window_is_a_widened_second_or_one_request_interval(rate: float, margin: float) -> None:
    """At 1/s or more the window is one second; below, one request interval; × (1 + margin)."""
    _, window_ms = limiter_window(rate, margin)
    seconds = Fraction(1) if rate >= 1 else 1 / Fraction(rate)
    exact = seconds * 1000 * (1 + Fraction(margin))
    assert exact * (1 - Fraction(1, 10**12)) <= window_ms < exact + 1 + exact / 10**12


@pytest.mark.parametrize(("rate", "margin"), [(1.0, 0.0), (5.0, 0.0), (5.0, 0.02), (10.0, 0.1)])
def test_whole_rate_holds_in_every_second(rate: float, margin: float) -> None:
    """For a whole rate, greedy clients never get more than the rate into one second."""
    assert _max_in_one_second(rate, margin) <= rate


@pytest.mark.parametrize(("rate", "margin"), [(7.5, 0.02), (1.5, 0.02), (4.9, 0.0)])
def test_fractional_rate_holds_in_every_second(rate: float, margin: float) -> None:
    """For a fractional rate too, greedy clients never get more than the rate into one second."""
    assert _max_in_one_second(rate, margin) <= rate
