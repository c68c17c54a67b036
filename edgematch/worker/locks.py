"""One worker at a time: a Redis lock per unit of work, with a TTL so a crash cannot leak it.

Used where two deliveries of the same message could otherwise act twice at once (two
copies of one quarantined version, two submissions of one report). A lock already held
is a ``TransientError``: the task retries after a backoff, by which time the holder has
finished and the retry finds the work done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from edgematch.worker.errors import TransientError


@contextlib.contextmanager
def exclusive(client: redis.Redis, name: str, *, ttl_s: float, what: str) -> Iterator[None]:
    """Hold the lock ``name`` for the block (at most ``ttl_s`` seconds).

    Raises TransientError when another holder has it or Redis cannot be reached;
    ``what`` names the work in that message.
    """
    lock = client.lock(name, timeout=ttl_s, blocking=False)
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise TransientError(f"redis unavailable: {type(exc).__name__}") from exc
    if not acquired:
        raise TransientError(f"{what} is under way in another worker")
    try:
        yield
    finally:
        # A lock that expired or cannot be released expires on its own.
        with contextlib.suppress(redis.RedisError, redis.exceptions.LockError):
            lock.release()
