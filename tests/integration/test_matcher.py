"""The match step (pump, request.send_batch, settling) on a real, private redis-server.

The API's answers come from an httpx.MockTransport handler, so every status code is exact;
the batch buffer, the limiter, the cooldown, the breaker and the dead letters are the real
Lua scripts on the private Redis of ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any, cast

import httpx
import pytest
import redis
import structlog
from structlog.testing import capture_logs

from devtools.sandbox.rules import items_from_multipart
from edgematch.config.settings import Secret, Settings
from edgematch.errors import EdgematchError
from edgematch.photodna.client import KEY_HEADER, HashItem, PhotoDNAClient
from edgematch.pipeline import backpressure, request, settling
from edgematch.pipeline import match as matcher
from edgematch.pipeline.buffer import Batch, Empty, Wait
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import CLEAN, MATCH, UNSCANNABLE, Result
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
Answer = Callable[[list[str]], httpx.Response]
Logs = list[MutableMapping[str, Any]]

KEY = "KEY-matcher-0123456789"
TRACKING = "TRK-matcher-1"
REQUEST_ID = "CMR-matcher-1"


# --------------------------------------------------------------------------- the fake API


class FakeApi:
    """Records each request's content ids and answers with ``answer`` (swappable);
    ``transport``, when set, is the transport's own answer instead (it may raise)."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.payloads: dict[str, list[bytes]] = {}
        self.keys: list[str | None] = []
        self.answer: Answer = ok_answer()
        self.transport: Callable[[httpx.Request], httpx.Response] | None = None

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.transport is not None:
            return self.transport(request)
        parts = items_from_multipart(request.content, request.headers.get("content-type"))
        ids = [part.content_id for part in parts]
        for part in parts:
            self.payloads.setdefault(part.content_id, []).append(part.data or b"")
        self.requests.append(ids)
        self.keys.append(request.headers.get(KEY_HEADER))
        return self.answer(ids)

    def sent_per_item(self) -> Counter[str]:
        return Counter(cid for ids in self.requests for cid in ids)


def _status(code: int, description: str = "OK") -> dict[str, object]:
    return {"Code": code, "Description": description}


def ok_answer(
    *,
    codes: dict[str, int] | None = None,
    matches: dict[str, str] | None = None,
    tracking_id: str = TRACKING,
    request_id: str = REQUEST_ID,
    description: str | None = None,
    source: str = "sandbox",
    violations: tuple[str, ...] = ("A1",),
) -> Answer:
    """HTTP 200 with one MatchResult per id: 3000 unless ``codes`` says otherwise."""
    codes = codes or {}
    matches = matches or {}

    def answer(ids: list[str]) -> httpx.Response:
        results: list[dict[str, object]] = []
        for cid in ids:
            code = codes.get(cid, 3000)
            flags: list[dict[str, object]] = []
            if code == 3000 and cid in matches:
                flags.append(
                    {
                        "AdvancedInfo": [{"Key": "MatchId", "Value": matches[cid]}],
                        "Source": source,
                        "Violations": list(violations),
                    }
                )
            text = description or ("OK" if code == 3000 else f"code {code}")
            results.append(
                {
                    "Status": _status(code, text),
                    "ContentId": cid,
                    "IsMatch": code == 3000 and cid in matches,
                    "MatchDetails": {"AdvancedInfo": [], "MatchFlags": flags},
                }
            )
        return httpx.Response(
            200,
            json={"TrackingId": tracking_id, "MatchResults": results, "CMRequestId": request_id},
        )

    return answer


def status_answer(code: int, description: str) -> Answer:
    """HTTP 200 refusing the whole request with a top-level Status (3209 …)."""

    def answer(ids: list[str]) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "Status": _status(code, description),
                "TrackingId": TRACKING,
                "CMRequestId": REQUEST_ID,
            },
        )

    return answer


def http_answer(
    status_code: int, body: dict[str, object] | None = None, headers: dict[str, str] | None = None
) -> Answer:
    def answer(ids: list[str]) -> httpx.Response:
        return httpx.Response(status_code, json=body, headers=headers)

    return answer


UNAUTHORIZED = http_answer(
    401, {"statusCode": 401, "message": "Access denied due to invalid subscription key."}
)


# --------------------------------------------------------------------------- fixtures


