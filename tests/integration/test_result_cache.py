"""The optional result cache for clean verdicts, on real parts: a private redis-server and
in-process moto S3.

Ingest reads real hash files, results are recorded and tagged by the real consumer, and
the clean verdict is remembered by the real downstream consumer (``on_result``); only the
API is left out — a clean verdict is the one the matcher would publish for the item.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
import redis
import structlog
from structlog.testing import capture_logs

from edgematch import runtime as runtime_module
from edgematch.config.settings import Settings
from edgematch.photodna.matchcache import CLEAN_CACHE_REASON, CachedClean, CachedMatch, MatchCache
from edgematch.pipeline import ingest as ingest_step
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.items import Item
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import CLEAN, MATCH, UNSCANNABLE, Result
from edgematch.pipeline.tagging import verdict_tags
from edgematch.runtime import Runtime
from edgematch.tasks.downstream import on_result
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
MakeRuntime = Callable[..., Runtime]
BUCKET = "uploads"
NS = "resultcache"
HOUR = 3600


@pytest.fixture
def make_rt(
    make_settings: MakeSettings,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[MakeRuntime]:
    """A runtime that is also this process's runtime(), as the worker's tasks see it."""
    made: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        rt = Runtime(make_settings(namespace=NS, **overrides))
        made.append(rt)
        monkeypatch.setattr(runtime_module, "_current", rt)
        return rt

    yield make
    for rt in made:
        rt.close()


class Pipeline:
    """Ingest, then the results consumer for what ingest publishes (as record_result does)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.published: list[Result] = []
        self.pumps: list[str] = []

    def ingest(self, key: str) -> str:
        return ingest_step.ingest(
            self.rt,
            _event(key),
            correlation_id=f"corr-{key}",
            lane="live",
            publish=self.published.append,
            start_pump=self.pumps.append,
        )

    def record(self, result: Result) -> bool:
        return consume(
            result,
            store=self.rt.results,
            tags=verdict_tags(self.rt),
            log=structlog.get_logger("test"),
            hand_on=on_result,
        )

    def buffered(self) -> list[Item]:
        return [Item.from_json(raw) for raw in self.rt.redis.hvals(self.rt.buffer.keys.items)]

    def scanned_clean(self, item: Item, *, age_s: float = 0.0) -> Result:
        """The clean result the matcher publishes for ``item`` after an API answer."""
        result = Result.for_item(
            item,
            verdict=CLEAN,
            tracking_id="trk-1",
            request_id="req-1",
            status_code=3000,
            status_description="OK",
        )
        return _aged(result, age_s)

    def stat(self, name: str) -> int:
        return int(self.rt.redis.hget(self.rt.buffer.keys.stats, name) or 0)

    def clean_ttl_ms(self, digest: str) -> int:
        return int(self.rt.redis.pttl(self.rt.buffer.keys.clean_cache(digest)))


def _aged(result: Result, age_s: float) -> Result:
    return replace(result, scanned_at=time.time() - age_s)


def _event(key: str) -> ObjectCreated:
    return ObjectCreated(
        bucket=BUCKET,
        key=key,
        version_id=None,
        etag=None,
        size=None,
        event_time=None,
        event_name="ObjectCreated:Put",
        sequencer=None,
        source="s3",
    )


def _upload(s3: S3Client, name: str, hash_bytes: bytes) -> str:
    """Upload content ``name`` and its hash file; returns the hash file's key."""
    s3.put_object(Bucket=BUCKET, Key=name, Body=b"an image " + name.encode())
    s3.put_object(Bucket=BUCKET, Key=f"{name}.bin", Body=hash_bytes)
    return f"{name}.bin"


def _tags(s3: S3Client, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}


def _scan_first(pipe: Pipeline, s3: S3Client, hash_bytes: bytes, *, age_s: float = 0.0) -> Item:
    """The first upload of ``hash_bytes``: buffered, scanned clean, recorded."""
    assert pipe.ingest(_upload(s3, "photos/first.jpg", hash_bytes)) == ingest_step.ADDED
    (item,) = pipe.buffered()
    assert pipe.record(pipe.scanned_clean(item, age_s=age_s))
    return item


# --- (1) on: a byte-identical repeat is answered from the cache ---------------------------


