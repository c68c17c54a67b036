"""A 429 asking for an hour holds the pool for EDGEMATCH_MAX_COOLDOWN_S, then one probe.

The real match step (``request.send_batch``), the batch buffer's Lua scripts on the
private Redis, and the sandbox over HTTP answering 429 with ``Retry-After: 3600`` when
told to (``throttle_next``). Everything runs on the default settings, so the test waits
out the default ceiling (60 s) once, for two pools side by side (two namespaces): one
whose probe is accepted, one whose probe is refused again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from devtools.items import fill
from devtools.sandbox.server import Sandbox, SandboxConfig
from edgematch.config.settings import Secret, Settings
from edgematch.infra.scrape import RedisLevels
from edgematch.pipeline import request
from edgematch.pipeline.buffer import Batch, Empty, Wait
from edgematch.pipeline.results import CLEAN, Result
from edgematch.runtime import Runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

KEY = "KEY-cooldown-0123456789"
ASKED_S = 3600
MakeSettings = Callable[..., Settings]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The sandbox over HTTP, without its own rate limit (the test sends few requests)."""
    server = Sandbox(SandboxConfig(key=KEY, rate=0)).start()
    yield server
    server.stop()


def _faults(sandbox: Sandbox, **faults: Any) -> None:
    httpx.post(f"{sandbox.root_url}/_sandbox/faults", json=faults, timeout=5).raise_for_status()


def _requests(sandbox: Sandbox) -> int:
    stats: dict[str, Any] = sandbox.stats()
    return int(stats["requests_total"])


class Pool:
    """One deployment (namespace) of the match step on the private Redis."""

    def __init__(self, settings: Settings) -> None:
        self.rt = Runtime(settings)
        self.results: list[Result] = []

    def next_batch(self, timeout_s: float = 10.0) -> Batch:
        """The next batch, waiting out rate and linger as a pump does (not a cooldown)."""
        deadline = time.monotonic() + timeout_s
        while True:
            taken = self.rt.buffer.take()
            if isinstance(taken, Batch):
                return taken
            assert isinstance(taken, Wait) and taken.reason in ("rate", "linger"), taken
            assert time.monotonic() < deadline, "no batch"
            time.sleep(taken.seconds)

    def send(self, batch: Batch) -> None:
        request.send_batch(self.rt, batch, publish=self.results.extend)

    def levels(self) -> dict[str, float]:
        """The cooldown gauges a Prometheus scrape would show."""
        wanted = ("edgematch_cooldown_capped", "edgematch_cooldown_asked_seconds")
        return {
            family.name: family.samples[0].value
            for family in RedisLevels(lambda: self.rt).collect()
            if family.name in wanted
        }


MakePool = Callable[[str, str], Pool]


@pytest.fixture
def make_pool(redis_client: redis.Redis, make_settings: MakeSettings) -> Iterator[MakePool]:
    """Pools on the default settings but for their namespace, key and API URL."""
    made: list[Pool] = []

    def make(namespace: str, api_url: str) -> Pool:
        pool = Pool(
            make_settings(namespace=namespace, subscription_key=Secret(KEY), api_url=api_url)
        )
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.rt.close()


def test_a_capped_cooldown_ends_with_one_probe_then_resumes_or_cools_down_again(
    sandbox: Sandbox, make_pool: MakePool
) -> None:
    """A 429 asking for 3600 s holds the pool for the ceiling (60 s), not an hour; then
    exactly one probe request goes while the others wait. Accepted, the pool resumes and
    sends the rest; refused with 429 again, the pool cools down again, capped again."""
    accepted = make_pool("capped-ok", sandbox.url)
    refused = make_pool("capped-again", sandbox.url)
    ceiling_s = accepted.rt.settings.max_cooldown_s
    assert ceiling_s == 60.0  # the default, which this test waits out

    _faults(sandbox, throttle_next=2, throttle_retry_after_s=ASKED_S)
    for pool in (accepted, refused):
        fill(pool.rt.buffer, 12, prefix=f"{pool.rt.settings.namespace}/")
        pool.send(pool.next_batch())
        window = pool.rt.buffer.window_use()
        assert ceiling_s - 2 < window.cooldown_s <= ceiling_s
        assert window.cooldown_asked_s == ASKED_S
        assert pool.levels() == {
            "edgematch_cooldown_capped": 1.0,
            "edgematch_cooldown_asked_seconds": ASKED_S,
        }
        waited = pool.rt.buffer.take()
        assert isinstance(waited, Wait) and waited.reason == "cooldown"
        assert waited.seconds <= ceiling_s
        assert pool.rt.buffer.depth() == 12 and pool.results == []
    assert _requests(sandbox) == 2

    time.sleep(max(p.rt.buffer.window_use().cooldown_s for p in (accepted, refused)) + 0.2)

    # Exactly one probe per pool: while it is out, every other take waits for its answer.
    probes = {}
    for pool in (accepted, refused):
        probe = pool.next_batch()
        assert probe.probe and len(probe.items) == 5
        held = pool.rt.buffer.take()
        assert isinstance(held, Wait) and held.reason == "probe"
        probes[pool] = probe
    assert _requests(sandbox) == 2

    # Refused again: another capped cooldown, and no request until it is over.
    _faults(sandbox, throttle_next=1, throttle_retry_after_s=ASKED_S)
    refused.send(probes[refused])
    assert _requests(sandbox) == 3
    window = refused.rt.buffer.window_use()
    assert ceiling_s - 2 < window.cooldown_s <= ceiling_s and window.cooldown_asked_s == ASKED_S
    again = refused.rt.buffer.take()
    assert isinstance(again, Wait) and again.reason == "cooldown"
    assert refused.rt.buffer.depth() == 12 and refused.results == []
    assert refused.rt.buffer.stats()["cooldowns_capped"] == 2

    # Accepted: the pool resumes at once, no more probes, everything is scanned.
    accepted.send(probes[accepted])
    assert accepted.rt.buffer.window_use().cooldown_asked_s == 0.0
    assert accepted.levels()["edgematch_cooldown_capped"] == 0.0
    while True:
        taken = accepted.rt.buffer.take()
        if isinstance(taken, Empty):
            break
        if isinstance(taken, Wait):
            assert taken.reason in ("rate", "linger"), taken
            time.sleep(taken.seconds)
            continue
        assert not taken.probe
        accepted.send(taken)
    assert sorted(r.verdict for r in accepted.results) == [CLEAN] * 12
    assert {r.attempts for r in accepted.results} == {1}  # the 429s spent no attempt
    assert _requests(sandbox) == 3 + 3  # the probe, then 5 + 2