class Harness:
    """A Runtime on the private Redis whose API client talks to a FakeApi."""

    def __init__(self, settings: Settings) -> None:
        self.api = FakeApi()
        client = PhotoDNAClient.from_settings(
            settings, transport=httpx.MockTransport(self.api.handler)
        )
        self.rt = Runtime(settings, api=client)
        self.results: list[Result] = []
        self._pushed = 0

    def push(self, count: int) -> list[Item]:
        items = [_item(n) for n in range(self._pushed, self._pushed + count)]
        self._pushed += count
        for item in items:
            assert self.rt.buffer.push(item, f"id-{item.key}")
        return items

    def take_batch(self) -> Batch:
        taken = self.rt.buffer.take()
        assert isinstance(taken, Batch), taken
        return taken

    def send(self, batch: Batch) -> None:
        request.send_batch(self.rt, batch, publish=self.results.extend)

    def waiting(self) -> dict[str, Item]:
        """The items the buffer holds (waiting or leased), as stored in Redis."""
        raw = self.rt.redis.hgetall(self.rt.buffer.keys.items)
        return {_text(k): Item.from_json(v) for k, v in raw.items()}

    def redis_now_ms(self) -> int:
        sec, usec = self.rt.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    def by_item(self) -> dict[str, Result]:
        return {r.item_id: r for r in self.results}


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness(redis_client: redis.Redis, make_settings: MakeSettings) -> Iterator[MakeHarness]:
    """Build a Harness; fast settings unless overridden. Redis is flushed after the test."""
    made: list[Harness] = []

    def make(**overrides: object) -> Harness:
        base: dict[str, object] = {
            "subscription_key": Secret(KEY),
            "api_url": "https://photodna.invalid/photodna/v1.0",
            "batch_linger_ms": 0,
            "rate_limit_per_s": 1000.0,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.2,
        }
        base.update(overrides)
        harness = Harness(make_settings(**base))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.rt.close()


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    # A logger cached by an earlier structlog.configure(cache_logger_on_first_use=True)
    # would bypass capture_logs: give the module a fresh proxy inside the capture.
    with capture_logs() as logs:
        for module in (request, settling):
            monkeypatch.setattr(module, "log", structlog.get_logger(module.__name__))
        yield logs


def _item(n: int) -> Item:
    return Item.new(
        bucket="uploads",
        key=f"photos/img-{n:03d}.jpg.bin",
        version_id=f"v{n}",
        etag=f"etag-{n}",
        content_bucket="uploads",
        content_key=f"photos/img-{n:03d}.jpg",
        data=os.urandom(HASH),
        correlation_id=f"corr-{n}",
    )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _assert_drained(h: Harness) -> None:
    assert h.rt.buffer.depth() == 0
    assert h.rt.buffer.in_flight() == 0
    assert h.waiting() == {}


# --------------------------------------------------------------------------- 3000


def test_all_ok_gives_one_verdict_per_item(make_harness: MakeHarness) -> None:
    """Every 3000 answer becomes one clean/match result with the answer's details."""
    h = make_harness()
    items = h.push(5)
    hit = items[1].id
    h.api.answer = ok_answer(matches={hit: "mid-0001"})

    h.send(h.take_batch())

    assert len(h.api.requests) == 1
    assert sorted(h.api.requests[0]) == sorted(i.id for i in items)
    assert h.api.keys == [KEY]
    assert {cid: data for cid, (data,) in h.api.payloads.items()} == {i.id: i.data for i in items}
    results = h.by_item()
    assert len(h.results) == 5 and set(results) == {i.id for i in items}
    for item in items:
        result = results[item.id]
        assert (result.bucket, result.key, result.version_id) == (
            item.bucket,
            item.key,
            item.version_id,
        )
        assert result.content_key == item.content_key
        assert result.correlation_id == item.correlation_id
        assert result.tracking_id == TRACKING
        assert result.request_id == REQUEST_ID
        assert result.status_code == 3000
        assert result.attempts == 1
        assert result.reason is None
        if item.id == hit:
            assert result.verdict == MATCH and result.is_match
            assert result.match_ids == ("mid-0001",)
            assert result.sources == ("sandbox",)
            assert result.violations == ("A1",)
        else:
            assert result.verdict == CLEAN and not result.is_match
            assert result.match_ids == result.sources == result.violations == ()
    _assert_drained(h)
    assert h.rt.dead_letters.count() == 0


# --------------------------------------------------------------------------- per item