def test_clean_repeat_is_answered_from_the_cache(
    make_rt: MakeRuntime, s3: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TTL > 0: the second upload of the same hash bytes gets clean without buffer or API."""
    pipe = Pipeline(make_rt(clean_cache_ttl_s=HOUR))
    hash_bytes = os.urandom(HASH)
    first = _scan_first(pipe, s3, hash_bytes)
    assert pipe.clean_ttl_ms(first.hash_sha256) > (HOUR - 5) * 1000
    pumps_before = len(pipe.pumps)

    with capture_logs() as logs:
        # A logger cached by an earlier configure() would bypass the capture.
        monkeypatch.setattr(ingest_step, "log", structlog.get_logger(ingest_step.__name__))
        outcome = pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes))

    assert outcome == ingest_step.CACHED_CLEAN
    # Not buffered, no pump started: no request to the API for it.
    assert [i.key for i in pipe.buffered()] == ["photos/first.jpg.bin"]
    assert len(pipe.pumps) == pumps_before
    (cached,) = pipe.published
    assert cached.verdict == CLEAN and cached.from_cache is True and not cached.is_match
    assert cached.reason == CLEAN_CACHE_REASON
    assert (cached.key, cached.content_key) == ("photos/again.jpg.bin", "photos/again.jpg")
    assert cached.hash_sha256 == first.hash_sha256 and cached.tracking_id == "trk-1"
    assert pipe.stat("items_from_clean_cache") == 1
    assert pipe.stat("items_from_match_cache") == 0
    (line,) = [e for e in logs if e["event"] == "ingest_clean_cached"]
    assert line["key"] == "photos/again.jpg.bin" and line["content_key"] == "photos/again.jpg"
    # Never the hash bytes (nor their base64) in a log line.
    text = repr(logs)
    assert hash_bytes.hex()[:32] not in text and first.hash_b64[:32] not in text

    # Recorded and tagged like any clean result.
    assert pipe.record(cached)
    assert _tags(s3, "photos/again.jpg") == {"edgematch-status": "clean"}
    recorded = pipe.rt.results.get(BUCKET, "photos/again.jpg.bin")
    assert recorded is not None and recorded["verdict"] == CLEAN and recorded["from_cache"]

    # Idempotent like the match cache: the same event again is a duplicate.
    assert pipe.ingest("photos/again.jpg.bin") == ingest_step.DUPLICATE
    assert len(pipe.published) == 1


def test_gate_releases_a_cached_clean_like_any_clean(make_rt: MakeRuntime, s3: S3Client) -> None:
    """EDGEMATCH_GATE=on: the repeat is held pending at ingest, the cached clean frees it."""
    pipe = Pipeline(make_rt(clean_cache_ttl_s=HOUR, gate=True))
    hash_bytes = os.urandom(HASH)
    _scan_first(pipe, s3, hash_bytes)
    assert _tags(s3, "photos/first.jpg") == {"edgematch-status": "clean"}

    assert pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes)) == ingest_step.CACHED_CLEAN
    assert _tags(s3, "photos/again.jpg") == {"edgematch-status": "pending"}
    (cached,) = pipe.published
    pipe.record(cached)
    assert _tags(s3, "photos/again.jpg") == {"edgematch-status": "clean"}


# --- (2) off by default: the repeat goes to the buffer ------------------------------------


def test_clean_cache_is_off_by_default(make_rt: MakeRuntime, s3: S3Client) -> None:
    """TTL 0 (the default): nothing is remembered, and an entry left from before is ignored."""
    rt = make_rt()
    assert rt.settings.clean_cache_ttl_s == 0
    pipe = Pipeline(rt)
    hash_bytes = os.urandom(HASH)
    first = _scan_first(pipe, s3, hash_bytes)
    assert not rt.redis.exists(rt.buffer.keys.clean_cache(first.hash_sha256))

    # An entry written while the cache was on (a rollback) is not read with it off.
    on = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR)
    assert on.remember(pipe.scanned_clean(first))
    assert pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes)) == ingest_step.ADDED
    assert sorted(i.key for i in pipe.buffered()) == [
        "photos/again.jpg.bin",
        "photos/first.jpg.bin",
    ]
    assert pipe.published == [] and pipe.stat("items_from_clean_cache") == 0


# --- (3) matches always win ---------------------------------------------------------------


def test_a_match_recorded_after_a_clean_wins(make_rt: MakeRuntime, s3: S3Client) -> None:
    """A match for the same digest deletes its clean entry; the next lookup is the match."""
    rt = make_rt(clean_cache_ttl_s=HOUR)
    pipe = Pipeline(rt)
    hash_bytes = os.urandom(HASH)
    first = _scan_first(pipe, s3, hash_bytes)
    cache = MatchCache(rt.redis, NS, ttl_s=rt.settings.match_cache_ttl_s, clean_ttl_s=HOUR)
    assert isinstance(cache.find(first.hash_sha256), CachedClean)

    # The lists grew: a later upload of the same bytes matched (what on_result remembers).
    matched = Result.for_item(
        first, verdict=MATCH, is_match=True, match_ids=("m-1",), sources=("list-a",)
    )
    assert cache.remember(matched)
    assert not rt.redis.exists(rt.buffer.keys.clean_cache(first.hash_sha256))
    found = cache.find(first.hash_sha256)
    assert isinstance(found, CachedMatch) and found.match_ids == ("m-1",)
    # A clean verdict arriving after the match (a late delivery) is not remembered.
    assert not cache.remember(pipe.scanned_clean(first))
    assert not rt.redis.exists(rt.buffer.keys.clean_cache(first.hash_sha256))

    assert pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes)) == ingest_step.CACHED
    (cached,) = pipe.published
    assert cached.verdict == MATCH and cached.from_cache and cached.match_ids == ("m-1",)
    assert pipe.stat("items_from_match_cache") == 1
    assert pipe.stat("items_from_clean_cache") == 0


def test_match_entry_is_looked_at_before_a_clean_one(make_rt: MakeRuntime) -> None:
    """Even if both entries exist (written around the check), the match is the answer."""
    rt = make_rt(clean_cache_ttl_s=HOUR)
    digest = "ab" * 32
    rt.redis.set(
        rt.buffer.keys.clean_cache(digest), json.dumps({"scanned_at": time.time()}), ex=HOUR
    )
    rt.redis.set(rt.buffer.keys.match_cache(digest), '{"match_ids": ["m-2"]}', ex=HOUR)
    found = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR).find(digest)
    assert isinstance(found, CachedMatch) and found.match_ids == ("m-2",)


def test_a_batch_finds_its_items_in_one_read(make_rt: MakeRuntime) -> None:
    """find_many answers as find does an item (the match first, a clean entry within its
    TTL, nothing else), in the order asked."""
    rt = make_rt(clean_cache_ttl_s=HOUR)
    both, match, clean, stale, none = (f"{n:02d}" * 32 for n in range(5))
    for digest in (both, clean):
        rt.redis.set(
            rt.buffer.keys.clean_cache(digest), json.dumps({"scanned_at": time.time()}), ex=HOUR
        )
    rt.redis.set(
        rt.buffer.keys.clean_cache(stale), json.dumps({"scanned_at": time.time() - 2 * HOUR})
    )
    for digest in (both, match):
        rt.redis.set(rt.buffer.keys.match_cache(digest), '{"match_ids": ["m-1"]}', ex=HOUR)
    cache = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR)
    found = cache.find_many([both, match, clean, stale, none])
    assert found == [cache.find(d) for d in (both, match, clean, stale, none)]
    assert [type(f).__name__ for f in found] == [
        "CachedMatch",
        "CachedMatch",
        "CachedClean",
        "NoneType",
        "NoneType",
    ]
    off = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=0)
    assert [type(f).__name__ for f in off.find_many([both, clean])] == ["CachedMatch", "NoneType"]
    assert cache.find_many([]) == []


# --- (4) the entry expires per TTL --------------------------------------------------------


def test_clean_entry_lives_the_ttl_from_the_scan(make_rt: MakeRuntime, s3: S3Client) -> None:
    """The entry's Redis TTL is EDGEMATCH_CLEAN_CACHE_TTL_S counted from the API's answer."""
    rt = make_rt(clean_cache_ttl_s=30)
    pipe = Pipeline(rt)
    first = _scan_first(pipe, s3, os.urandom(HASH))
    assert 28_000 < pipe.clean_ttl_ms(first.hash_sha256) <= 30_000

    cache = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=30)
    other = Item.new(
        bucket=BUCKET,
        key="photos/old.jpg.bin",
        version_id=None,
        etag="e",
        content_bucket=BUCKET,
        content_key="photos/old.jpg",
        data=os.urandom(HASH),
        correlation_id="c",
    )
    # Scanned 20 s ago (a slow results queue): 10 s left, not 30.
    assert cache.remember(pipe.scanned_clean(other, age_s=20))
    assert 8_000 < pipe.clean_ttl_ms(other.hash_sha256) <= 10_000
    # Scanned longer ago than the TTL: not remembered at all.
    rt.redis.delete(rt.buffer.keys.clean_cache(other.hash_sha256))
    assert not cache.remember(pipe.scanned_clean(other, age_s=31))
    assert pipe.clean_ttl_ms(other.hash_sha256) == -2


def test_expired_clean_entry_sends_the_repeat_to_the_api(
    make_rt: MakeRuntime, s3: S3Client
) -> None:
    """Once the entry is gone (TTL 1 s), the next upload of the bytes is buffered again."""
    rt = make_rt(clean_cache_ttl_s=1)
    pipe = Pipeline(rt)
    hash_bytes = os.urandom(HASH)
    first = _scan_first(pipe, s3, hash_bytes)
    assert 0 < pipe.clean_ttl_ms(first.hash_sha256) <= 1_000
    deadline = time.monotonic() + 3
    while rt.redis.exists(rt.buffer.keys.clean_cache(first.hash_sha256)):
        assert time.monotonic() < deadline, "the clean entry outlived its TTL"
        time.sleep(0.05)
    assert pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes)) == ingest_step.ADDED
    assert pipe.published == []


def test_lowered_ttl_applies_to_entries_already_written(make_rt: MakeRuntime) -> None:
    """An entry written under a longer TTL is not served past the TTL now configured."""
    rt = make_rt(clean_cache_ttl_s=10)
    digest = "cd" * 32
    doc = json.dumps({"scanned_at": time.time() - 60})
    rt.redis.set(rt.buffer.keys.clean_cache(digest), doc, ex=HOUR)
    assert MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=10).find(digest) is None
    assert isinstance(
        MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR).find(digest), CachedClean
    )


# --- (5) unscannable is never cached ------------------------------------------------------


def test_unscannable_is_never_cached(make_rt: MakeRuntime, s3: S3Client) -> None:
    """An unscannable verdict (or a refused file, which has no digest) writes no entry."""
    rt = make_rt(clean_cache_ttl_s=HOUR)
    pipe = Pipeline(rt)
    hash_bytes = os.urandom(HASH)
    assert pipe.ingest(_upload(s3, "photos/first.jpg", hash_bytes)) == ingest_step.ADDED
    (item,) = pipe.buffered()
    gave_up = Result.for_item(item, verdict=UNSCANNABLE, reason="retries_exhausted: HTTP 503")
    cache = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR)
    assert not cache.remember(gave_up)
    pipe.record(gave_up)  # through on_result too
    assert rt.redis.keys(f"{NS}:clean-cache:*") == []
    assert rt.redis.keys(f"{NS}:match-cache:*") == []
    # The next upload of the same bytes is scanned again.
    assert pipe.ingest(_upload(s3, "photos/again.jpg", hash_bytes)) == ingest_step.ADDED

    # An empty hash file is refused at ingest: unscannable, no digest, nothing cached.
    assert pipe.ingest(_upload(s3, "photos/empty.jpg", b"")) == ingest_step.REFUSED
    refused = [r for r in pipe.published if r.key == "photos/empty.jpg.bin"]
    assert [r.verdict for r in refused] == [UNSCANNABLE] and refused[0].hash_sha256 is None
    pipe.record(refused[0])
    assert rt.redis.keys(f"{NS}:clean-cache:*") == []


# --- (6) a cached clean is not remembered again -------------------------------------------


def test_a_cached_clean_does_not_extend_the_ttl(make_rt: MakeRuntime, s3: S3Client) -> None:
    """Re-serving (and recording) a cached clean leaves the entry's expiry where it was."""
    rt = make_rt(clean_cache_ttl_s=HOUR)
    pipe = Pipeline(rt)
    hash_bytes = os.urandom(HASH)
    # Scanned 100 s ago: the entry has about HOUR - 100 s left.
    first = _scan_first(pipe, s3, hash_bytes, age_s=100)
    left_ms = pipe.clean_ttl_ms(first.hash_sha256)
    assert (HOUR - 105) * 1000 < left_ms <= (HOUR - 100) * 1000

    for n in range(3):
        assert pipe.ingest(_upload(s3, f"photos/again-{n}.jpg", hash_bytes)) == (
            ingest_step.CACHED_CLEAN
        )
    assert [r.from_cache for r in pipe.published] == [True, True, True]
    cache = MatchCache(rt.redis, NS, ttl_s=HOUR, clean_ttl_s=HOUR)
    for cached in pipe.published:
        assert not cache.remember(cached)
        pipe.record(cached)  # the results consumer, and on_result with it
        on_result(cached)  # a redelivery
    assert pipe.clean_ttl_ms(first.hash_sha256) <= left_ms
    # Nor does a redelivery of the original API result: its life counts from the scan.
    original = rt.results.get(BUCKET, "photos/first.jpg.bin")
    assert original is not None
    on_result(Result.from_dict(original))
    assert pipe.clean_ttl_ms(first.hash_sha256) <= left_ms
    assert pipe.stat("items_from_clean_cache") == 3
