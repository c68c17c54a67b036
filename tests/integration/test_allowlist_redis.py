"""The allowlist on a private redis-server: what it clears, and that it fails closed."""

from __future__ import annotations

import boto3
import pytest
import redis
import structlog

from edgematch.infra.redisclient import RedisUnavailable
from edgematch.infra.redisclient import redis_client as build_client
from edgematch.infra.storage import ObjectStore
from edgematch.pipeline.allowlist import MATCH_ID, SHA256, Allowlist, Entry
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import ALLOWLISTED, MATCH
from edgematch.pipeline.resultstore import ResultStore
from edgematch.pipeline.tagging import VerdictTags
from tests.support.ports import free_port
from tests.support.results import match_result

pytestmark = pytest.mark.integration

NS = "allowtest"


def test_only_a_fully_listed_match_is_allowlisted(redis_client: redis.Redis) -> None:
    """Both ids listed: allowlisted; one taken off: a match again; the hash alone clears
    its picture; the list is kept oldest first and can be replaced whole."""
    allowlist = Allowlist(redis_client, NS)
    first, second = (
        Entry(MATCH_ID, m, "ana", "wrong entry", at=t) for m, t in (("m1", 1), ("m2", 2))
    )
    allowlist.put(second)
    allowlist.put(first)
    assert allowlist.screen(match_result()).verdict == ALLOWLISTED
    assert [e.value for e in allowlist.entries()] == ["m1", "m2"]
    assert allowlist.delete(MATCH_ID, "m2") and not allowlist.delete(MATCH_ID, "m2")
    assert allowlist.screen(match_result()).verdict == MATCH
    digest = "cd" * 32
    allowlist.put(Entry(SHA256, digest, "ana", "one picture"))
    assert allowlist.screen(match_result(hash_sha256=digest)).verdict == ALLOWLISTED
    assert allowlist.replace_all([second]) == 1
    assert [e.value for e in allowlist.entries()] == ["m2"]


def test_a_list_that_cannot_be_read_records_nothing(redis_client: redis.Redis) -> None:
    """Redis away while a match is recorded: the error is raised (the task retries) and no
    result is recorded — never allowlisted, never clean."""
    Allowlist(redis_client, NS).put(Entry(MATCH_ID, "m1", "ana", "x"))
    away = build_client(f"redis://127.0.0.1:{free_port()}/0")
    store = ResultStore(redis_client, NS, ttl_s=7200)
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    tags = VerdictTags(ObjectStore(s3), redis_client, NS, tag_key="edgematch-status", lock_ttl_s=30)
    handed: list[object] = []
    with pytest.raises(RedisUnavailable):
        consume(
            match_result(),
            store=store,
            tags=tags,
            log=structlog.get_logger(),
            hand_on=handed.append,
            allowlist=Allowlist(away, NS),
        )
    assert handed == [] and store.current("uploads", "photos/cat.jpg.bin") is None
