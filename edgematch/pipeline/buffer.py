"""The durable batch buffer and the pool-wide rate limit, in Redis.

Items wait in a sorted set scored by the time they may be sent. A batch of up to
``batch_size`` is taken by one Lua script (``lua/take_batch.lua``) at the moment a
request slot is free, so a request carries 5 hashes whenever 5 are waiting, and a lone
hash waits at most the linger time. Taking a batch, spending the rate-limit slot and
leasing the batch are one atomic step on Redis's clock: the limit holds for every process
on every host. The lease is short (``EDGEMATCH_LEASE_S``) and renewed by a thread while
the worker sending the batch lives (:meth:`BatchBuffer.keeping`), so a slow request keeps
its batch however long it takes, and the batch of a worker that died (SIGKILL, OOM, a
lost node) is given back within one lease.

Raises ``RedisUnavailable`` (a ``TransientError``) when Redis cannot be reached: the
client translates every Redis error (``redisclient.py``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from edgematch.config.settings import Settings
from edgematch.infra.keys import LANES, Keys
from edgematch.infra.redisclient import lua_script
from edgematch.photodna import cooldown
from edgematch.pipeline.batch import Batch, Empty, TakeResult, Wait
from edgematch.pipeline.items import Item
from edgematch.pipeline.leasekeeper import LeaseKeeper
from edgematch.pipeline.window import WindowUse, capped_asked_s, limiter_window

# What a take answers (batch.py) and the window's pure parts (window.py) have modules of
# their own; they are re-exported here for the callers that name them through the buffer.
__all__ = [
    "Batch",
    "BatchBuffer",
    "Empty",
    "LaneState",
    "TakeResult",
    "Wait",
    "WindowUse",
    "capped_asked_s",
    "limiter_window",
]


@dataclass(frozen=True)
class LaneState:
    """One lane of the buffer: items waiting, and how long the oldest has waited."""

    waiting: int
    oldest_age_s: float


class BatchBuffer:
    """Push, take, settle; plus the pool's cooldown, breaker and pump bookkeeping."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self._s = settings
        self.keys = Keys(settings.namespace)
        self._per_window, self._window_ms = limiter_window(
            settings.rate_limit_per_s, settings.rate_limit_margin
        )
        self._push = lua_script(client, "push")
        self._take = lua_script(client, "take_batch")
        self._settle = lua_script(client, "settle")
        self._kick = lua_script(client, "kick")
        self._hold = lua_script(client, "hold_until")
        self._cool_down = lua_script(client, "cool_down")
        self._renew = lua_script(client, "renew_lease")
        # Renews the leases of the batches this process is sending.
        self._keeper = LeaseKeeper(self.renew, period_s=settings.lease_s / 3)
        self._wait_turn = lua_script(client, "wait_turn")

    # -- items in ---------------------------------------------------------------------
    def push(self, item: Item, identity: str, *, alias: str | None = None) -> bool:
        """Add ``item`` unless this object version was accepted before.

        ``identity`` names the version as read from the store; ``alias``, as the event
        named it (without a version id, say). Either one seen before makes this a repeat.
        Idempotent: returns False, and changes nothing but the alias, for a repeat.
        """
        k = self.keys
        added = self._call(
            self._push,
            [
                k.seen(identity),
                k.ready_lane(item.lane),
                k.items,
                k.stats,
                k.seen(alias or identity),
            ],
            [item.id, item.to_json(), self._s.idempotency_ttl_s],
        )
        return bool(added)

    def forget(self, identity: str) -> None:
        """Let this object version be accepted again (used by a deliberate rescan)."""
        self._r.delete(self.keys.seen(identity))

    # -- batches out --------------------------------------------------------------------
    def take(self) -> TakeResult:
        """Take the next batch if a request may be sent now; else say how long to wait."""
        k = self.keys
        reply = self._call(
            self._take,
            [
                *k.ready_lanes,
                k.items,
                k.leases,
                k.lease_items,
                k.rate_log,
                k.cooldown,
                k.breaker,
                k.breaker_probe,
                k.stats,
                k.background_credit,
                k.cooldown_capped,
            ],
            [
                uuid.uuid4().hex,
                self._s.batch_size,
                self._s.batch_linger_ms,
                self._per_window,
                self._window_ms,
                int(self._s.lease_s * 1000),
                self._s.background_min_share,
            ],
        )
        kind = _text(reply[0])
        if kind == "batch":
            items = tuple(Item.from_json(doc) for doc in reply[3:])
            return Batch(id=_text(reply[1]), items=items, probe=int(reply[2]) == 1)
        if kind == "wait":
            return Wait(seconds=max(0.0, int(reply[1]) / 1000.0), reason=_text(reply[2]))
        return Empty()

    def renew(self, batch_id: str) -> bool:
        """Extend the batch's lease (and its probe mark) to ``lease_s`` from now. False
        when it is no longer leased: settled, or given back after it ran out."""
        k = self.keys
        renewed = self._call(
            self._renew, [k.leases, k.breaker_probe], [batch_id, int(self._s.lease_s * 1000)]
        )
        return bool(renewed)

    def keeping(self, batch_id: str) -> contextlib.AbstractContextManager[None]:
        """Renew the batch's lease every third of it while the block runs (see
        :class:`~edgematch.pipeline.leasekeeper.LeaseKeeper`)."""
        return self._keeper.keeping(batch_id)

    def settle(
        self, batch_id: str, finished: Iterable[str], again: Sequence[tuple[Item, float]]
    ) -> bool:
        """Close a batch: ``finished`` ids leave the buffer, ``again`` items wait ``delay_s``.

        Returns False when the lease had already expired (the batch may have been handed
        out again; results are idempotent, so this is logged, not fatal).
        """
        done = list(finished)
        args: list[Any] = [batch_id, len(done), *done]
        for item, delay_s in again:
            lane = LANES.index(item.lane) + 1
            args.extend([item.id, max(0, int(delay_s * 1000)), item.to_json(), lane])
        k = self.keys
        owned = self._call(
            self._settle, [*k.ready_lanes, k.items, k.leases, k.lease_items, k.stats], args
        )
        return bool(owned)

    # -- pool-wide signals ------------------------------------------------------------
    def set_cooldown(self, retry_after_s: float) -> cooldown.Cooldown:
        """Hold every request of the pool after a 429 that asked for ``retry_after_s``: for
        that long up to EDGEMATCH_MAX_COOLDOWN_S, else for that long and then one probe
        request first (photodna/cooldown.py). Never shortens a longer hold. Returns the plan."""
        planned = cooldown.plan(retry_after_s, ceiling_s=self._s.max_cooldown_s)
        k = self.keys
        self._call(
            self._cool_down,
            [k.cooldown, k.cooldown_capped, k.stats],
            [int(planned.hold_s * 1000), int(planned.asked_s * 1000)],
        )
        return planned

    def open_breaker(self, seconds: float) -> None:
        """The key was refused: stop the pool, then allow one probe after ``seconds``."""
        k = self.keys
        self._r.delete(k.breaker_probe)
        self._call(
            self._hold, [k.breaker, k.stats], [int(seconds * 1000), "breaker_opened", "keep"]
        )

    def close_breaker(self) -> None:
        """A request was accepted: the key works again."""
        self._r.delete(self.keys.breaker, self.keys.breaker_probe)

    def resume(self) -> set[str]:
        """A probe request was accepted: the pool resumes. Returns what held it:
        ``breaker`` (the key works again) and/or ``cooldown`` (a capped cooldown ended)."""
        k = self.keys
        pipe = self._r.pipeline()
        pipe.delete(k.breaker)
        pipe.delete(k.cooldown_capped)
        pipe.delete(k.breaker_probe)
        breaker, capped, _ = pipe.execute()
        return {name for name, n in (("breaker", breaker), ("cooldown", capped)) if int(n)}

    def count(self, field: str, by: int = 1) -> None:
        self._r.hincrby(self.keys.stats, field, by)

    # -- pumps -----------------------------------------------------------------------
    def kick(self, *, horizon_s: float | None = None, leases: bool = True) -> str | None:
        """Reserve a pump slot if one more match task is useful; returns its id or None.

        ``leases`` False: the items of expired leases are not counted (a running pump's
        kick: its own takes give them back; ingest's and the sweep's kicks count them)."""
        pump_id = uuid.uuid4().hex
        k = self.keys
        horizon = self._s.pump_max_s if horizon_s is None else horizon_s
        started = self._call(
            self._kick,
            [k.pumps, k.cooldown, k.breaker, k.leases, *k.ready_lanes, k.pump_waiters],
            [
                pump_id,
                self._s.match_pumps,
                int(self.pump_ttl_s * 1000),
                self._s.batch_size,
                int(horizon * 1000),
                1 if leases else 0,
            ],
        )
        return pump_id if started else None

    @property
    def pump_ttl_s(self) -> float:
        """How long a pump slot outlives a pump that died without releasing it."""
        return self._s.pump_max_s + self._s.api_timeout_s + self._s.api_connect_timeout_s + 5.0

    def hold_pump(self, pump_id: str, seconds: float) -> None:
        """Keep the slot of a pump that is waiting or rescheduled for ``seconds``."""
        ttl_ms = int((seconds + self.pump_ttl_s) * 1000)
        self._r.zadd(self.keys.pumps, {pump_id: self._now_ms() + ttl_ms})

    def release_pump(self, pump_id: str) -> None:
        k = self.keys

        # One round trip, no MULTI: a waiting entry left behind expires by its score.
        pipe = self._r.pipeline(transaction=False)
        pipe.zrem(k.pumps, pump_id)
        pipe.zrem(k.pump_waiters, pump_id)
        pipe.execute()

    def wait_turn(self, pump_id: str, seconds: float) -> bool:
        """May this pump sleep ``seconds`` for the next slot? Only one pump waits at a time."""
        ttl_ms = int(seconds * 1000) + 1000
        return bool(self._call(self._wait_turn, [self.keys.pump_waiters], [pump_id, ttl_ms]))

    def end_wait(self, pump_id: str) -> None:
        self._r.zrem(self.keys.pump_waiters, pump_id)

    # -- observation ---------------------------------------------------------------------
    def depth(self) -> int:
        """Items waiting in every lane (ready now or later), not counting those in flight.

        A count a lane only (intake reads it before every receive): not :meth:`lanes`,
        which reads the clock and each lane's oldest item too."""
        pipe = self._r.pipeline(transaction=False)  # an observation: no MULTI needed
        for key in self.keys.ready_lanes:
            pipe.zcard(key)
        return sum(int(n) for n in pipe.execute())

    def lanes(self) -> dict[str, LaneState]:
        """Each lane's waiting items and the age of its oldest (seconds, on Redis's clock)."""

        pipe = self._r.pipeline(transaction=False)  # an observation: no MULTI needed
        pipe.time()
        for key in self.keys.ready_lanes:
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
        reply = pipe.execute()
        now_ms = _ms(reply[0])
        states: dict[str, LaneState] = {}
        for n, lane in enumerate(LANES):
            count, first = reply[1 + 2 * n], reply[2 + 2 * n]
            age = max(0.0, (now_ms - float(first[0][1])) / 1000) if first else 0.0
            states[lane] = LaneState(waiting=int(count), oldest_age_s=age)
        return states

    def window_use(self) -> WindowUse:
        """The pool's requests in the current window, the limit, cooldown and breaker."""

        k = self.keys
        pipe = self._r.pipeline()
        pipe.time()
        pipe.zrange(k.rate_log, 0, -1, withscores=True)
        pipe.get(k.cooldown)
        pipe.get(k.breaker)
        pipe.get(k.cooldown_capped)
        redis_time, log, until, breaker, capped = pipe.execute()
        now_ms = _ms(redis_time)
        used = sum(1 for _, score in log if score > now_ms - self._window_ms)
        return WindowUse(
            used=used,
            capacity=self._per_window,
            window_s=self._window_ms / 1000,
            cooldown_s=max(0.0, (int(until or 0) - now_ms) / 1000),
            breaker_open=breaker is not None,
            cooldown_asked_s=capped_asked_s(capped),
        )

    def in_flight(self) -> int:
        return int(self._r.zcard(self.keys.leases))

    def stats(self) -> dict[str, int]:
        raw = self._r.hgetall(self.keys.stats)
        return {_text(key): int(value) for key, value in raw.items()}

    # -- plumbing --------------------------------------------------------------------
    def _now_ms(self) -> int:
        return _ms(self._r.time())

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        return script(keys=keys, args=args)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(redis_time: tuple[Any, Any]) -> int:
    """Redis's TIME reply, (seconds, microseconds), in milliseconds."""
    sec, usec = redis_time
    return int(sec) * 1000 + int(usec) // 1000
