"""The step lock (recovery/locks.py) on a private redis-server: kept while its holder lives,
gone one TTL after its holder is killed, and a retry that waits exactly that long."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import redis

from devtools.devstack import RedisServer
from edgematch.infra.redisclient import redis_client as build_redis_client
from edgematch.recovery.locks import LockHeld, exclusive, exclusive_many

pytestmark = pytest.mark.integration

NAME = "locktest:lock:quarantine:x"


def test_a_holder_keeps_its_lock_for_longer_than_the_ttl(redis_client: redis.Redis) -> None:
    """Work that lasts five TTLs holds the lock throughout; it is free once the work ends."""
    ttl_s = 0.3
    refused: list[LockHeld] = []
    with exclusive(redis_client, NAME, ttl_s=ttl_s, what="quarantine of x"):
        deadline = time.monotonic() + 5 * ttl_s
        while time.monotonic() < deadline:
            with (
                pytest.raises(LockHeld) as info,
                exclusive(redis_client, NAME, ttl_s=ttl_s, what="q"),
            ):
                pass
            refused.append(info.value)
            time.sleep(ttl_s / 4)
    assert len(refused) >= 10
    assert all(0 < e.retry_after_s <= ttl_s for e in refused)
    assert "under way in another worker" in str(refused[0])
    assert not redis_client.exists(NAME)
    with exclusive(redis_client, NAME, ttl_s=ttl_s, what="q"):
        pass


def test_a_killed_holders_lock_is_free_within_one_ttl(redis_server: RedisServer) -> None:
    """SIGKILL the lock holder: the refusal says when the lock runs out, and then it is free."""
    ttl_s = 1.5
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from edgematch.recovery.locks import exclusive
                from edgematch.infra.redisclient import redis_client
                client = redis_client({redis_server.url!r})
                with exclusive(client, {NAME!r}, ttl_s={ttl_s}, what="q"):
                    print("held", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    client = build_redis_client(redis_server.url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(2 * ttl_s)  # renewed meanwhile: still held past its first TTL
        assert client.exists(NAME)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        killed_at = time.monotonic()
        with pytest.raises(LockHeld) as info, exclusive(client, NAME, ttl_s=ttl_s, what="q"):
            pass
        assert 0 < info.value.retry_after_s <= ttl_s
        time.sleep(info.value.retry_after_s + 0.05)
        with exclusive(client, NAME, ttl_s=ttl_s, what="q"):
            assert time.monotonic() - killed_at <= ttl_s + 0.5
    finally:
        if holder.poll() is None:
            holder.kill()
        client.delete(NAME)
        client.close()


def test_many_locks_taken_together_are_kept_and_released_together(
    redis_client: redis.Redis,
) -> None:
    """exclusive_many: the free ones are held (and kept past their TTL), the one another
    holder has is LockHeld with what is left of its TTL, and the block's end frees only
    those it held."""
    ttl_s = 1.0
    names = [f"{NAME}:many:{i}" for i in range(3)]
    redis_client.set(names[1], "theirs", px=20_000)
    with exclusive_many(
        redis_client, names, ttl_s=ttl_s, what={n: n for n in names}, wait_s=0.2
    ) as held:
        assert held[names[0]] is None and held[names[2]] is None
        refused = held[names[1]]
        assert isinstance(refused, LockHeld) and 10 < refused.retry_after_s <= 20
        time.sleep(2 * ttl_s)
        assert all(redis_client.exists(name) for name in names)
        with pytest.raises(LockHeld), exclusive(redis_client, names[0], ttl_s=ttl_s, what="x"):
            pass
    assert not redis_client.exists(names[0]) and not redis_client.exists(names[2])
    assert redis_client.get(names[1]) == b"theirs"


def test_one_thread_keeps_every_lock_a_process_holds(redis_client: redis.Redis) -> None:
    """Five locks held at once for several TTLs are all kept, by one keeper thread (not a
    thread a lock), and each is free as soon as its block ends."""
    ttl_s = 0.3
    names = [f"{NAME}:{i}" for i in range(5)]
    with contextlib.ExitStack() as held:
        for name in names:
            held.enter_context(exclusive(redis_client, name, ttl_s=ttl_s, what=name))
        keepers = [t for t in threading.enumerate() if t.name == "lock-keeper"]
        time.sleep(4 * ttl_s)
        assert all(0 < redis_client.pttl(name) <= ttl_s * 1000 for name in names)
    assert len(keepers) == 1
    assert not any(redis_client.exists(name) for name in names)
