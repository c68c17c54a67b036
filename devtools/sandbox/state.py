"""One sandbox's config, counters, rate limiter and fault dice, behind one lock.

Every decision that reads the config or draws from the seeded generator happens under the
lock, so concurrent requests see a consistent config and a sequential client sees a
reproducible sequence of faults.
"""

from __future__ import annotations

import hmac
import random
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from devtools.sandbox.config import CHANGEABLE_FIELDS, FRACTIONS, SandboxConfig, is_number
from devtools.sandbox.ratelimit import SlidingWindowLimiter, max_in_window
from devtools.sandbox.rules import (
    MAX_ITEMS_PER_REQUEST,
    OK,
    UNHANDLED_ERROR,
    Item,
    RequestRefused,
    Verdict,
    classify_hash,
    normalize_digest,
)

__all__ = ["MAX_REPORTS", "Admission", "Gate", "SandboxState"]

MAX_REPORTS = 1000
_FAIL_STATUSES = (500, 503)


class Gate(Enum):
    """What happens to an API request before its body is looked at."""

    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    DROP = "drop"
    FORCED = "forced"
    FAIL = "fail"
    PROCEED = "proceed"


@dataclass(frozen=True)
class Admission:
    """The gate's decision for one request, with what the handler needs to carry it out."""

    gate: Gate
    status: int = 200
    retry_after: int = 0
    delay_s: float = 0.0


def _new_histogram() -> Counter[str]:
    # The usual batch sizes are always listed, so a benchmark report has stable columns.
    return Counter({str(size): 0 for size in range(1, MAX_ITEMS_PER_REQUEST + 1)})


@dataclass
class _Counters:
    requests_total: int = 0
    dropped_total: int = 0
    by_http_status: Counter[str] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    items_total: int = 0
    items_by_code: Counter[str] = field(default_factory=Counter)
    top_level_by_code: Counter[str] = field(default_factory=Counter)
    matches_total: int = 0
    conflicts_total: int = 0
    files_per_request: Counter[str] = field(default_factory=_new_histogram)
    reports_received: int = 0
    # Arrival times of accepted requests (monotonic seconds), sorted since they are
    # appended under the lock; 8 bytes each, so a day at 10 requests/s is under 7 MB.
    accepted: array[float] = field(default_factory=lambda: array("d"))


def _numeric_keys(counter: Counter[str]) -> dict[str, int]:
    return {key: counter[key] for key in sorted(counter, key=lambda k: (len(k), k))}


