"""One worker at a time: a Redis lock per unit of work, kept alive while its holder lives.

Used where two deliveries of the same message could otherwise act twice at once (two
copies of one quarantined version, two submissions of one report).

The lock's TTL is short (``EDGEMATCH_LOCK_TTL_S``, 30 s) and a thread renews it every
third of that while the work runs, so a holder that works for minutes keeps it and a
holder that was killed (SIGKILL, OOM, a lost node) strands it for one TTL at most. A lock
already held is ``LockHeld``, a ``TransientError`` that carries the lock's remaining TTL:
the task retries once the lock would have run out, by which time a live holder has
finished (the retry finds the work done) or a dead one's lock has expired.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

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
    stop = threading.Event()
    keeper = threading.Thread(
        target=_keep_alive, args=(lock, ttl_s / 3, stop, what), name="lock-keeper", daemon=True
    )
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        # Not a translation: a lock that expired or cannot be released expires on its own.
        with contextlib.suppress(RedisUnavailable, LockNotOwned):
            lock.release()


def _keep_alive(lock: Lock, every_s: float, stop: threading.Event, what: str) -> None:
    """Reset the lock's TTL every ``every_s`` until ``stop``; say so if it was lost."""
    while not stop.wait(every_s):
        try:
            lock.reacquire()
        except LockNotOwned:
            # Expired while this process could not renew it (frozen longer than a TTL,
            # or Redis unreachable that long): another worker may now take it.
            log.warning("lock_lost", what=what)
            return
        except RedisUnavailable as exc:
            # Not a translation: the renewal is tried again within the TTL.
            log.warning("lock_renewal_failed", what=what, error=str(exc))


def _remaining_s(client: redis.Redis, name: str, ttl_s: float) -> float:
    """Seconds until the lock ``name`` expires (``ttl_s`` when that cannot be read)."""
    try:
        remaining_ms = int(client.pttl(name))
    except RedisUnavailable:
        # Not a translation: the caller raises LockHeld, and a full TTL is a safe wait.
        return ttl_s
    # -2: released meanwhile (retry soon); -1 cannot happen (always set with a TTL).
    return max(remaining_ms, 0) / 1000 if remaining_ms != -1 else ttl_s
