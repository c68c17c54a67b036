"""Unit tests for edgematch.photodna.cooldown (pure): a 429's wait is capped, then one probe."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.photodna.cooldown import plan

CEILING_S = 60.0  # EDGEMATCH_MAX_COOLDOWN_S's default
seconds = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)


def test_an_hour_asked_is_a_minute_waited_then_a_probe() -> None:
    """Retry-After: 3600 holds the pool for the ceiling only, and asks for a probe after."""
    cooldown = plan(3600.0, ceiling_s=CEILING_S)
    assert (cooldown.asked_s, cooldown.hold_s, cooldown.capped) == (3600.0, 60.0, True)


def test_a_short_retry_after_is_honoured_whole_without_a_probe() -> None:
    """What API Management asks for a per-second limit (1 s …) is waited in full; the pool
    then resumes at once, as before."""
    for asked in (0.0, 1.0, 7.5, CEILING_S):
        cooldown = plan(asked, ceiling_s=CEILING_S)
        assert (cooldown.hold_s, cooldown.capped) == (asked, False)


@given(asked=seconds, ceiling=seconds)
def test_the_hold_never_passes_the_ceiling_nor_what_was_asked(asked: float, ceiling: float) -> None:
    """hold = min(asked, ceiling); a probe goes first exactly when the hold is cut short."""
    cooldown = plan(asked, ceiling_s=ceiling)
    assert cooldown.hold_s == min(asked, ceiling)
    assert cooldown.capped == (asked > ceiling)
    assert cooldown.asked_s == asked


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_nonsense_durations_are_a_callers_bug(bad: float) -> None:
    """A negative or non-finite duration is refused (the API client never produces one)."""
    with pytest.raises(ValueError, match="retry_after_s"):
        plan(bad, ceiling_s=CEILING_S)
    with pytest.raises(ValueError, match="ceiling_s"):
        plan(1.0, ceiling_s=bad)
