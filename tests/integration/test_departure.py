"""A request that leaves later than its rate-limit slot still keeps the pool under the limit.

The real match step (``request.send_batch``), the buffer's and the departure's Lua scripts
on the private Redis, and the sandbox over HTTP with its own 5 request/s sliding window,
which counts a request when it arrives. Everything runs on the default settings
(``EDGEMATCH_RATE_LIMIT_MARGIN`` included). The delay between a take and the request
leaving is ``before_send``, made slow here as a busy host makes it: a sending thread
that does not run for a while, a process descheduled between the take and the send.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from devtools.items import fill
from devtools.sandbox.server import Sandbox, SandboxConfig
from edgematch.config.settings import Secret, Settings
from edgematch.photodna.client import HashItem
from edgematch.pipeline import request
from edgematch.pipeline.buffer import Batch, Empty, Wait
from edgematch.pipeline.results import Result
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY = "KEY-departure-0123456789"
RATE = 5.0
MakeSettings = Callable[..., Settings]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    server = Sandbox(SandboxConfig(key=KEY, rate=RATE)).start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_client: redis.Redis, make_settings: MakeSettings, sandbox: Sandbox) -> Settings:
    """The default settings but for the key, the API URL and the rate the sandbox enforces."""
    return make_settings(subscription_key=Secret(KEY), api_url=sandbox.url, rate_limit_per_s=RATE)


def _take(rt: Runtime) -> Batch:
    while True:
        taken = rt.buffer.take()
        if isinstance(taken, Batch):
            return taken
        assert isinstance(taken, Wait), taken
        time.sleep(taken.seconds)


def _pump(settings: Settings, delays_s: Iterator[float], results: list[Result]) -> None:
    """One worker of the pool: take, send, settle until the buffer is empty."""
    rt = Runtime(settings)
    try:
        while True:
            taken = rt.buffer.take()
            if isinstance(taken, Empty):
                return
            if isinstance(taken, Wait):
                time.sleep(taken.seconds)
                continue
            request.send_batch(
                rt,
                taken,
                publish=results.extend,
                before_send=functools.partial(time.sleep, next(delays_s)),
            )
    finally:
        rt.close()


def test_requests_held_up_after_their_slot_draw_no_429(
    settings: Settings, sandbox: Sandbox
) -> None:
    """Three workers share the pool's limit; every other request is held up 300 ms after
    its take (far more than the margin, and more than a slot's spacing). The API still
    sees at most 5 requests in any second, answers no 429, and every hash is answered by
    one request."""
    rt = Runtime(settings)
    fill(rt.buffer, 150)
    results: list[Result] = []
    pattern = iter([0.0, 0.3] * 50)
    lock = threading.Lock()

    def delays() -> Iterator[float]:
        while True:
            with lock:
                yield next(pattern)

    workers = [
        threading.Thread(target=_pump, args=(settings, delays(), results), daemon=True)
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    for worker in workers:
        worker.join(timeout=max(0.0, deadline - time.monotonic()))
    rt.close()

    assert not any(worker.is_alive() for worker in workers)
    stats: dict[str, Any] = sandbox.stats()
    assert stats["by_http_status"] == {"200": 30}
    assert stats["max_accepted_in_any_1s_window"] <= RATE
    assert len(results) == 150


def test_a_request_late_by_more_than_a_window_waits_for_a_free_slot(settings: Settings) -> None:
    """A request whose slot has dropped out of the log (it was held up for more than a
    window, and five others were taken meanwhile) does not leave unaccounted: it waits
    until the window has room, then is in the log at the moment it leaves."""
    rt = Runtime(settings)
    fill(rt.buffer, 30)
    late = _take(rt)
    time.sleep(rt.departures.window_s + 0.05)
    for _ in range(5):
        rt.buffer.settle(_take(rt).id, (), ())
    wait_s = rt.departures.depart(late.id)
    assert 0 < wait_s <= rt.departures.window_s
    assert rt.redis.zscore(rt.buffer.keys.rate_log, late.id) is None
    time.sleep(wait_s)
    assert rt.departures.depart(late.id) == 0.0
    assert rt.redis.zscore(rt.buffer.keys.rate_log, late.id) is not None
    assert rt.buffer.window_use().used == 5
    rt.close()


def test_a_429_since_the_take_holds_a_request_that_has_not_left(settings: Settings) -> None:
    """Another worker drew a 429 after this batch was taken: the request waits out the
    pool's cooldown (the Retry-After) before it leaves."""
    rt = Runtime(settings)
    fill(rt.buffer, 5)
    batch = _take(rt)
    rt.buffer.set_cooldown(1.0)
    wait_s = rt.departures.depart(batch.id)
    assert 0.9 < wait_s <= 1.0
    rt.close()


def test_the_entry_moves_to_when_the_body_was_written_only_within_a_window(
    settings: Settings,
) -> None:
    """The entry moves to the moment the request's body was written, later than its
    stamp; never earlier, and not once the stamp is a window old (a take since may have
    left it out of its count)."""
    rt = Runtime(settings)
    fill(rt.buffer, 10)
    first, second = _take(rt), _take(rt)
    log_key = rt.buffer.keys.rate_log
    assert rt.departures.depart(first.id) == 0.0
    stamped = rt.redis.zscore(log_key, first.id)
    time.sleep(0.1)
    assert rt.departures.left(first.id, ago_s=0.05)
    moved = rt.redis.zscore(log_key, first.id)
    assert moved is not None and stamped is not None and 30 <= moved - stamped <= 1000
    assert not rt.departures.left(first.id, ago_s=5.0)
    assert rt.redis.zscore(log_key, first.id) == moved

    assert rt.departures.depart(second.id) == 0.0
    second_stamp = rt.redis.zscore(log_key, second.id)
    assert second_stamp is not None
    time.sleep(rt.departures.window_s + 0.3)
    assert not rt.departures.left(second.id, ago_s=0.0)
    rt.close()


def test_the_client_says_when_the_body_was_written(settings: Settings) -> None:
    """Over real HTTP, ``on_written`` is called once per request, after it started and
    before its answer was back."""
    rt = Runtime(settings)
    written: list[float] = []
    before = time.monotonic()
    response = rt.api.match(
        [HashItem(content_id="a", data=os.urandom(HASH))], on_written=written.append
    )
    after = time.monotonic()
    assert response.http_status == 200
    assert len(written) == 1 and before <= written[0] <= after
    rt.close()
