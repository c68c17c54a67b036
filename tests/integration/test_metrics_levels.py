"""The levels /metrics reads from Redis at scrape time, on the private redis-server: what
they say when Redis answers, when it cannot be reached, and when one read has a bug."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import pytest
import redis
import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from edgematch.config.settings import Settings
from edgematch.downstream.flood import FloodGuard
from edgematch.infra import metrics, scrape
from edgematch.infra.keys import Keys
from edgematch.runtime import Runtime
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]
Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def runtime(redis_client: redis.Redis, make_settings: MakeSettings) -> Iterator[Runtime]:
    rt = Runtime(make_settings())
    yield rt
    rt.close()


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    # A logger cached by an earlier structlog.configure(cache_logger_on_first_use=True)
    # would bypass capture_logs: give the module a fresh proxy inside the capture.
    with capture_logs() as logs:
        monkeypatch.setattr(scrape, "log", structlog.get_logger(scrape.__name__))
        yield logs


def _scrape(rt: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Serialise the collector as /metrics does and read it back: (name, labels) -> value."""
    registry = CollectorRegistry()
    registry.register(scrape.RedisLevels(lambda: rt))
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _add_letter(rt: Runtime, reason: str, n: int) -> None:
    rt.dead_letters.add(
        task="edgematch.ingest",
        queue="edgematch.ingest",
        reason=reason,
        message="a test failure",
        args={"bucket": "uploads", "key": f"k{n}.bin"},
    )


def test_dead_letters_by_reason_and_redis_up_when_redis_answers(runtime: Runtime) -> None:
    """With Redis up: redis_up 1, and the dead-letter store's counts by reason."""
    for n, reason in enumerate(("bad_input", "bad_input", "match_signalled")):
        _add_letter(runtime, reason, n)

    scraped = _scrape(runtime)

    assert scraped[("edgematch_redis_up", ())] == 1
    assert scraped[("edgematch_dead_letters", (("reason", "bad_input"),))] == 2
    assert scraped[("edgematch_dead_letters", (("reason", "match_signalled"),))] == 1
    assert scraped[("edgematch_queue_depth", (("queue", "ingest"),))] == 0
    assert scraped[("edgematch_buffer_items", (("lane", "live"),))] == 0
    assert scraped[("edgematch_rate_limit_capacity", ())] == runtime.settings.rate_limit_per_s
    assert ("edgematch_breaker_open", ()) in scraped


def test_unreachable_redis_says_redis_up_0_and_the_scrape_answers(
    make_settings: MakeSettings, captured_logs: Logs
) -> None:
    """Nothing listening where Redis should be: the scrape answers with redis_up 0 only."""
    rt = Runtime(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        scraped = _scrape(rt)
    finally:
        rt.close()

    assert scraped == {("edgematch_redis_up", ()): 0}
    assert [e["event"] for e in captured_logs] == ["metrics_redis_unavailable"]


def test_a_bug_in_one_read_is_logged_and_counted_not_taken_for_redis_down(
    runtime: Runtime, redis_client: redis.Redis, captured_logs: Logs
) -> None:
    """A dead-letter document that is not JSON breaks that read: redis_up stays 1, the other
    levels are served, and the failure is logged with its traceback and counted."""
    _add_letter(runtime, "bad_input", 0)
    redis_client.hset(Keys(runtime.settings.namespace).dead_letters, "broken", b"{not json")
    errors = metrics.METRICS_COLLECT_ERRORS.labels("dead_letters")
    before = errors._value.get()

    scraped = _scrape(runtime)

    assert scraped[("edgematch_redis_up", ())] == 1
    assert ("edgematch_queue_depth", (("queue", "ingest"),)) in scraped
    assert not [key for key in scraped if key[0] == "edgematch_dead_letters"]
    assert errors._value.get() == before + 1
    (failed,) = [e for e in captured_logs if e["event"] == "metrics_collect_failed"]
    assert failed["family"] == "dead_letters" and failed["log_level"] == "error"
    assert failed.get("exc_info") is True


def test_a_flooded_match_id_is_served_by_name(runtime: Runtime) -> None:
    """The flood guard's flooded match ids are a gauge labelled with each one."""
    s = runtime.settings
    guard = FloodGuard(runtime.redis, s.namespace, limit=s.flood_matches, window_s=s.flood_window_s)
    for i in range(guard.limit + 1):
        guard.count(["m-flood"], "uploads", f"k{i}", now=time.time())
    guard.count(["m-calm"], "uploads", "k0", now=time.time())
    scraped = _scrape(runtime)
    assert scraped[("edgematch_flooded_match_id", (("match_id", "m-flood"),))] == 1
    assert ("edgematch_flooded_match_id", (("match_id", "m-calm"),)) not in scraped
