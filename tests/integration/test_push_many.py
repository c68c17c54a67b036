"""An ingest batch's items pushed together (pipeline/pushes.py, push_many.lua) on a real,
private redis-server: each object version accepted exactly once, as a push an item."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from devtools.items import new_item
from edgematch import runtime as runtime_module
from edgematch.config.settings import Settings
from edgematch.infra.redisclient import redis_client as build_redis_client
from edgematch.pipeline.buffer import BatchBuffer
from edgematch.pipeline.ingest import ADDED, CACHED, DUPLICATE, args_to_event
from edgematch.pipeline.pushes import WAITING, Pushes
from edgematch.pipeline.results import Result
from edgematch.runtime import Runtime

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


def _refused(token: Any, exc: BaseException) -> str:
    raise AssertionError(f"{token} handed over: {exc}")


def test_a_batch_is_pushed_once_per_object_version(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """New versions join their lanes; a version accepted before, by an earlier push or an
    earlier item of the same batch, or named by an alias seen before, is a duplicate."""
    settings = make_settings()
    buf = BatchBuffer(redis_client, settings)
    assert buf.push(new_item(0), "before")
    redis_client.set(buf.keys.seen("alias-before"), "1")
    pushes = Pushes(redis_client, settings.namespace, ttl_s=settings.idempotency_ttl_s)
    entries = [
        (new_item(1), "v1", "v1"),
        (new_item(2), "before", "e2"),
        (new_item(3), "v3", "v3"),
        (new_item(4), "v1", "other"),
        (new_item(5), "v5", "alias-before"),
        (new_item(6, lane="backfill"), "v6", "e6"),
    ]
    for n, (item, identity, alias) in enumerate(entries):
        assert pushes.add(item, identity, alias, token=n) == WAITING
    assert pushes.finish(_refused) == [ADDED, DUPLICATE, ADDED, DUPLICATE, DUPLICATE, ADDED]
    lanes = buf.lanes()
    assert (lanes["live"].waiting, lanes["backfill"].waiting) == (3, 1)
    stats = buf.stats()
    assert (stats["items_added"], stats["duplicates"]) == (4, 3)
    # Every name of a version accepted is remembered, with the idempotency TTL.
    for identity in ("v1", "e2", "v3", "other", "v6", "e6"):
        assert redis_client.ttl(buf.keys.seen(identity)) > 0
    assert pushes.finish(_refused) == []  # nothing kept twice


def test_a_batch_whose_push_fails_hands_each_event_over(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Redis unreachable at the push: each waiting event goes to its own task."""
    settings = make_settings()
    away = build_redis_client("redis://127.0.0.1:9/0", timeout_s=0.5)
    pushes = Pushes(away, settings.namespace, ttl_s=settings.idempotency_ttl_s)
    pushes.add(new_item(1), "v1", "v1", token="first")
    pushes.add(new_item(2), "v2", "v2", token="second")
    handed: list[Any] = []

    def hand_over(token: Any, exc: BaseException) -> str:
        handed.append(token)
        return "handed_over"

    assert pushes.finish(hand_over) == ["handed_over", "handed_over"]
    assert handed == ["first", "second"]
    assert BatchBuffer(redis_client, settings).depth() == 0


def test_a_batch_looks_up_and_serves_its_cached_items_together(
    redis_client: redis.Redis, make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``publish`` (as ``ingest_many`` makes it), a batch looks its items up in the
    match cache together: one found gets its cached result, published, and is not pushed;
    the others are pushed. The events' cheap looks are one read too."""
    settings = make_settings()
    rt = Runtime(settings)
    monkeypatch.setattr(runtime_module, "_current", rt)
    try:
        cached, fresh = new_item(1), new_item(2)
        rt.redis.set(rt.buffer.keys.match_cache(cached.hash_sha256), '{"match_ids": ["m-1"]}')
        seen_event = {"bucket": "b", "key": "seen.bin", "etag": "s"}
        new_event = {"bucket": "b", "key": "new.bin", "etag": "n"}
        rt.redis.set(rt.buffer.keys.seen(args_to_event(seen_event).identity), "1")
        published: list[Result] = []
        pushes = Pushes.of(rt, events=[seen_event, new_event], publish=published.append)
        assert pushes.finds_cached()
        assert pushes.seen(seen_event) is True and pushes.seen(new_event) is False
        assert pushes.seen({"bucket": "b", "key": "other.bin"}) is None  # not in the batch
        pushes.add(cached, "v1", "v1", token=1)
        pushes.add(fresh, "v2", "v2", token=2)
        assert pushes.finish(_refused) == [CACHED, ADDED]
        assert [(r.item_id, r.verdict, r.match_ids) for r in published] == [
            (cached.id, "match", ("m-1",))
        ]
        buf = rt.buffer
        assert buf.depth() == 1 and buf.stats()["items_from_match_cache"] == 1
        assert redis_client.exists(buf.keys.seen("v1"), buf.keys.seen("v2")) == 2
        # Without ``publish`` the batch leaves the caches to each event's ingest.
        assert not Pushes.of(rt).finds_cached()
    finally:
        rt.close()
