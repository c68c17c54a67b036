"""The flood guard's accounting on a private redis-server: distinct objects per match id in
a sliding window, bounded whatever floods."""

from __future__ import annotations

import pytest
import redis

from edgematch.downstream.flood import MAX_FLOODED, FloodGuard
from edgematch.infra.keys import Keys

pytestmark = pytest.mark.integration

NOW = 1_750_000_000.0
WINDOW_S = 3600


def _guard(client: redis.Redis, limit: int = 3) -> FloodGuard:
    return FloodGuard(client, "floodtest", limit=limit, window_s=WINDOW_S)


def test_the_object_past_the_limit_floods_and_repeats_count_once(
    redis_client: redis.Redis,
) -> None:
    """Three distinct objects are allowed; the same object again is not a fourth; the
    fourth distinct one floods, is remembered, and the others of its request are not."""
    guard = _guard(redis_client)
    for i in range(3):
        assert guard.count(["m1"], "uploads", f"k{i}", now=NOW + i) == []
    assert guard.count(["m1", "m2"], "uploads", "k0", now=NOW + 5) == []
    assert guard.count(["m1", "m2"], "uploads", "k3", now=NOW + 6) == ["m1"]
    (flooded,) = guard.flooded(now=NOW + 7)
    assert flooded.match_id == "m1" and flooded.at == NOW + 6


def test_the_window_slides(redis_client: redis.Redis) -> None:
    """Objects matched more than a window ago no longer count; a flood is forgotten after
    a window."""
    guard = _guard(redis_client)
    for i in range(4):
        guard.count(["m1"], "uploads", f"old{i}", now=NOW + i)
    assert [f.match_id for f in guard.flooded(now=NOW + 10)] == ["m1"]
    later = NOW + WINDOW_S + 10
    assert guard.count(["m1"], "uploads", "new", now=later) == []
    assert guard.flooded(now=later) == []


def test_the_state_is_bounded(redis_client: redis.Redis) -> None:
    """However many objects one match id matches, it keeps limit + 1 members with a TTL of a
    window; the flooded set keeps at most MAX_FLOODED match ids."""
    guard = _guard(redis_client, limit=3)
    keys = Keys("floodtest")
    for i in range(50):
        guard.count(["m1"], "uploads", f"k{i}", now=NOW + i)
    assert redis_client.zcard(keys.flood("m1")) == 4
    assert 0 < int(redis_client.ttl(keys.flood("m1"))) <= WINDOW_S
    for n in range(MAX_FLOODED + 20):
        for i in range(4):
            guard.count([f"id{n}"], "uploads", f"k{i}", now=NOW + 100 + n)
    assert redis_client.zcard(keys.flooded) == MAX_FLOODED
    assert 0 < int(redis_client.ttl(keys.flooded)) <= WINDOW_S
    assert guard.flooded(now=NOW + 200)[0].match_id == f"id{MAX_FLOODED + 19}"
