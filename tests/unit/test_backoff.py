"""Unit tests for edgematch.infra.backoff (pure; no I/O)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.infra.backoff import backoff_ceiling, compute_backoff

attempts = st.integers(min_value=1, max_value=5000)
bases = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
caps = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
jitters = st.floats(min_value=0.0, max_value=1.0)


class _FixedRandom(random.Random):
    """A Random whose random() always returns one value, to pin the jitter draw."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self._value = value

    def random(self) -> float:
        return self._value


def test_first_attempts_double_from_base() -> None:
    """Without jitter the delays are base, 2*base, 4*base ... in seconds."""
    delays = [compute_backoff(n, base_s=1.5, cap_s=1000.0, jitter=0.0) for n in range(1, 6)]
    assert delays == [1.5, 3.0, 6.0, 12.0, 24.0]


def test_cap_is_never_exceeded() -> None:
    """Once base * 2**(n-1) passes the cap, the delay is the cap (no jitter)."""
    assert compute_backoff(10, base_s=1.0, cap_s=300.0, jitter=0.0) == 300.0
    assert compute_backoff(10_000, base_s=1.0, cap_s=300.0, jitter=0.0) == 300.0


def test_jitter_draw_zero_gives_the_ceiling() -> None:
    """A random draw of 0 gives the full ceiling d."""
    assert compute_backoff(3, base_s=1.0, cap_s=100.0, rng=_FixedRandom(0.0)) == 4.0


def test_jitter_draw_near_one_gives_the_floor() -> None:
    """A random draw near 1 gives close to (1 - jitter) * d: equal jitter halves at most."""
    delay = compute_backoff(3, base_s=1.0, cap_s=100.0, jitter=0.5, rng=_FixedRandom(0.999999))
    assert delay == pytest.approx(2.0, abs=1e-5)
    assert delay >= 2.0


def test_full_jitter_can_reach_zero_but_not_below() -> None:
    """jitter=1 ranges down to 0 s and never goes negative."""
    delay = compute_backoff(2, base_s=1.0, cap_s=10.0, jitter=1.0, rng=_FixedRandom(0.9999999))
    assert 0.0 <= delay < 1e-5


def test_seeded_rng_is_reproducible() -> None:
    """The same seed gives the same sequence of delays."""
    first = [compute_backoff(n, base_s=1.0, cap_s=60.0, rng=random.Random(7)) for n in (1, 2, 3)]
    again = [compute_backoff(n, base_s=1.0, cap_s=60.0, rng=random.Random(7)) for n in (1, 2, 3)]
    assert first == again


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_attempt_below_one_is_rejected(attempt: int) -> None:
    """attempt counts from 1; 0 and negatives raise ValueError."""
    with pytest.raises(ValueError, match="attempt"):
        compute_backoff(attempt, base_s=1.0, cap_s=10.0)


@pytest.mark.parametrize(
    ("base_s", "cap_s", "jitter"),
    [(-1.0, 10.0, 0.5), (1.0, -1.0, 0.5), (math.nan, 10.0, 0.5), (1.0, math.inf, 0.5),
     (1.0, 10.0, -0.1), (1.0, 10.0, 1.1), (1.0, 10.0, math.nan)],
)  # fmt: skip
def test_bad_parameters_are_rejected(base_s: float, cap_s: float, jitter: float) -> None:
    """Negative or non-finite base/cap and a jitter outside [0, 1] raise ValueError."""
    with pytest.raises(ValueError):
        compute_backoff(1, base_s=base_s, cap_s=cap_s, jitter=jitter)


def test_non_integer_attempt_is_rejected() -> None:
    """A bool or float attempt is a caller's bug and raises ValueError."""
    with pytest.raises(ValueError):
        compute_backoff(True, base_s=1.0, cap_s=10.0)
    with pytest.raises(ValueError):
        compute_backoff(1.5, base_s=1.0, cap_s=10.0)  # type: ignore[arg-type]


@given(attempt=attempts, base_s=bases, cap_s=caps, jitter=jitters, seed=st.integers())
def test_result_within_jitter_range(
    attempt: int, base_s: float, cap_s: float, jitter: float, seed: int
) -> None:
    """The delay lies in [(1 - jitter) * d, d] with d the capped ceiling, and in [0, cap]."""
    ceiling = backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s)
    delay = compute_backoff(
        attempt, base_s=base_s, cap_s=cap_s, jitter=jitter, rng=random.Random(seed)
    )
    exact = Fraction(base_s) * 2 ** (attempt - 1)
    assert ceiling == (cap_s if exact > Fraction(cap_s) else float(exact))
    assert (1.0 - jitter) * ceiling * (1 - 1e-12) <= delay <= ceiling
    assert 0.0 <= delay <= cap_s
    assert math.isfinite(delay)


@given(attempt=attempts, base_s=bases, cap_s=caps)
def test_upper_bound_is_monotone(attempt: int, base_s: float, cap_s: float) -> None:
    """The ceiling never decreases from one attempt to the next."""
    assert backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s) <= backoff_ceiling(
        attempt + 1, base_s=base_s, cap_s=cap_s
    )


@given(attempt=attempts, base_s=bases, cap_s=caps, seed=st.integers())
def test_no_jitter_means_exactly_the_ceiling(
    attempt: int, base_s: float, cap_s: float, seed: int
) -> None:
    """With jitter=0 the delay is deterministic and equals the ceiling."""
    assert compute_backoff(
        attempt, base_s=base_s, cap_s=cap_s, jitter=0.0, rng=random.Random(seed)
    ) == backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s)
