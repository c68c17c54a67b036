"""What taking from the batch buffer answers: a leased batch, a wait, or nothing waiting."""

from __future__ import annotations

from dataclasses import dataclass

from edgematch.pipeline.items import Item

__all__ = ["Batch", "Empty", "TakeResult", "Wait"]


@dataclass(frozen=True)
class Batch:
    """A leased batch. ``probe`` marks the one request that tests an open breaker."""

    id: str
    items: tuple[Item, ...]
    probe: bool


@dataclass(frozen=True)
class Wait:
    """Nothing may be sent for ``seconds``; ``reason`` says why (rate, linger, cooldown …)."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Empty:
    """No item waits in the buffer."""


TakeResult = Batch | Wait | Empty
