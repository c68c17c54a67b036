"""Priority lanes in the batch buffer (private redis-server): live first, background kept moving."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import redis

from devtools.items import fill
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.pipeline.buffer import Batch, BatchBuffer
from edgematch.pipeline.items import Item

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def _push(buf: BatchBuffer, count: int, lane: str) -> list[Item]:
    return fill(buf, count, prefix=f"{lane}/", lane=lane)


def _fast(make_settings: MakeSettings, **extra: object) -> Settings:
    return make_settings(batch_linger_ms=0, rate_limit_per_s=10_000.0, **extra)


def test_live_items_go_first_and_batches_fill_across_lanes(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """One live item waiting behind a backfill: it rides the next batch, filled up with backfill."""
    buf = BatchBuffer(redis_client, _fast(make_settings, background_min_share=0.0))
    _push(buf, 20, "backfill")
    live = _push(buf, 1, "live")
    taken = buf.take()
    assert isinstance(taken, Batch)
    assert [i.lane for i in taken.items] == ["live", "backfill", "backfill", "backfill", "backfill"]
    assert taken.items[0].id == live[0].id


def test_replay_is_served_before_backfill(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Replays come before backfills when no live item waits."""
    buf = BatchBuffer(redis_client, _fast(make_settings))
    _push(buf, 5, "backfill")
    _push(buf, 3, "replay")
    taken = buf.take()
    assert isinstance(taken, Batch)
    assert Counter(i.lane for i in taken.items) == {"replay": 3, "backfill": 2}


def test_background_keeps_its_minimum_share(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """With live traffic saturating, background lanes still get the configured share of batches."""
    buf = BatchBuffer(redis_client, _fast(make_settings, background_min_share=0.2))
    _push(buf, 200, "live")
    _push(buf, 200, "backfill")
    lanes: Counter[str] = Counter()
    for _ in range(20):
        taken = buf.take()
        assert isinstance(taken, Batch)
        lanes.update(i.lane for i in taken.items)
        buf.settle(taken.id, [i.id for i in taken.items], [])
    assert lanes["backfill"] == 20  # 4 of 20 batches = 0.2 of the requests
    assert lanes["live"] == 80


def test_no_share_means_background_waits_for_live(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A minimum share of 0 gives the background lanes only what live traffic leaves."""
    buf = BatchBuffer(redis_client, _fast(make_settings, background_min_share=0.0))
    _push(buf, 50, "live")
    _push(buf, 50, "backfill")
    for _ in range(10):
        taken = buf.take()
        assert isinstance(taken, Batch)
        assert {i.lane for i in taken.items} == {"live"}
        buf.settle(taken.id, [i.id for i in taken.items], [])
    taken = buf.take()
    assert isinstance(taken, Batch) and {i.lane for i in taken.items} == {"backfill"}


def test_retries_and_reclaims_keep_their_lane(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """An item sent again, or given back by an expired lease, returns to its own lane."""
    buf = BatchBuffer(redis_client, _fast(make_settings))
    _push(buf, 2, "backfill")
    taken = buf.take()
    assert isinstance(taken, Batch)
    first, second = taken.items
    buf.settle(taken.id, [second.id], [(first.sent("item_transient"), 0.0)])
    states = buf.lanes()
    assert (states["backfill"].waiting, states["live"].waiting) == (1, 0)

    again = buf.take()
    assert isinstance(again, Batch)
    redis_client.zadd(buf.keys.leases, {again.id: 0})  # its worker died
    back = buf.take()
    assert isinstance(back, Batch) and [i.lane for i in back.items] == ["backfill"]


def test_lane_state_reports_depth_and_oldest_age(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """lanes() tells each lane's depth and the age of its oldest item."""
    buf = BatchBuffer(redis_client, make_settings())
    _push(buf, 3, "replay")
    states = buf.lanes()
    assert states["replay"].waiting == 3 and states["live"].waiting == 0
    assert 0 <= states["replay"].oldest_age_s < 5
    assert buf.depth() == 3


def test_background_ingest_is_routed_to_its_own_queue(make_settings: MakeSettings) -> None:
    """Ingest and results tasks of replays and backfills go to the background queue."""
    (route,) = celery_config(make_settings())["task_routes"]
    assert route("edgematch.ingest", (), {"lane": "live"}, {}) == {"queue": "edgematch.ingest"}
    assert route("edgematch.ingest", (), {"lane": "backfill"}, {}) == {
        "queue": "edgematch.background"
    }
    assert route("edgematch.ingest", (), {"lane": "replay"}, {}) == {
        "queue": "edgematch.background"
    }
    assert route("edgematch.match", (), {}, {}) == {"queue": "edgematch.match"}
    # The match task's former name, still in queues during a rolling deploy: same queue.
    assert route("edgematch.pump", (), {}, {}) == {"queue": "edgematch.match"}
    backfill_result = {"result": {"lane": "backfill"}, "correlation_id": "c"}
    live_result = {"result": {"lane": "live"}, "correlation_id": "c"}
    assert route("edgematch.record_result", (), backfill_result, {}) == {
        "queue": "edgematch.background"
    }
    assert route("edgematch.record_result", (), live_result, {}) == {"queue": "edgematch.results"}
    assert route("other.task", (), {}, {}) is None