class SandboxState:
    """Config, counters, rate limiter and fault dice of one sandbox, behind one lock.

    Every decision that reads the config or draws from the seeded generator happens under
    the lock, so concurrent requests see a consistent config and a sequential client sees
    a reproducible sequence of faults.
    """

    def __init__(
        self, config: SandboxConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._lock = threading.Lock()
        self._config = replace(config)
        self._clock = clock
        # Fault dice, not cryptography: a seeded generator makes chaos runs reproducible.
        self._rng = random.Random(config.seed)  # noqa: S311
        self._limiter = SlidingWindowLimiter(config.rate, clock=clock)
        self._counters = _Counters()
        self._reports: deque[object] = deque(maxlen=MAX_REPORTS)
        #: Set when the server stops, so injected slow answers stop waiting.
        self.stopping = threading.Event()

    # --- decisions -----------------------------------------------------------------------

    def _chance(self, probability: float) -> bool:
        # No draw at 0 or 1: the sequence for the other faults stays the same whether or
        # not an always-on or always-off fault is configured.
        if probability <= 0.0:
            return False
        if probability >= 1.0:
            return True
        return self._rng.random() < probability

    def _refusal(self, config: SandboxConfig, now: float) -> int | None:
        """The Retry-After of a 429 for this request (a throttle set at runtime first, then
        the rate limit), or None when it is admitted. Call with the lock held."""
        if config.throttle_next > 0:
            config.throttle_next -= 1
            return config.throttle_retry_after_s
        decision = self._limiter.try_acquire(now)
        return None if decision.admitted else decision.retry_after

    def admit(self, operation: str, key: str | None) -> Admission:
        """Count one API request and decide its fate: key, then rate limit, then faults."""
        with self._lock:
            counters, config = self._counters, self._config
            counters.requests_total += 1
            counters.by_operation[operation] += 1
            if key is None or not hmac.compare_digest(key.encode(), config.key.encode()):
                return Admission(Gate.UNAUTHORIZED)
            now = self._clock()
            retry_after = self._refusal(config, now)
            if retry_after is not None:
                return Admission(Gate.RATE_LIMITED, retry_after=retry_after)
            counters.accepted.append(now)
            if self._chance(config.drop_rate):
                counters.dropped_total += 1
                return Admission(Gate.DROP)
            delay_s = config.slow_s if self._chance(config.slow_rate) else 0.0
            if config.force_status is not None:
                return Admission(Gate.FORCED, status=config.force_status, delay_s=delay_s)
            if self._chance(config.fail_rate):
                status = self._rng.choice(_FAIL_STATUSES)
                return Admission(Gate.FAIL, status=status, delay_s=delay_s)
            return Admission(Gate.PROCEED, delay_s=delay_s)

    def judge(self, items: list[Item]) -> list[Verdict]:
        """Answer each item of an accepted request, and count them."""
        with self._lock:
            counters, config = self._counters, self._config
            counters.files_per_request[str(len(items))] += 1
            verdicts: list[Verdict] = []
            for item in items:
                if self._chance(config.item_3004_rate):
                    verdict = Verdict(item.content_id, UNHANDLED_ERROR)
                else:
                    verdict = replace(
                        classify_hash(
                            item.data, hash_size=config.hash_size, known=config.known_sha256
                        ),
                        content_id=item.content_id,
                    )
                if verdict.code == OK and self._chance(config.conflict_rate):
                    verdict = replace(verdict, conflict=True)
                    counters.conflicts_total += 1
                verdicts.append(verdict)
                counters.items_total += 1
                counters.items_by_code[str(verdict.code)] += 1
                if verdict.is_match:
                    counters.matches_total += 1
            return verdicts

    def refused(self, refusal: RequestRefused) -> None:
        """Count a request answered with one top-level status."""
        with self._lock:
            self._counters.top_level_by_code[str(refusal.code)] += 1
            if refusal.item_count is not None:
                self._counters.files_per_request[str(refusal.item_count)] += 1

    def record_report(self, payload: object) -> None:
        with self._lock:
            self._reports.append(payload)
            self._counters.reports_received += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self._counters.by_http_status[str(status)] += 1

    # --- admin ---------------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        """A copy of the current config (changing it has no effect; use ``configure``)."""
        with self._lock:
            return replace(self._config)

    def configure(self, changes: Mapping[str, object]) -> dict[str, object]:
        """Apply a subset of CHANGEABLE_FIELDS atomically; raise ValueError, changing nothing,
        if any field is unknown or invalid. Returns the public view of the new config."""
        unknown = sorted(set(changes) - CHANGEABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        values: dict[str, Any] = dict(changes)
        # JSON has one number type; let ``"rate": 5`` mean 5.0.
        for name in ("rate", "slow_s", *FRACTIONS):
            if name in values and is_number(values[name]):
                values[name] = float(values[name])
        with self._lock:
            updated = replace(self._config, **values)
            if updated.rate != self._config.rate:
                self._limiter.set_rate(updated.rate)
            if "seed" in values:
                self._rng.seed(updated.seed)
            self._config = updated
            return updated.public()

    def add_known(self, digests: Iterable[str]) -> int:
        """Add known digests (validated first, all or none); returns the new total."""
        normalized = {normalize_digest(digest) for digest in digests}
        with self._lock:
            self._config.known_sha256.update(normalized)
            return len(self._config.known_sha256)

    def reset(self) -> None:
        """Clear counters and recorded reports. The config and the rate window stay."""
        with self._lock:
            self._counters = _Counters()
            self._reports.clear()

    def reports(self) -> list[object]:
        with self._lock:
            return list(self._reports)

    def stats(self) -> dict[str, object]:
        """A snapshot of the counters, as JSON-ready values."""
        with self._lock:
            counters = self._counters
            accepted = array("d", counters.accepted)
            snapshot: dict[str, object] = {
                "requests_total": counters.requests_total,
                "by_http_status": _numeric_keys(counters.by_http_status),
                "by_operation": dict(sorted(counters.by_operation.items())),
                "dropped_total": counters.dropped_total,
                "items_total": counters.items_total,
                "items_by_code": _numeric_keys(counters.items_by_code),
                "top_level_by_code": _numeric_keys(counters.top_level_by_code),
                "matches_total": counters.matches_total,
                "conflicts_total": counters.conflicts_total,
                "files_per_request": _numeric_keys(counters.files_per_request),
                "reports_received": counters.reports_received,
            }
        # The sweep is linear in the number of accepted requests: done outside the lock so
        # a stats call during a long benchmark never delays the requests being measured.
        snapshot["max_accepted_in_any_1s_window"] = max_in_window(accepted, 1.0)
        snapshot["accepted_timestamps"] = len(accepted)
        return snapshot
