"""How BatchBuffer.take() forms batches, on a real, private redis-server."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgematch.config.settings import Settings
from edgematch.pipeline.buffer import Batch, BatchBuffer, Empty, Wait
from edgematch.pipeline.items import Item

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def _data(n: int) -> bytes:
    """Distinct hash bytes per item, of a realistic size (the full byte range appears)."""
    return b"".join(hashlib.sha256(f"{n}:{i}".encode()).digest() for i in range(29))


def _item(n: int) -> Item:
    return Item.new(
        bucket="uploads",
        key=f"photos/img-{n:03d}.jpg.bin",
        version_id=None,
        etag=f"etag-{n}",
        content_bucket="uploads",
        content_key=f"photos/img-{n:03d}.jpg",
        data=_data(n),
        correlation_id=f"corr-{n}",
    )


def _fill(buf: BatchBuffer, count: int) -> dict[str, Item]:
    items = {}
    for n in range(count):
        item = _item(n)
        assert buf.push(item, f"uploads\x00photos/img-{n:03d}.jpg.bin\x00etag:etag-{n}")
        items[item.id] = item
    return items


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(count=st.integers(min_value=0, max_value=40), size=st.integers(min_value=1, max_value=5))
def test_take_forms_full_batches_then_empty(
    redis_client: redis.Redis, make_settings: MakeSettings, count: int, size: int
) -> None:
    """N items in batches of b: ceil(N/b) batches, all full but the last, each item once."""
    redis_client.flushdb()
    buf = BatchBuffer(
        redis_client, make_settings(batch_size=size, batch_linger_ms=0, rate_limit_per_s=1000.0)
    )
    pushed = _fill(buf, count)
    assert buf.depth() == count

    batches: list[Batch] = []
    for _ in range(count + 1):
        taken = buf.take()
        if not isinstance(taken, Batch):
            assert isinstance(taken, Empty), taken
            break
        batches.append(taken)
    else:
        pytest.fail("take() kept returning batches after every item was taken")

    sizes = [len(b.items) for b in batches]
    assert len(batches) == math.ceil(count / size)
    assert all(1 <= s <= size for s in sizes)
    assert all(s == size for s in sizes[:-1])
    assert len({b.id for b in batches}) == len(batches)
    assert not any(b.probe for b in batches)

    taken_ids = Counter(item.id for b in batches for item in b.items)
    assert set(taken_ids.values()) <= {1}
    assert set(taken_ids) == set(pushed)
    for b in batches:
        for item in b.items:
            assert item.data == pushed[item.id].data
            assert item == pushed[item.id]
    assert buf.depth() == 0
    assert buf.in_flight() == len(batches)
    assert isinstance(buf.take(), Empty)


@pytest.mark.parametrize(("size", "count"), [(5, 1), (5, 4), (2, 1), (3, 2)])
def test_fewer_than_a_batch_lingers(
    redis_client: redis.Redis, make_settings: MakeSettings, size: int, count: int
) -> None:
    """With linger L and fewer than b items, take() waits for company: 0 < seconds ≤ L."""
    linger_ms = 5000
    buf = BatchBuffer(
        redis_client,
        make_settings(batch_size=size, batch_linger_ms=linger_ms, rate_limit_per_s=1000.0),
    )
    _fill(buf, count)
    taken = buf.take()
    assert isinstance(taken, Wait)
    assert taken.reason == "linger"
    assert 0 < taken.seconds <= linger_ms / 1000
    assert buf.depth() == count
    assert buf.in_flight() == 0


@pytest.mark.parametrize(("size", "count"), [(5, 5), (1, 1), (3, 3), (2, 4)])
def test_a_full_batch_goes_at_once(
    redis_client: redis.Redis, make_settings: MakeSettings, size: int, count: int
) -> None:
    """With at least b items waiting, take() returns a full batch at once despite the linger."""
    buf = BatchBuffer(
        redis_client,
        make_settings(batch_size=size, batch_linger_ms=5000, rate_limit_per_s=1000.0),
    )
    pushed = _fill(buf, count)
    for _ in range(count // size):
        taken = buf.take()
        assert isinstance(taken, Batch)
        assert len(taken.items) == size
        assert all(item.data == pushed[item.id].data for item in taken.items)
    assert isinstance(buf.take(), Empty)


def test_the_remainder_lingers_after_full_batches(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Seven items in batches of five: one full batch now, the other two linger."""
    buf = BatchBuffer(
        redis_client, make_settings(batch_size=5, batch_linger_ms=5000, rate_limit_per_s=1000.0)
    )
    _fill(buf, 7)
    first = buf.take()
    assert isinstance(first, Batch)
    assert len(first.items) == 5
    second = buf.take()
    assert isinstance(second, Wait)
    assert second.reason == "linger"
    assert 0 < second.seconds <= 5.0
    assert buf.depth() == 2


def test_identity_and_alias_both_recognise_a_repeat(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A version pushed under identity + alias is a repeat when either name comes again."""
    buf = BatchBuffer(redis_client, make_settings())
    as_read = "uploads\x00photos/a.jpg.bin\x00v-123"
    as_named = "uploads\x00photos/a.jpg.bin\x00etag:abc"
    assert buf.push(_item(1), as_read, alias=as_named) is True
    # The same version again, by its identity as read from the store.
    assert buf.push(_item(2), as_read) is False
    assert buf.push(_item(3), as_read, alias="uploads\x00photos/a.jpg.bin\x00etag:other") is False
    # By its name in the event only (another identity as read).
    assert buf.push(_item(4), as_named) is False
    assert buf.push(_item(5), "uploads\x00photos/a.jpg.bin\x00v-999", alias=as_named) is False
    assert buf.depth() == 1
    assert buf.stats()["duplicates"] == 4
    assert buf.stats()["items_added"] == 1


def test_a_repeat_records_its_new_alias(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A repeat adds nothing but its alias: that alias is then recognised too."""
    buf = BatchBuffer(redis_client, make_settings())
    assert buf.push(_item(1), "id-1") is True
    assert buf.push(_item(2), "id-1", alias="alias-1") is False
    assert buf.push(_item(3), "alias-1") is False
    assert buf.push(_item(4), "id-2", alias="alias-1") is False
    assert buf.depth() == 1


def test_distinct_identities_and_aliases_are_all_added(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Pushes whose identity and alias are both new are each added once."""
    buf = BatchBuffer(redis_client, make_settings())
    for n in range(6):
        assert buf.push(_item(n), f"id-{n}", alias=f"alias-{n}") is True
    assert buf.depth() == 6
    assert buf.stats().get("duplicates", 0) == 0