def test_item_3004_retries_that_item_alone(make_harness: MakeHarness) -> None:
    """A per-item 3004 sends only that item back; after the backoff it goes alone."""
    h = make_harness()
    items = h.push(3)
    flaky = items[2].id
    h.api.answer = ok_answer(codes={flaky: 3004})

    batch = h.take_batch()
    before = h.redis_now_ms()
    h.send(batch)
    after = h.redis_now_ms()

    assert {r.item_id for r in h.results} == {items[0].id, items[1].id}
    assert all(r.attempts == 1 for r in h.results)
    assert h.rt.buffer.depth() == 1
    assert h.rt.buffer.in_flight() == 0
    (stored,) = h.waiting().values()
    assert stored.id == flaky
    assert stored.attempts == 1
    assert stored.last_error == "item_transient"

    # Backoff for a first retry with base 0.05 s: in [0.025 s, 0.05 s], on Redis's clock.
    due = h.rt.redis.zscore(h.rt.buffer.keys.ready, flaky)
    assert due is not None and before + 25 <= due <= after + 50
    waited = h.rt.buffer.take()
    if h.redis_now_ms() < due - 2:
        assert isinstance(waited, Wait) and waited.reason == "not_ready"
    _sleep_until(h, int(due))
    h.api.answer = ok_answer()
    retry = h.take_batch()
    assert [i.id for i in retry.items] == [flaky]
    h.send(retry)

    assert h.api.requests[-1] == [flaky]
    assert len(h.results) == 3
    assert h.by_item()[flaky].verdict == CLEAN
    assert h.by_item()[flaky].attempts == 2
    _assert_drained(h)
    assert h.rt.dead_letters.count() == 0


def test_item_3002_is_unscannable_and_dead_lettered(make_harness: MakeHarness) -> None:
    """A per-item 3002 gives up on that item: unscannable result, a dead letter, no bytes."""
    h = make_harness()
    items = h.push(2)
    bad = items[0]
    h.api.answer = ok_answer(codes={bad.id: 3002})

    h.send(h.take_batch())

    results = h.by_item()
    assert results[items[1].id].verdict == CLEAN
    result = results[bad.id]
    assert result.verdict == UNSCANNABLE
    assert not result.is_match
    assert result.status_code == 3002
    assert result.reason is not None and result.reason.startswith("item_rejected")
    assert "3002" in result.reason
    assert result.tracking_id == TRACKING
    assert result.attempts == 1
    _assert_drained(h)

    (letter,) = h.rt.dead_letters.list()
    assert letter.reason == "item_rejected"
    assert letter.task == "edgematch.match"
    assert (letter.bucket, letter.key) == (bad.bucket, bad.key)
    assert letter.args["bucket"] == bad.bucket and letter.args["key"] == bad.key
    assert letter.args["version_id"] == bad.version_id
    assert letter.correlation_id == bad.correlation_id
    assert letter.attempts == 1
    entry = letter.to_json()
    assert bad.hash_b64 not in entry
    assert base64.b64encode(bad.data[:30]).decode() not in entry
    assert bad.data.hex()[:40] not in entry
    assert "hash_b64" not in entry


# --------------------------------------------------------------------------- whole request


def test_503_everywhere_exhausts_attempts(make_harness: MakeHarness) -> None:
    """5xx on every request: exactly max_attempts requests per item, then unscannable."""
    h = make_harness(max_attempts=3)
    items = h.push(7)
    h.api.answer = http_answer(503, {"statusCode": 503, "message": "Service Unavailable"})
    started: list[str] = []

    deadline = time.monotonic() + 8.0
    while len(h.results) < len(items) and time.monotonic() < deadline:
        pump_id = h.rt.buffer.kick() or "manual-pump"
        matcher.pump(
            h.rt, pump_id, publish=h.results.extend, start_pump=started.append, sleep=time.sleep
        )
        time.sleep(0.02)

    assert h.api.sent_per_item() == {i.id: 3 for i in items}
    assert len(h.results) == len(items)
    for result in h.results:
        assert result.verdict == UNSCANNABLE
        assert result.attempts == 3
        assert result.status_code == 503
        assert result.reason is not None and result.reason.startswith("retries_exhausted")
    letters = h.rt.dead_letters.list()
    assert sorted(d.key for d in letters if d.key) == sorted(i.key for i in items)
    assert {d.reason for d in letters} == {"retries_exhausted"}
    assert {d.attempts for d in letters} == {3}
    _assert_drained(h)


def test_3209_rejects_every_item_of_the_request(make_harness: MakeHarness) -> None:
    """A top-level 3209 under HTTP 200 makes every item unscannable and dead-lettered."""
    h = make_harness()
    items = h.push(3)
    h.api.answer = status_answer(3209, "Request Size Exceeded")

    h.send(h.take_batch())

    assert len(h.api.requests) == 1
    assert set(h.by_item()) == {i.id for i in items} and len(h.results) == 3
    for result in h.results:
        assert result.verdict == UNSCANNABLE
        assert result.status_code == 3209
        assert result.attempts == 1
        assert result.reason is not None and result.reason.startswith("request_rejected")
    letters = h.rt.dead_letters.list()
    assert len(letters) == 3
    assert {d.reason for d in letters} == {"request_rejected"}
    assert {d.key for d in letters} == {i.key for i in items}
    _assert_drained(h)


