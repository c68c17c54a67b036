"""One worker at a time: a Redis lock per unit of work, kept alive while its holder lives.

Used where two deliveries of the same message could otherwise act twice at once (two
copies of one quarantined version, two submissions of one report).

The lock's TTL is short (``EDGEMATCH_LOCK_TTL_S``, 30 s) and one thread of the process
renews it every third of that while the work runs, so a holder that works for minutes keeps it and a
holder that was killed (SIGKILL, OOM, a lost node) strands it for one TTL at most. A lock
already held is ``LockHeld``, a ``TransientError`` that carries the lock's remaining TTL:
the task retries once the lock would have run out, by which time a live holder has
finished (the retry finds the work done) or a dead one's lock has expired.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

import redis

from edgematch.errors import TransientError
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import Lock, LockNotOwned, RedisUnavailable

log = get_logger(__name__)


class LockHeld(TransientError):
    """Another worker holds the lock; ``retry_after_s`` is what is left of its TTL."""

    reason = "lock_held"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@contextlib.contextmanager
def exclusive(
    client: redis.Redis, name: str, *, ttl_s: float, what: str, wait_s: float = 0.0
) -> Iterator[None]:
    """Hold the lock ``name`` for the block, renewing its ``ttl_s`` while the block runs.

    ``wait_s`` > 0 waits that long for a holder to finish, for locks held a moment only.
    Raises ``LockHeld`` when another holder still has it and ``RedisUnavailable`` when Redis
    cannot be reached; ``what`` names the work in the first.
    """
    lock: Lock = client.lock(
        name,
        timeout=ttl_s,
        blocking=wait_s > 0,
        blocking_timeout=wait_s if wait_s > 0 else None,
        sleep=0.05,
        thread_local=False,
    )
    if not lock.acquire():
        raise LockHeld(
            f"{what} is under way in another worker",
            retry_after_s=_remaining_s(client, name, ttl_s),
        )
    keeper = _keeper()
    keeping = keeper.keep(lock, every_s=ttl_s / 3, what=what)
    try:
        yield
    finally:
        keeper.drop(keeping)
        # Not a translation: a lock that expired or cannot be released expires on its own.
        with contextlib.suppress(RedisUnavailable, LockNotOwned):
            lock.release()


@contextlib.contextmanager
def exclusive_many(
    client: redis.Redis,
    names: Sequence[str],
    *,
    ttl_s: float,
    what: Mapping[str, str],
    wait_s: float = 0.0,
) -> Iterator[dict[str, LockHeld | None]]:
    """Hold as many of the locks ``names`` (distinct) as can be taken, for the block: all
    tried in one round trip, then those held by another holder again every 50 ms for up to
    ``wait_s``. Yields, for each name, None when it is held here and ``LockHeld`` when
    another holder kept it — the caller skips that name's work, never the others'. Held
    locks are renewed as :func:`exclusive`'s, and released together at the end of the block
    (one command while surely still held). ``what`` names each name's work, for LockHeld.

    Raises ``RedisUnavailable`` when Redis cannot be reached (what was taken is released
    or expires on its own).
    """
    keeper = _keeper()
    held: dict[str, _Kept] = {}
    outcome: dict[str, LockHeld | None] = {}
    missing = list(names)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            missing = _take(client, missing, ttl_s=ttl_s, what=what, keeper=keeper, held=held)
            if not missing or time.monotonic() + _RETRY_S > deadline:
                break
            time.sleep(_RETRY_S)
        remaining = _remaining_many(client, missing, ttl_s) if missing else {}
        for name in names:
            outcome[name] = (
                LockHeld(
                    f"{what[name]} is under way in another worker",
                    retry_after_s=remaining[name],
                )
                if name in remaining
                else None
            )
        yield outcome
    finally:
        for kept in held.values():
            keeper.drop(kept)
        Lock.release_many(client, [kept.lock for kept in held.values()])


#: How often a lock another holder has is tried again while waiting for it.
_RETRY_S: Final = 0.05


def _take(
    client: redis.Redis,
    names: Sequence[str],
    *,
    ttl_s: float,
    what: Mapping[str, str],
    keeper: _Keeper,
    held: dict[str, _Kept],
) -> list[str]:
    """Try ``names`` in one round trip (a ``SET NX PX`` each, as redis-py's lock does); the
    ones taken go in ``held``, kept by ``keeper``. Returns the names not taken."""
    tokens = {name: uuid.uuid1().hex.encode() for name in names}
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.set(name, tokens[name], nx=True, px=int(ttl_s * 1000))
    sent = time.monotonic()
    answers = pipe.execute()
    missing = []
    for name, taken in zip(names, answers, strict=True):
        if not taken:
            missing.append(name)
            continue
        lock = Lock.adopt(client, name, tokens[name], timeout_s=ttl_s, sent_at=sent)
        held[name] = keeper.keep(lock, every_s=ttl_s / 3, what=what[name])
    return missing


def _remaining_many(client: redis.Redis, names: Sequence[str], ttl_s: float) -> dict[str, float]:
    """:func:`_remaining_s` of each of ``names``, in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.pttl(name)
    try:
        answers = pipe.execute()
    except RedisUnavailable:
        # Not a translation: the caller raises LockHeld, and a full TTL is a safe wait.
        return dict.fromkeys(names, ttl_s)
    return {
        name: max(int(ms), 0) / 1000 if int(ms) != -1 else ttl_s
        for name, ms in zip(names, answers, strict=True)
    }


class _Kept:
    """One lock the keeper renews: when next, and how often."""

    __slots__ = ("due", "every_s", "lock", "what")

    def __init__(self, lock: Lock, every_s: float, what: str) -> None:
        self.lock = lock
        self.every_s = every_s
        self.due = time.monotonic() + every_s
        self.what = what


class _Keeper:
    """Renews every lock a process holds, from one thread started once per process.

    A thread per lock cost a thread start and join around every tag write (one a result);
    one thread serves them all. A lock is dropped from it before it is released, so it is
    never renewed after its block has ended, except by a renewal already under way then —
    which finds the lock released (not ours any more: nothing is extended) and says nothing.
    """

    def __init__(self) -> None:
        self._kept: set[_Kept] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(self, lock: Lock, *, every_s: float, what: str) -> _Kept:
        """Renew ``lock`` every ``every_s`` seconds from now until :meth:`drop`."""
        kept = _Kept(lock, every_s, what)
        with self._changed:
            self._kept.add(kept)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)
                self._thread.start()
            self._changed.notify()
        return kept

    def drop(self, kept: _Kept) -> None:
        with self._changed:
            self._kept.discard(kept)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [k for k in self._kept if k.due <= now]
                if not due:
                    nxt = min((k.due for k in self._kept), default=now + _IDLE_WAIT_S)
                    self._changed.wait(nxt - now)
                    continue
                for kept in due:
                    kept.due = now + kept.every_s
            for kept in due:
                self._renew(kept)

    def _renew(self, kept: _Kept) -> None:
        """Reset the lock's TTL; say so if it was lost while still held."""
        try:
            kept.lock.reacquire()
        except LockNotOwned:
            with self._changed:
                still_held = kept in self._kept
                self._kept.discard(kept)
            if still_held:
                # Expired while this process could not renew it (frozen longer than a TTL,
                # or Redis unreachable that long): another worker may now take it.
                log.warning("lock_lost", what=kept.what)
        except RedisUnavailable as exc:
            # Not a translation: the renewal is tried again within the TTL.
            log.warning("lock_renewal_failed", what=kept.what, error=str(exc))


_IDLE_WAIT_S: Final = 60.0
_keepers: dict[int, _Keeper] = {}


def _keeper() -> _Keeper:
    """This process's keeper: a forked child (a prefork pool process) gets its own, since
    the parent's thread does not run in it."""
    pid = os.getpid()
    keeper = _keepers.get(pid)
    if keeper is None:
        keeper = _keepers.setdefault(pid, _Keeper())
    return keeper


def _remaining_s(client: redis.Redis, name: str, ttl_s: float) -> float:
    """Seconds until the lock ``name`` expires (``ttl_s`` when that cannot be read)."""
    try:
        remaining_ms = int(client.pttl(name))
    except RedisUnavailable:
        # Not a translation: the caller raises LockHeld, and a full TTL is a safe wait.
        return ttl_s
    # -2: released meanwhile (retry soon); -1 cannot happen (always set with a TTL).
    return max(remaining_ms, 0) / 1000 if remaining_ms != -1 else ttl_s
