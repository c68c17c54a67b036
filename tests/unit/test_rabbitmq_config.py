"""RabbitMQ as the broker: which workarounds apply, the queues' arguments, TLS, the dead-letter
queue's messages as dead letters. Pure: nothing connects."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
from celery import Celery
from celery.utils.quorum_queues import detect_quorum_queues

from edgematch.config import rabbit
from edgematch.config.brokerkind import AMQP, REDIS, BrokerKind, capabilities, kind_of
from edgematch.config.celery import celery_config
from edgematch.config.queue_order import LiveFirstWaiting, prefetch
from edgematch.config.settings import Settings
from edgematch.errors import ConfigurationError
from edgematch.names import QUEUE_STEPS
from edgematch.recovery.deadqueue import Dead
from edgematch.recovery.poison import POISON

KEY = "test-key-0123"


def _settings(broker_url: str, **env: str) -> Settings:
    return Settings.from_env(
        {"EDGEMATCH_BROKER_URL": broker_url, "EDGEMATCH_SUBSCRIPTION_KEY": KEY, **env}
    )


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", BrokerKind.REDIS),
        ("rediss://:pw@r:6380/0", BrokerKind.REDIS),
        ("sentinel://s1:26379;sentinel://s2:26379/0", BrokerKind.REDIS),
        ("amqp://edgematch:pw@rabbit:5672/edgematch", BrokerKind.AMQP),
        ("amqps://edgematch:pw@rabbit:5671/edgematch", BrokerKind.AMQP),
    ],
)
def test_the_url_decides_the_broker(url: str, kind: BrokerKind) -> None:
    assert kind_of(url) is kind


def test_one_place_decides_which_workarounds_apply() -> None:
    """Redis needs every one; RabbitMQ's quorum queues give each guarantee themselves."""
    assert capabilities("redis://r:6379/0") is REDIS
    assert (REDIS.journal, REDIS.hand_back, REDIS.count_deliveries) == (True, True, True)
    assert capabilities("amqp://r/v") is AMQP
    assert (AMQP.journal, AMQP.hand_back, AMQP.count_deliveries) == (False, False, False)
    assert not AMQP.visibility_timeout
    assert _settings("amqp://u:p@rabbit:5672/v").broker is AMQP


def test_another_scheme_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="EDGEMATCH_BROKER_URL"):
        _settings("kafka://broker:9092")


def test_every_queue_is_a_quorum_queue_with_the_delivery_limit() -> None:
    """Quorum, dead-lettered at-least-once to <ns>.dead once delivered max_deliveries times
    (RabbitMQ's limit counts the deliveries after the first), on a topic exchange."""
    config = celery_config(_settings("amqp://u:p@rabbit:5672/v", EDGEMATCH_MAX_DELIVERIES="3"))
    queues = config["task_queues"]
    assert [q.name for q in queues] == [f"edgematch.{step}" for step in QUEUE_STEPS]
    for queue in queues:
        assert queue.queue_arguments == {
            "x-queue-type": "quorum",
            "x-delivery-limit": 2,
            "x-dead-letter-exchange": "edgematch.dead",
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
        assert queue.durable and queue.exchange.type == "topic"
        assert queue.routing_key == queue.name
    assert config["broker_transport"] is None  # kombu's py-amqp transport
    assert config["broker_transport_options"] == {"confirm_publish": True}
    assert config["task_acks_late"] and config["worker_prefetch_multiplier"] == 1
    assert config["worker_disable_prefetch"] is False  # Redis only


def test_the_redis_broker_keeps_its_own_options() -> None:
    config = celery_config(_settings("redis://127.0.0.1:6379/0"))
    assert config["worker_disable_prefetch"] is True
    assert "visibility_timeout" in config["broker_transport_options"]
    assert all(not q.queue_arguments for q in config["task_queues"])


def test_celery_sees_quorum_queues() -> None:
    """What makes Celery turn off global QoS and use native delayed delivery."""
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(_settings("amqp://u:p@rabbit:5672/v")))
    assert detect_quorum_queues(app, "amqp")[0]


