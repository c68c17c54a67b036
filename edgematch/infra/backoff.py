"""Retry delays: capped exponential backoff with "equal jitter".

Every duration here is in **seconds** (``float``). The functions are pure apart from the
random draw, which the caller may pin with its own :class:`random.Random`.

Raises :class:`ValueError` for arguments that are a caller's bug (``attempt < 1``, a
negative or non-finite base or cap, a jitter outside ``[0, 1]``).
"""

from __future__ import annotations

import math
import random

__all__ = ["backoff_ceiling", "compute_backoff"]

# The jitter is for spreading retries, not for secrecy, but SystemRandom costs nothing here
# and keeps workers forked from one parent from drawing the same sequence.
_DEFAULT_RNG = random.SystemRandom()


def backoff_ceiling(attempt: int, *, base_s: float, cap_s: float) -> float:
    """The delay before jitter, in seconds: ``min(cap_s, base_s * 2 ** (attempt - 1))``.

    Non-decreasing in ``attempt``; never above ``cap_s``. Raises ValueError as
    :func:`compute_backoff` does.
    """
    _check(attempt, base_s, cap_s, 0.0)
    try:
        # ldexp is exact (no rounding of 2 ** n) and raises instead of returning inf.
        return min(cap_s, math.ldexp(base_s, attempt - 1))
    except OverflowError:
        # Only a positive base can overflow, and then the true product exceeds any cap.
        return cap_s


def compute_backoff(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> float:
    """The delay to wait before retry number ``attempt`` (1 for the first retry), in seconds.

    With ``d = backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s)`` the result lies in
    ``[(1 - jitter) * d, d]``: ``jitter=0.5`` is the classic "equal jitter" (half fixed,
    half random), ``jitter=0`` is plain exponential backoff, ``jitter=1`` is "full jitter".
    The result is never negative and never above ``cap_s``.

    Raises ValueError when ``attempt < 1``, ``base_s`` or ``cap_s`` is negative or not
    finite, or ``jitter`` is outside ``[0, 1]``.
    """
    _check(attempt, base_s, cap_s, jitter)
    ceiling = backoff_ceiling(attempt, base_s=base_s, cap_s=cap_s)
    draw = (rng if rng is not None else _DEFAULT_RNG).random()  # in [0, 1)
    delay = ceiling - draw * jitter * ceiling
    # Rounding can never push the result outside [0, ceiling], but a guard costs nothing.
    return min(ceiling, max(0.0, delay))


def _check(attempt: int, base_s: float, cap_s: float, jitter: float) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise ValueError(f"attempt must be a whole number, got {attempt!r}")
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not math.isfinite(base_s) or base_s < 0:
        raise ValueError(f"base_s must be a finite number >= 0, got {base_s!r}")
    if not math.isfinite(cap_s) or cap_s < 0:
        raise ValueError(f"cap_s must be a finite number >= 0, got {cap_s!r}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