# --------------------------------------------------------------------------- 429


def test_429_cools_the_pool_down_without_spending_an_attempt(make_harness: MakeHarness) -> None:
    """A 429 sets the pool's cooldown from Retry-After; items go back with attempts 0."""
    h = make_harness()
    items = h.push(3)
    h.api.answer = http_answer(
        429,
        {"statusCode": 429, "message": "Rate limit is exceeded. Try again in 1 seconds."},
        {"Retry-After": "1"},
    )

    batch = h.take_batch()
    before = h.redis_now_ms()
    h.send(batch)
    after = h.redis_now_ms()

    assert h.results == []
    assert h.rt.dead_letters.count() == 0
    until = h.rt.redis.get(h.rt.buffer.keys.cooldown)
    assert until is not None and before + 1000 <= int(until) <= after + 1000
    waited = h.rt.buffer.take()
    assert isinstance(waited, Wait) and waited.reason == "cooldown"
    assert 0 < waited.seconds <= 1.0
    assert h.rt.buffer.depth() == 3
    assert h.rt.buffer.in_flight() == 0
    assert {i.id: i.attempts for i in h.waiting().values()} == {i.id: 0 for i in items}
    assert h.rt.buffer.stats().get("http_429") == 1

    _sleep_until(h, int(until))
    h.api.answer = ok_answer()
    again = h.take_batch()
    assert {i.attempts for i in again.items} == {0}
    h.send(again)

    assert len(h.api.requests) == 2
    assert {r.item_id: r.attempts for r in h.results} == {i.id: 1 for i in items}
    _assert_drained(h)


# --------------------------------------------------------------------------- breaker


def _sleep_until(h: Harness, when_ms: int) -> None:
    """Sleep until Redis's clock passes ``when_ms``."""
    time.sleep(max(0.0, (when_ms - h.redis_now_ms()) / 1000) + 0.01)


def _send_refused(h: Harness, batch: Batch, answer: Answer = UNAUTHORIZED) -> int:
    """Send ``batch`` into a refused key; check the pause; return when it ends (ms)."""
    h.api.answer = answer
    before = h.redis_now_ms()
    h.send(batch)
    after = h.redis_now_ms()

    opened = h.rt.redis.get(h.rt.buffer.keys.breaker)
    assert opened is not None and before + 300 <= int(opened) <= after + 300
    waited = h.rt.buffer.take()
    assert isinstance(waited, Wait) and waited.reason == "breaker"
    assert 0 < waited.seconds <= 0.3
    assert h.results == []
    assert h.rt.dead_letters.count() == 0
    assert h.rt.buffer.in_flight() == 0
    assert {i.attempts for i in h.waiting().values()} == {0}
    return int(opened)


def _take_probe(h: Harness, opened_until_ms: int) -> Batch:
    """After the pause exactly one probe batch is let through."""
    _sleep_until(h, opened_until_ms)
    probe = h.take_batch()
    assert probe.probe
    second = h.rt.buffer.take()
    assert isinstance(second, Wait) and second.reason == "probe"
    return probe


@pytest.mark.parametrize("status_code", [401, 403])
def test_refused_key_opens_breaker_and_a_good_probe_closes_it(
    make_harness: MakeHarness, status_code: int
) -> None:
    """401/403 pause the pool; after breaker_probe_s one probe goes; its success resumes all."""
    h = make_harness(breaker_probe_s=0.3)
    items = h.push(7)
    refused = http_answer(status_code, {"statusCode": status_code, "message": "Access denied."})
    opened = _send_refused(h, h.take_batch(), refused)
    assert h.rt.buffer.depth() == 7

    probe = _take_probe(h, opened)
    h.api.answer = ok_answer()
    h.send(probe)

    assert h.rt.redis.exists(h.rt.buffer.keys.breaker, h.rt.buffer.keys.breaker_probe) == 0
    rest = h.take_batch()
    assert not rest.probe
    h.send(rest)
    assert isinstance(h.rt.buffer.take(), Empty)

    # Sent on the pump's flight threads: answered in either order.
    assert sorted(len(ids) for ids in h.api.requests) == [2, 5, 5]
    assert {r.item_id: (r.verdict, r.attempts) for r in h.results} == {
        i.id: (CLEAN, 1) for i in items
    }
    assert len(h.results) == 7
    _assert_drained(h)