def test_amqps_verifies_the_certificate_and_the_host_name() -> None:
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(_settings("amqps://u:p@rabbit.internal:5671/v")))
    with app.connection_for_write() as conn:
        assert conn.ssl == {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": "rabbit.internal"}
    assert rabbit.broker_ssl("amqp://u:p@rabbit:5672/v") is None


@pytest.mark.parametrize(
    ("delay_s", "sent_s"), [(0.0, 0.0), (0.2, 1.0), (1.0, 1.0), (1.4, 2.0), (30.0, 30.0)]
)
def test_a_countdown_is_whole_seconds_for_delayed_delivery(delay_s: float, sent_s: float) -> None:
    assert rabbit.countdown(delay_s) == sent_s


def _dead(reason: str, task: str = "edgematch.ingest", **kwargs: Any) -> Dead:
    headers = {
        "task": task,
        "id": "abc",
        "x-first-death-reason": reason,
        "x-first-death-queue": "edgematch.ingest",
        "x-death": [{"reason": reason, "queue": "edgematch.ingest", "count": 1}],
    }
    body = json.dumps([[], kwargs, {}])
    return Dead.of(headers, body)


def test_a_message_past_its_delivery_limit_is_poison() -> None:
    event = {"bucket": "uploads", "key": "a/b.jpg.bin"}
    dead = _dead("delivery_limit", event=event, correlation_id="c1", lane="live")
    assert dead.reason == POISON and dead.queue == "edgematch.ingest"
    assert dead.kwargs["event"] == event
    assert dead.location() == ("uploads", "a/b.jpg.bin")
    assert dead.dedupe_id == "task:abc"  # as the task itself would write it
    assert not dead.dropped


def test_a_replay_updates_the_entry_it_replays() -> None:
    assert _dead("delivery_limit", replayed_from="entry-1").dedupe_id == "entry-1"


def test_an_expired_periodic_task_is_dropped_other_reasons_are_kept() -> None:
    assert _dead("expired", task="edgematch.sweep").dropped
    rejected = _dead("rejected")
    assert rejected.reason == "broker_rejected" and not rejected.dropped


class _Request:
    def __init__(self, queue: str) -> None:
        self.delivery_info = {"routing_key": queue}


def _entry(queue: str) -> tuple[Any, ...]:
    return (print, (_Request(queue),), {})


def _queue_of(entry: tuple[Any, ...]) -> str:
    return str(entry[1][0].delivery_info["routing_key"])


def test_tasks_held_for_the_pool_run_live_first_with_backgrounds_share() -> None:
    """On RabbitMQ, what the consumer holds waits for a process in ORDER, FIFO within a
    queue, and every tenth pick is background's while it has any."""
    waiting = LiveFirstWaiting(min_share=0.1)
    for queue in ["edgematch.background"] * 12 + ["edgematch.ingest"] * 12:
        waiting.append(_entry(queue))
    waiting.append(_entry("edgematch.match"))
    assert len(waiting) == 25
    taken = [_queue_of(waiting.popleft()) for _ in range(12)]
    assert taken[0] == "edgematch.match"
    assert taken[1:9] == ["edgematch.ingest"] * 8
    assert taken[9] == "edgematch.background"  # the tenth pick
    assert taken[10:12] == ["edgematch.ingest"] * 2
    waiting.clear()
    assert len(waiting) == 0
    with pytest.raises(IndexError):
        waiting.popleft()


def test_live_queues_beside_background_hold_a_task_waiting_for_every_process() -> None:
    """Beside background, a live queue's consumer holds twice the processes (one running
    and one waiting for each); background, and every queue of a worker without background,
    hold one a process (more would keep tasks from other workers' free processes)."""
    mixed = ("edgematch.ingest", "edgematch.background")
    assert prefetch("edgematch.ingest", mixed, 4) == 8
    assert prefetch("edgematch.background", mixed, 4) == 4
    assert prefetch("edgematch.match", ("edgematch.match",), 2) == 2
    assert prefetch("edgematch.results", ("edgematch.results", "edgematch.ingest"), 3) == 3
