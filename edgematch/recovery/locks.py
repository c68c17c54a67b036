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
from collections.abc import Iterator
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