def test_401_on_the_probe_reopens_the_breaker(make_harness: MakeHarness) -> None:
    """A probe refused again reopens the breaker for another breaker_probe_s."""
    h = make_harness(breaker_probe_s=0.3)
    h.push(7)
    opened = _send_refused(h, h.take_batch())

    probe = _take_probe(h, opened)
    reopened = _send_refused(h, probe)  # refused again

    assert reopened > opened
    assert h.rt.buffer.depth() == 7
    assert len(h.api.requests) == 2
    # The next pause ends with a new probe, not with the whole pool.
    assert _take_probe(h, reopened).probe


# --------------------------------------------------------------------------- pump


@pytest.mark.parametrize("match_pumps", [1, 4])
def test_pump_drains_twelve_items_in_three_requests(
    make_harness: MakeHarness, match_pumps: int
) -> None:
    """One pump sends 5, 5, 2, reports it, stops on empty and releases its slot, with every
    request settled when it returns."""
    h = make_harness(match_pumps=match_pumps)
    items = h.push(12)
    pump_id = h.rt.buffer.kick()
    assert pump_id is not None
    started: list[str] = []

    report = matcher.pump(
        h.rt, pump_id, publish=h.results.extend, start_pump=started.append, sleep=time.sleep
    )

    assert report == matcher.PumpReport(batches=3, items=12, stopped="empty")
    # Sent on the pump's flight threads: answered in either order.
    assert sorted(len(ids) for ids in h.api.requests) == [2, 5, 5]
    assert h.api.sent_per_item() == {i.id: 1 for i in items}
    assert len(h.results) == 12 and {r.verdict for r in h.results} == {CLEAN}
    _assert_drained(h)
    pumps = {
        _text(m) for m in cast("list[bytes]", h.rt.redis.zrange(h.rt.buffer.keys.pumps, 0, -1))
    }
    assert pump_id not in pumps
    assert pumps == set(started)
    if match_pumps == 1:
        assert started == []
        assert h.rt.redis.zcard(h.rt.buffer.keys.pumps) == 0


def test_pump_stops_on_a_long_cooldown_and_starts_no_other(make_harness: MakeHarness) -> None:
    """A 429 longer than the pump may run ends the pump; no pump is started to wait it out."""
    h = make_harness()
    h.push(3)
    h.api.answer = http_answer(429, None, {"Retry-After": "5"})
    pump_id = h.rt.buffer.kick()
    assert pump_id is not None
    started: list[str] = []

    report = matcher.pump(
        h.rt, pump_id, publish=h.results.extend, start_pump=started.append, sleep=time.sleep
    )

    assert report == matcher.PumpReport(batches=1, items=3, stopped="cooldown")
    assert len(h.api.requests) == 1
    assert started == []
    assert h.rt.redis.zcard(h.rt.buffer.keys.pumps) == 0
    assert h.results == []
    assert h.rt.buffer.depth() == 3
    assert h.rt.buffer.kick() is None


def test_one_pump_keeps_several_requests_in_flight_and_settles_them_before_it_returns(
    make_harness: MakeHarness,
) -> None:
    """With the API slow to answer, one pump sends its next batches while the first is
    still unanswered (up to ``match_pumps``), and returns only once all are settled."""
    h = make_harness()
    assert h.rt.settings.match_pumps >= 3  # the default
    items = h.push(15)
    answer = ok_answer()
    lock = threading.Lock()
    inside = 0
    most = 0
    three_in = threading.Event()

    def slow(ids: list[str]) -> httpx.Response:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            if inside == 3:
                three_in.set()
        # Each answer waits until three requests are unanswered at once (or 10 s).
        three_in.wait(10)
        with lock:
            inside -= 1
        return answer(ids)

    h.api.answer = slow
    pump_id = h.rt.buffer.kick()
    assert pump_id is not None

    report = matcher.pump(h.rt, pump_id, publish=h.results.extend, start_pump=lambda _: None)

    assert most == 3
    assert report == matcher.PumpReport(batches=3, items=15, stopped="empty")
    assert {r.item_id for r in h.results} == {i.id for i in items}
    assert h.api.sent_per_item() == {i.id: 1 for i in items}
    _assert_drained(h)


