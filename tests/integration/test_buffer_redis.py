"""The batch buffer and the pool-wide limiter on a real, private redis-server."""

from __future__ import annotations

import multiprocessing
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import redis

from devtools.items import fill, new_item
from edgematch.config.settings import Settings
from edgematch.infra.redisclient import redis_client as build_redis_client
from edgematch.pipeline.buffer import Batch, BatchBuffer, Empty, Wait, limiter_window

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def test_push_is_idempotent_per_identity(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A second push of the same object version adds nothing."""
    buf = BatchBuffer(redis_client, make_settings())
    assert buf.push(new_item(1), "same") is True
    assert buf.push(new_item(2), "same") is False
    assert buf.depth() == 1


def test_twelve_items_make_batches_of_five_five_two(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """With 12 waiting and slots free, batches are 5, 5, then 2 once the linger has passed."""
    buf = BatchBuffer(redis_client, make_settings(batch_linger_ms=300, rate_limit_per_s=100.0))
    fill(buf, 12)
    sizes = []
    for _ in range(2):
        taken = buf.take()
        assert isinstance(taken, Batch)
        sizes.append(len(taken.items))
    early = buf.take()
    assert isinstance(early, Wait) and early.reason == "linger"
    time.sleep(early.seconds + 0.02)
    last = buf.take()
    assert isinstance(last, Batch)
    sizes.append(len(last.items))
    assert sizes == [5, 5, 2]
    assert isinstance(buf.take(), Empty)


def test_batch_carries_the_items_pushed(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """What comes out of a batch is what went in, hash bytes included."""
    buf = BatchBuffer(redis_client, make_settings())
    items = fill(buf, 5)
    taken = buf.take()
    assert isinstance(taken, Batch)
    assert {i.id: i.data for i in taken.items} == {i.id: i.data for i in items}


def test_rate_limit_says_how_long_to_wait(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Past the limit, take() spends nothing and names the wait until the next slot."""
    buf = BatchBuffer(redis_client, make_settings(rate_limit_per_s=2.0, rate_limit_margin=0.0))
    fill(buf, 15)
    assert isinstance(buf.take(), Batch)
    assert isinstance(buf.take(), Batch)
    third = buf.take()
    assert isinstance(third, Wait) and third.reason == "rate"
    assert 0.5 < third.seconds <= 1.0
    assert buf.depth() == 5


def test_expired_lease_gives_items_back(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A batch whose worker died returns to the buffer when its lease runs out."""
    settings = make_settings(batch_linger_ms=0)
    buf = BatchBuffer(redis_client, settings)
    items = fill(buf, 3)
    taken = buf.take()
    assert isinstance(taken, Batch)
    # Expire the lease now instead of waiting for it: the worker "died".
    redis_client.zadd(buf.keys.leases, {taken.id: 0})
    again = buf.take()
    assert isinstance(again, Batch)
    assert sorted(i.id for i in again.items) == sorted(i.id for i in items)
    assert buf.settle(taken.id, [], []) is False  # the dead worker's settle is refused


def test_a_live_senders_batch_outlasts_its_lease(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A request slower than five leases keeps its batch while its sender lives: the lease
    is renewed, nobody else is handed those items, and the sender's settle is accepted."""
    lease_s = 0.6
    buf = BatchBuffer(redis_client, make_settings(batch_linger_ms=0, lease_s=lease_s))
    fill(buf, 3)
    taken = buf.take()
    assert isinstance(taken, Batch)
    others: list[object] = []
    with buf.keeping(taken.id):
        deadline = time.monotonic() + 5 * lease_s
        while time.monotonic() < deadline:
            others.append(buf.take())
            time.sleep(lease_s / 5)
    assert others and all(isinstance(other, Empty) for other in others)
    assert buf.settle(taken.id, [i.id for i in taken.items], []) is True
    assert int(redis_client.hget(buf.keys.stats, "leases_expired") or 0) == 0


def test_a_probe_kept_by_its_sender_stays_the_only_one(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """The breaker's probe is renewed with its lease: a slow probe never lets a second one
    through."""
    lease_s = 0.6
    buf = BatchBuffer(
        redis_client, make_settings(batch_linger_ms=0, rate_limit_per_s=100.0, lease_s=lease_s)
    )
    fill(buf, 10)
    buf.open_breaker(0.05)
    time.sleep(0.1)
    probe = buf.take()
    assert isinstance(probe, Batch) and probe.probe
    with buf.keeping(probe.id):
        time.sleep(3 * lease_s)
        second = buf.take()
    assert isinstance(second, Wait) and second.reason == "probe"


_SENDER = """
import sys, time, redis
from edgematch.config.settings import Settings
from edgematch.pipeline.buffer import Batch, BatchBuffer
settings = Settings(redis_url=sys.argv[1], batch_linger_ms=0, lease_s=float(sys.argv[2]))
buf = BatchBuffer(redis.Redis.from_url(sys.argv[1]), settings)
taken = buf.take()
assert isinstance(taken, Batch)
with buf.keeping(taken.id):
    print(taken.id, flush=True)
    time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_a_killed_senders_batch_comes_back_within_one_lease(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """SIGKILL the process sending a batch: its items are handed out again within one
    lease of the kill, not one lease after the batch was taken."""
    lease_s = 1.5
    settings = make_settings(batch_linger_ms=0, lease_s=lease_s)
    buf = BatchBuffer(redis_client, settings)
    items = fill(buf, 3)
    sender = subprocess.Popen(
        [sys.executable, "-c", _SENDER, settings.redis_url, str(lease_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sender.stdout is not None
    batch_id = sender.stdout.readline().strip()
    assert batch_id
    # Held for several leases by the live sender first.
    time.sleep(3 * lease_s)
    assert isinstance(buf.take(), Empty)
    sender.send_signal(signal.SIGKILL)
    sender.wait(10)
    killed = time.monotonic()
    again = buf.take()
    while not isinstance(again, Batch) and time.monotonic() - killed < 10 * lease_s:
        time.sleep(0.05)
        again = buf.take()
    back_after_s = time.monotonic() - killed
    assert isinstance(again, Batch)
    assert sorted(i.id for i in again.items) == sorted(i.id for i in items)
    assert back_after_s <= lease_s + 0.5
    assert buf.settle(batch_id, [], []) is False  # the dead sender's settle is refused


def test_settle_removes_finished_and_delays_retries(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Finished items leave; retried ones wait out their delay, then come back."""
    buf = BatchBuffer(redis_client, make_settings(batch_linger_ms=0, rate_limit_per_s=100.0))
    fill(buf, 2)
    taken = buf.take()
    assert isinstance(taken, Batch)
    done, retry = taken.items
    assert buf.settle(taken.id, [done.id], [(retry.sent("item_transient"), 0.3)]) is True
    waiting = buf.take()
    assert isinstance(waiting, Wait) and waiting.reason == "not_ready"
    time.sleep(0.35)
    back = buf.take()
    assert isinstance(back, Batch)
    assert [i.id for i in back.items] == [retry.id]
    assert back.items[0].attempts == 1


def test_cooldown_holds_the_pool(redis_client: redis.Redis, make_settings: MakeSettings) -> None:
    """After a 429, no batch is taken until the cooldown ends."""
    buf = BatchBuffer(redis_client, make_settings())
    fill(buf, 5)
    buf.set_cooldown(0.4)
    held = buf.take()
    assert isinstance(held, Wait) and held.reason == "cooldown"
    time.sleep(0.45)
    assert isinstance(buf.take(), Batch)


def test_breaker_lets_one_probe_through(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """An open breaker blocks the pool, then admits exactly one probe until closed."""
    buf = BatchBuffer(redis_client, make_settings(batch_linger_ms=0, rate_limit_per_s=100.0))
    fill(buf, 10)
    buf.open_breaker(0.3)
    blocked = buf.take()
    assert isinstance(blocked, Wait) and blocked.reason == "breaker"
    time.sleep(0.35)
    probe = buf.take()
    assert isinstance(probe, Batch) and probe.probe
    second = buf.take()
    assert isinstance(second, Wait) and second.reason == "probe"
    buf.close_breaker()
    after = buf.take()
    assert isinstance(after, Batch) and not after.probe


def test_kick_is_bounded_by_work_and_maximum(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Pumps start only while batches wait, never more than the configured maximum."""
    buf = BatchBuffer(redis_client, make_settings(match_pumps=3))
    assert buf.kick() is None  # nothing waits
    fill(buf, 7)  # two batches' worth
    first, second, third = buf.kick(), buf.kick(), buf.kick()
    assert first is not None and second is not None and third is None
    fill(buf, 20, prefix="more-")
    assert buf.kick() is not None
    assert buf.kick() is None  # maximum of 3 reached
    buf.release_pump(first)
    assert buf.kick() is not None


def _hammer(url: str, rate: float, seconds: float, out: multiprocessing.Queue[list[int]]) -> None:
    client = build_redis_client(url)
    settings = Settings(
        redis_url=url, rate_limit_per_s=rate, batch_linger_ms=0, rate_limit_margin=0.0
    )
    buf = BatchBuffer(client, settings)
    granted: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        taken = buf.take()
        if isinstance(taken, Batch):
            # The slot's own time on Redis's clock, as the limiter recorded it.
            score = client.zscore(buf.keys.rate_log, taken.id)
            assert score is not None
            granted.append(int(score))
            buf.settle(taken.id, [i.id for i in taken.items], [])
        elif isinstance(taken, Wait):
            time.sleep(min(taken.seconds, 0.05))
        else:
            time.sleep(0.01)
    out.put(granted)


@pytest.mark.timeout(60)
def test_limit_holds_across_processes(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Eight processes competing for slots never exceed the limit in any 1-second window."""
    rate, seconds = 5.0, 3.0
    settings = make_settings(rate_limit_per_s=rate)
    buf = BatchBuffer(redis_client, settings)
    fill(buf, 400)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(settings.redis_url, rate, seconds, out)) for _ in range(8)
    ]
    for proc in procs:
        proc.start()
    stamps = sorted(t for _ in procs for t in out.get(timeout=30))
    for proc in procs:
        proc.join(10)
    per_window, window_ms = limiter_window(rate, 0.0)
    worst = max(sum(1 for t in stamps if s <= t < s + window_ms) for s in stamps)
    assert worst <= per_window
    # …and the pool used the slots it had: about rate × seconds (+ the initial burst).
    assert len(stamps) >= rate * seconds - 1


def test_a_burst_comes_free_one_interval_at_a_time(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """An idle pool sends its first R requests at once, but their slots come free one
    interval apart: a window later the pool sends one request, not another burst (a burst
    echoed every window would make a hash arriving after it wait most of a window)."""
    buf = BatchBuffer(
        redis_client, make_settings(batch_linger_ms=0, rate_limit_per_s=5.0, rate_limit_margin=0.0)
    )
    fill(buf, 100)
    burst = 0
    while isinstance(buf.take(), Batch):
        burst += 1
    assert burst == 5
    taken = buf.take()
    assert isinstance(taken, Wait) and taken.reason == "rate"
    assert 0.8 < taken.seconds <= 1.0
    time.sleep(taken.seconds + 0.01)
    assert isinstance(buf.take(), Batch)
    after = buf.take()
    assert isinstance(after, Wait) and after.reason == "rate", after
    assert 0.1 < after.seconds <= 0.2  # the next slot: 0.9 of an interval (180 ms) later
