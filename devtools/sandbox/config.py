"""What the sandbox answers by: its key, rate, known hashes and faults, validated.

Changed at runtime through ``POST /_sandbox/faults`` (only :data:`CHANGEABLE_FIELDS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from devtools.sandbox.rules import DEFAULT_HASH_SIZE, normalize_digest

__all__ = ["CHANGEABLE_FIELDS", "DEFAULT_KEY", "FRACTIONS", "SandboxConfig", "is_number"]

DEFAULT_KEY = "sandbox-key"
#: The fault rates: fractions from 0 to 1.
FRACTIONS = ("fail_rate", "slow_rate", "item_3004_rate", "drop_rate", "conflict_rate")


def is_number(value: object) -> bool:
    """An int or a float; bool is an int subclass, but ``true`` is never a meaningful rate."""
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class SandboxConfig:
    """Everything the sandbox answers by. Validated on creation and on every change."""

    key: str = field(default=DEFAULT_KEY, repr=False)
    #: Accepted requests per second; 0 or negative means unlimited.
    rate: float = 10.0
    #: The only hash length answered 3000; any other length is 3002.
    hash_size: int = DEFAULT_HASH_SIZE
    #: Lowercase hex SHA-256 digests of hash files that are matches.
    known_sha256: set[str] = field(default_factory=set)
    #: Fraction of accepted requests answered 500 or 503.
    fail_rate: float = 0.0
    #: Fraction of accepted requests answered only after ``slow_s`` seconds.
    slow_rate: float = 0.0
    slow_s: float = 0.0
    #: Fraction of items answered with per-item status 3004.
    item_3004_rate: float = 0.0
    #: Fraction of accepted requests whose connection is closed with no answer at all.
    drop_rate: float = 0.0
    #: Fraction of 3000 items answered twice under one ContentId, the opposite verdict
    #: first: a clean before a known hit's match, a made-up match before a clean. No
    #: client can tell which is true; it must not take either for the item's verdict.
    conflict_rate: float = 0.0
    #: When set, every request with a good key gets this HTTP status until cleared.
    force_status: int | None = None
    #: The next ``throttle_next`` requests with a good key are answered 429 with
    #: ``Retry-After: throttle_retry_after_s`` (API Management's body), whatever the rate:
    #: a quota that asks for a long wait, once or a few times.
    throttle_next: int = 0
    throttle_retry_after_s: int = 1
    #: Seed of the fault-injection random generator, for reproducible runs.
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("key must be a non-empty string")
        if not is_number(self.rate) or math.isnan(self.rate):
            raise ValueError("rate must be a number")
        if isinstance(self.hash_size, bool) or not isinstance(self.hash_size, int):
            raise ValueError("hash_size must be an integer")
        if self.hash_size < 1:
            raise ValueError("hash_size must be at least 1")
        for name in FRACTIONS:
            value = getattr(self, name)
            if not is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number between 0 and 1")
        if not is_number(self.slow_s) or not 0.0 <= self.slow_s < math.inf:
            raise ValueError("slow_s must be a finite number of seconds, 0 or more")
        if self.force_status is not None and (
            isinstance(self.force_status, bool)
            or not isinstance(self.force_status, int)
            or not 400 <= self.force_status <= 599
        ):
            raise ValueError("force_status must be null or an HTTP status from 400 to 599")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")
        for name in ("throttle_next", "throttle_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more")
        # A fresh, normalized set: a replaced config never shares its set with the original.
        self.known_sha256 = {normalize_digest(digest) for digest in self.known_sha256}

    def public(self) -> dict[str, object]:
        """The config as JSON for the admin API: the key is left out, known digests counted."""
        return {
            "rate": self.rate,
            "hash_size": self.hash_size,
            "known_sha256_count": len(self.known_sha256),
            "fail_rate": self.fail_rate,
            "slow_rate": self.slow_rate,
            "slow_s": self.slow_s,
            "item_3004_rate": self.item_3004_rate,
            "drop_rate": self.drop_rate,
            "conflict_rate": self.conflict_rate,
            "force_status": self.force_status,
            "throttle_next": self.throttle_next,
            "throttle_retry_after_s": self.throttle_retry_after_s,
            "seed": self.seed,
        }


#: Fields ``POST /_sandbox/faults`` may change (the known set has its own endpoint).
CHANGEABLE_FIELDS = frozenset(
    {
        "key",
        "rate",
        "hash_size",
        "fail_rate",
        "slow_rate",
        "slow_s",
        "item_3004_rate",
        "drop_rate",
        "conflict_rate",
        "force_status",
        "throttle_next",
        "throttle_retry_after_s",
        "seed",
    }
)