def test_a_pump_whose_request_fails_unexpectedly_settles_the_others_then_raises(
    make_harness: MakeHarness,
) -> None:
    """A flight that raises (here: publishing its results) leaves its own batch leased, as a
    pump that failed always did; the pump's other requests are settled before it raises."""
    h = make_harness()
    h.push(10)
    published: list[Result] = []
    failed = threading.Event()
    answer = ok_answer()
    both_sent = threading.Event()

    def counted(ids: list[str]) -> httpx.Response:
        if len(h.api.requests) == 2:
            both_sent.set()
        return answer(ids)

    h.api.answer = counted

    def publish(results: Sequence[Result]) -> None:
        if not failed.is_set():
            failed.set()
            # The failure comes once both batches are sent: the pump stops taking after
            # it, and the test is about the flight already out.
            both_sent.wait(10)
            raise RuntimeError("publishing failed")
        published.extend(results)

    pump_id = h.rt.buffer.kick()
    assert pump_id is not None

    with pytest.raises(RuntimeError, match="publishing failed"):
        matcher.pump(h.rt, pump_id, publish=publish, start_pump=lambda _: None)

    assert len(published) == 5  # the other batch: settled before the pump raised
    assert h.rt.buffer.in_flight() == 1  # the failed one: leased until its lease runs out
    assert h.rt.buffer.depth() == 0
    assert h.rt.redis.zcard(h.rt.buffer.keys.pumps) == 0


# --------------------------------------------------------------------------- lost lease


def test_lost_lease_is_logged_and_loses_no_item(
    make_harness: MakeHarness, captured_logs: Logs
) -> None:
    """A batch whose lease ran out settles with lease_lost; its items are still delivered."""
    h = make_harness()
    items = h.push(3)
    first = h.take_batch()
    h.rt.redis.zadd(h.rt.buffer.keys.leases, {first.id: 0})
    second = h.take_batch()
    assert second.id != first.id
    assert {i.id for i in second.items} == {i.id for i in items}

    h.send(first)

    lost = [e for e in captured_logs if e["event"] == "lease_lost"]
    assert len(lost) == 1 and lost[0]["batch_id"] == first.id
    assert {r.item_id for r in h.results} == {i.id for i in items}
    assert h.rt.buffer.in_flight() == 1  # the second batch still carries them

    h.results.clear()
    h.send(second)

    assert [e["event"] for e in captured_logs].count("lease_lost") == 1
    assert {r.item_id for r in h.results} == {i.id for i in items}
    _assert_drained(h)


@pytest.mark.parametrize(
    "answer",
    [
        http_answer(503),
        status_answer(3209, "Request Size Exceeded"),
        http_answer(429, None, {"Retry-After": "0"}),
        UNAUTHORIZED,
    ],
    ids=["503", "3209", "429", "401"],
)
def test_lost_lease_is_logged_whatever_the_answer(
    make_harness: MakeHarness, captured_logs: Logs, answer: Answer
) -> None:
    """A batch that lost its lease logs lease_lost for any answer, not only a 200."""
    h = make_harness()
    h.push(2)
    first = h.take_batch()
    h.rt.redis.zadd(h.rt.buffer.keys.leases, {first.id: 0})
    h.take_batch()
    h.api.answer = answer

    h.send(first)

    lost = [e for e in captured_logs if e["event"] == "lease_lost"]
    assert [e["batch_id"] for e in lost] == [first.id]


# --------------------------------------------------------------------------- secrets


def test_subscription_key_never_leaks(make_harness: MakeHarness, captured_logs: Logs) -> None:
    """A key echoed back by the server reaches no result, dead letter, exception or log."""
    h = make_harness(max_attempts=1)
    items = h.push(4)
    echo = f"echo {KEY} echo"
    h.api.answer = ok_answer(
        codes={items[0].id: 3002},
        matches={items[1].id: KEY},
        tracking_id=KEY,
        request_id=echo,
        description=echo,
        source=echo,
        violations=(KEY,),
    )
    h.send(h.take_batch())
    assert len(h.results) == 4

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused, headers {dict(request.headers)}", request=request)

    h.push(1)
    h.api.transport = refused
    h.send(h.take_batch())
    assert len(h.results) == 5 and h.results[-1].reason is not None
    assert h.results[-1].reason.startswith("retries_exhausted")

    messages: list[str] = []
    for answer in (
        http_answer(401, {"statusCode": 401, "message": echo}),
        http_answer(429, {"statusCode": 429, "message": echo}, {"Retry-After": "0"}),
        http_answer(404, {"statusCode": 404, "message": echo}),
        status_answer(3209, echo),
        http_answer(503, {"message": echo}),
    ):
        h.api.answer = answer
        client = PhotoDNAClient.from_settings(
            h.rt.settings, transport=httpx.MockTransport(h.api.handler)
        )
        with client, pytest.raises(EdgematchError) as caught:
            client.match([HashItem("x", b"\x01\x02")])
        messages += [str(caught.value), repr(caught.value)]
    with pytest.raises(EdgematchError) as caught:
        h.rt.api.match([HashItem("x", b"\x01\x02")])
    messages += [str(caught.value), repr(caught.value)]

    assert any("[redacted]" in m for m in messages)
    documents = [json.dumps(r.to_dict()) for r in h.results]
    documents += [d.to_json() for d in h.rt.dead_letters.list()]
    assert len(documents) == 5 + 2
    documents += messages
    documents += [repr(dict(event)) for event in captured_logs]
    for text in documents:
        assert KEY not in text, text


