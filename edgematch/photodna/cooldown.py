"""How long the pool waits after a 429, and whether a probe goes first. Pure.

A 429 asks, with ``Retry-After``, that nothing be sent for a while, and the whole pool
honours it (one cooldown in Redis). But one header must not stop the pool for an hour:
with the publication gate off, uploads are served unscanned meanwhile; with it on, they
are not served at all. So the pool waits at most ``EDGEMATCH_MAX_COOLDOWN_S``. A cooldown
cut short that way (*capped*) ends with one probe request, like the credential breaker's:
the other pumps wait for its answer. A 429 again starts another (capped) cooldown; any
other answer from the API lets the pool resume. The probe costs one request per ceiling
while the API keeps refusing — nothing beside a quota of several requests a second.

``asked_s`` is bounded already by the API client's parse (``api.RETRY_AFTER_CAP_S``, an
hour), which keeps a nonsense header from living in Redis for years; what the server
asked is kept as long as it asked (so ``edgematch status`` can say it), not longer.

Every duration is in seconds. Raises ValueError for a negative or non-finite value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Cooldown", "plan"]


@dataclass(frozen=True)
class Cooldown:
    """What the server asked for (``asked_s``) and what the pool waits (``hold_s``)."""

    asked_s: float
    hold_s: float

    @property
    def capped(self) -> bool:
        """Shorter than asked: at its end one probe request goes before the pool resumes."""
        return self.hold_s < self.asked_s


def plan(retry_after_s: float, *, ceiling_s: float) -> Cooldown:
    """The cooldown for a 429 that asked for ``retry_after_s``: all of it up to
    ``ceiling_s`` (EDGEMATCH_MAX_COOLDOWN_S), else ``ceiling_s`` and a probe."""
    for name, value in (("retry_after_s", retry_after_s), ("ceiling_s", ceiling_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return Cooldown(asked_s=retry_after_s, hold_s=min(retry_after_s, ceiling_s))