@pytest.mark.parametrize("busy", [True, False])
def test_a_sole_process_pump_yields_instead_of_sleeping_when_other_work_waits(
    make_harness: MakeHarness, busy: bool
) -> None:
    """In a one-process worker, a pump that would sleep for its next slot while ingest or
    results tasks wait ends instead (and a new pump is queued, due when the slot is);
    otherwise it waits."""
    h = make_harness(match_pumps=1, batch_linger_ms=300)
    h.push(7)
    pump_id = h.rt.buffer.kick()
    assert pump_id is not None
    started: list[str] = []
    due: list[tuple[str, float]] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    report = matcher.pump(
        h.rt,
        pump_id,
        publish=h.results.extend,
        start_pump=started.append,
        sleep=sleep,
        others_waiting=lambda: busy,
        start_pump_later=lambda next_id, seconds: due.append((next_id, seconds)),
    )

    if busy:
        assert report == matcher.PumpReport(batches=1, items=5, stopped="yield")
        assert slept == []
        # The next pump, due when the slot is (the two left linger 300 ms), not at once:
        # the match queue is served first, so it would run before the waiting work.
        assert started == []
        assert len(due) == 1 and 0 < due[0][1] <= 0.3 - matcher.GIVE_WAY_LEAD_S
        assert h.rt.buffer.depth() == 2
    else:
        assert report == matcher.PumpReport(batches=2, items=7, stopped="empty")
        assert slept and all(s > 0 for s in slept)
        _assert_drained(h)


def test_others_waiting_reads_the_queues_named(make_harness: MakeHarness) -> None:
    """Tasks waiting in a queue the worker serves count; other queues do not."""
    h = make_harness()
    keys = h.rt.buffer.keys
    served = [keys.queue("ingest"), keys.queue("results")]
    assert backpressure.others_waiting(h.rt, served) is False
    h.rt.redis.lpush(keys.queue("match"), "a pump")
    h.rt.redis.lpush(keys.queue("reports"), "a report, for another worker")
    assert backpressure.others_waiting(h.rt, served) is False
    h.rt.redis.lpush(keys.queue("results"), "a results task")
    assert backpressure.others_waiting(h.rt, served) is True
    assert backpressure.others_waiting(h.rt, []) is False


# --------------------------------------------------------------------------- match signals


def _one(cid: str | None, match_id: str | None = None, code: int = 3000) -> dict[str, object]:
    """One MatchResult for ``cid`` (None: without a ContentId, as MatchHash answers)."""
    flags = (
        [{"AdvancedInfo": [{"Key": "MatchId", "Value": match_id}], "Source": "S"}]
        if match_id
        else []
    )
    return {
        "Status": _status(code),
        "ContentId": cid,
        "IsMatch": match_id is not None,
        "MatchDetails": {"AdvancedInfo": [], "MatchFlags": flags},
    }


def results_answer(build: Callable[[list[str]], list[dict[str, object]]]) -> Answer:
    """HTTP 200 whose MatchResults are whatever ``build`` makes of the ids sent."""

    def answer(ids: list[str]) -> httpx.Response:
        body = {"TrackingId": TRACKING, "MatchResults": build(ids), "CMRequestId": REQUEST_ID}
        return httpx.Response(200, json=body)

    return answer


def conflicting(hit: str) -> Answer:
    """A clean and then a match for ``hit`` (issue 12's answer); the others answered once."""
    return results_answer(
        lambda ids: [_one(hit), _one(hit, "mid-conflict"), *(_one(i) for i in ids if i != hit)]
    )


def _send_until_settled(h: Harness, count: int) -> None:
    """Send whatever the buffer hands out, waiting out backoffs, until ``count`` results."""
    deadline = time.monotonic() + 10.0
    while len(h.results) < count:
        assert time.monotonic() < deadline, f"{len(h.results)} of {count} results"
        taken = h.rt.buffer.take()
        if isinstance(taken, Batch):
            h.send(taken)
        else:
            time.sleep(0.02)


def test_a_conflicting_duplicate_then_a_clean_ends_unscannable_never_clean(
    make_harness: MakeHarness,
) -> None:
    """A known hit answered clean and match under one ContentId goes back carrying the
    match signal; when a later attempt answers clean it ends unscannable with a
    match_signalled dead letter, not clean. Its batch-mate, never signalled, ends clean."""
    h = make_harness()
    hit, other = h.push(2)
    h.api.answer = conflicting(hit.id)

    h.send(h.take_batch())

    assert h.results == []
    stored = h.waiting()
    assert stored[hit.id].attempts == 1
    signal = stored[hit.id].match_signal
    assert signal is not None and TRACKING in signal and "attempt 1" in signal
    assert "two different results for one ContentId" in signal
    assert stored[other.id].match_signal is None

    h.api.answer = ok_answer()
    _send_until_settled(h, 2)

    results = h.by_item()
    assert results[other.id].verdict == CLEAN and results[other.id].attempts == 2
    ended = results[hit.id]
    assert ended.verdict == UNSCANNABLE and not ended.is_match and ended.match_ids == ()
    assert ended.reason is not None and ended.reason.startswith("match_signalled: ")
    assert "attempt 2 answered clean" in ended.reason
    (letter,) = h.rt.dead_letters.list()
    assert letter.reason == "match_signalled" and letter.key == hit.key
    assert "a match was signalled" in letter.message and TRACKING in letter.message
    assert letter.attempts == 2
    assert h.api.sent_per_item() == {hit.id: 2, other.id: 2}
    _assert_drained(h)


def test_a_conflicting_duplicate_then_a_clear_match_is_a_match(make_harness: MakeHarness) -> None:
    """When the next answer says match unambiguously, that answer's details are recorded."""
    h = make_harness()
    (hit,) = h.push(1)
    h.api.answer = conflicting(hit.id)
    h.send(h.take_batch())
    h.api.answer = ok_answer(matches={hit.id: "mid-clear"})

    _send_until_settled(h, 1)

    (result,) = h.results
    assert result.verdict == MATCH and result.match_ids == ("mid-clear",)
    assert result.attempts == 2
    assert h.rt.dead_letters.count() == 0
    _assert_drained(h)


def test_an_answer_that_stays_ambiguous_ends_match_signalled(make_harness: MakeHarness) -> None:
    """Conflicting on every attempt: after max_attempts the dead letter says a match was
    signalled, not merely that retries ran out."""
    h = make_harness()
    (hit,) = h.push(1)
    h.api.answer = conflicting(hit.id)

    _send_until_settled(h, 1)

    (result,) = h.results
    attempts = h.rt.settings.max_attempts
    assert h.api.sent_per_item() == {hit.id: attempts}
    assert result.verdict == UNSCANNABLE and result.attempts == attempts
    (letter,) = h.rt.dead_letters.list()
    assert letter.reason == "match_signalled"
    assert "never confirmed; retries_exhausted" in letter.message
    _assert_drained(h)


def test_a_short_answer_without_ids_signals_every_item(make_harness: MakeHarness) -> None:
    """MatchHash's id-less answer one result short (an innocent item's lost): nothing is
    read by position. The hit matches on the next attempt; the match could have been any
    item's, so the others end match_signalled instead of clean."""
    h = make_harness()
    items = h.push(3)
    hit = items[1].id

    def one_short(ids: list[str]) -> list[dict[str, object]]:
        lost = next(i for i in ids if i != hit)  # one innocent item's result goes missing
        return [_one(None, "mid-hit") if i == hit else _one(None) for i in ids if i != lost]

    h.api.answer = results_answer(one_short)
    h.send(h.take_batch())
    assert h.results == []
    assert all(item.match_signal for item in h.waiting().values())

    h.api.answer = ok_answer(matches={hit: "mid-hit"})
    _send_until_settled(h, 3)

    results = h.by_item()
    assert results[hit].verdict == MATCH and results[hit].match_ids == ("mid-hit",)
    for item in items:
        if item.id != hit:
            assert results[item.id].verdict == UNSCANNABLE
            assert results[item.id].match_ids == ()
    assert sorted(d.key for d in h.rt.dead_letters.list() if d.key) == sorted(
        i.key for i in items if i.id != hit
    )
    assert {d.reason for d in h.rt.dead_letters.list()} == {"match_signalled"}
    _assert_drained(h)


def test_a_refused_item_after_a_match_signal_says_the_signal(make_harness: MakeHarness) -> None:
    """A permanent refusal after a match signal is dead-lettered as match_signalled, with
    the refusal in its message."""
    h = make_harness()
    (hit,) = h.push(1)
    h.api.answer = conflicting(hit.id)
    h.send(h.take_batch())
    h.api.answer = ok_answer(codes={hit.id: 3002})

    _send_until_settled(h, 1)

    (letter,) = h.rt.dead_letters.list()
    assert letter.reason == "match_signalled" and "item_rejected" in letter.message
    assert h.results[0].verdict == UNSCANNABLE and h.results[0].status_code == 3002
