"""The task journal on a private redis-server: what the sweep counts as lost, and not, and
how it hands back the deliveries of a worker that died.

Queues and kombu's unacked hash are written here in the shapes kombu's Redis transport
uses (a JSON message with ``headers.id``; ``[message, exchange, routing key]``), so the
journal reads exactly what it reads under a real worker (tests/e2e covers that too); the
hand-back tests take real deliveries with kombu, through the application's own Celery
configuration. A worker that died N seconds ago is one whose deliveries were last
refreshed N seconds ago.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Consumer, Message

from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.recovery import journal as journal_module
from edgematch.recovery.journal import Journal
from edgematch.recovery.unacked import STALE_S, DeliveryKeeper, Unacked

pytestmark = pytest.mark.integration

NS = "journaltest"
QUEUE = f"{NS}.ingest"


def _message(task_id: str, name: str = "edgematch.ingest") -> str:
    return json.dumps({"body": "e30=", "headers": {"id": task_id, "task": name}})


def _age(client: redis.Redis, task_id: str, seconds: float) -> None:
    client.zadd(f"{NS}:journal:at", {task_id: time.time() - seconds})


def _recover(journal: Journal) -> list[tuple[str, dict[str, Any], str]]:
    published: list[tuple[str, dict[str, Any], str]] = []
    journal.recover(lambda name, kwargs, task_id: published.append((name, dict(kwargs), task_id)))
    return published


@pytest.fixture
def journal(redis_client: redis.Redis) -> Journal:
    return Journal(redis_client, NS, grace_s=5.0)


def test_a_lost_task_is_published_again_under_its_id(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """Journaled, older than the grace, in no queue and held by no worker: published again,
    once (its time is stamped anew, so the next sweep leaves it alone)."""
    journal.add("t1", "edgematch.ingest", {"event": {"key": "k.bin"}, "lane": "live"}, QUEUE)
    assert _recover(journal) == []  # within the grace period
    _age(redis_client, "t1", 60)
    assert _recover(journal) == [
        ("edgematch.ingest", {"event": {"key": "k.bin"}, "lane": "live"}, "t1")
    ]
    assert _recover(journal) == []
    assert journal.pending() == 1  # still open until the task ends


def test_a_task_waiting_in_its_queue_is_not_lost(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """A backlog older than the grace period is waiting, not lost."""
    for task_id in ("a", "b"):
        journal.add(task_id, "edgematch.ingest", {}, QUEUE)
        _age(redis_client, task_id, 60)
    redis_client.lpush(QUEUE, _message("a"), _message("b"))
    assert _recover(journal) == []


def test_a_task_held_by_a_worker_is_not_lost(journal: Journal, redis_client: redis.Redis) -> None:
    """Taken by a worker (running, or waiting out a retry countdown): in kombu's unacked hash."""
    journal.add("held", "edgematch.quarantine", {}, f"{NS}.quarantine")
    _age(redis_client, "held", 600)
    redis_client.hset(
        f"{NS}:kombu:unacked",
        "delivery-tag-1",
        json.dumps([json.loads(_message("held")), "", f"{NS}.quarantine"]),
    )
    assert _recover(journal) == []
    redis_client.hdel(f"{NS}:kombu:unacked", "delivery-tag-1")
    assert [task_id for _, _, task_id in _recover(journal)] == ["held"]


def test_an_ended_task_leaves_the_journal(journal: Journal, redis_client: redis.Redis) -> None:
    journal.add("t1", "edgematch.ingest", {}, QUEUE)
    _age(redis_client, "t1", 60)
    journal.done("t1")
    assert journal.pending() == 0
    assert _recover(journal) == []


def test_an_ended_task_takes_its_other_keys_with_it(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """The keys named with the end (the task's delivery count) go in the same step."""
    journal.add("t1", "edgematch.ingest", {}, QUEUE)
    redis_client.hset(f"{NS}:deliveries:t1", "0", 1)
    journal.done("t1", also_delete=[f"{NS}:deliveries:t1"])
    assert journal.pending() == 0
    assert redis_client.exists(f"{NS}:deliveries:t1") == 0


def test_a_time_without_its_entry_is_dropped_by_the_sweep(
    journal: Journal, redis_client: redis.Redis
) -> None:
    """A write cut between an entry's time and the entry (no MULTI) leaves a time alone:
    nothing to publish, and the sweep drops it once past the grace."""
    _age(redis_client, "cut", 60)
    assert journal.pending() == 1
    assert _recover(journal) == []
    assert journal.pending() == 0


def test_a_long_queue_is_judged_by_its_order(
    journal: Journal, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue too long to read whole: what is older than its oldest message was taken
    from it; what is newer waits."""
    monkeypatch.setattr(journal_module, "SCAN_LIMIT", 2)
    for n, task_id in enumerate(["lost", "w1", "w2", "w3"]):
        journal.add(task_id, "edgematch.ingest", {}, QUEUE)
        _age(redis_client, task_id, 100 - n)
    # Oldest on the right: w1 is the next to be taken; "lost" was taken and never recorded.
    redis_client.lpush(QUEUE, _message("w1"), _message("w2"), _message("w3"))
    assert [task_id for _, _, task_id in _recover(journal)] == ["lost"]


def test_the_sweep_runs_once_per_period_across_the_pool(redis_client: redis.Redis) -> None:
    one, other = Journal(redis_client, NS, grace_s=0.3), Journal(redis_client, NS, grace_s=0.3)
    assert one.due() is True
    assert other.due() is False
    time.sleep(0.15)
    assert other.due() is True


# --- deliveries of dead workers ----------------------------------------------------------

MakeSettings = Callable[..., Settings]
INDEX = f"{NS}:kombu:unacked_index"
UNACKED = f"{NS}:kombu:unacked"


class Broker:
    """The application's Celery configuration on the private Redis: publish tasks as the
    pipeline does, and take them as a worker's consumer does (kombu records each one in its
    unacked hash and index until it is acknowledged)."""

    def __init__(self, settings: Settings) -> None:
        self.app = Celery(set_as_current=False)
        self.app.conf.update(celery_config(settings))
        self.connection: Connection = self.app.connection_for_read()
        self.taken: list[Message] = []

    def publish(self, task_id: str, name: str = "edgematch.ingest") -> None:
        self.app.send_task(name, kwargs={"lane": "live"}, task_id=task_id)

    def take(self, count: int = 1) -> list[Message]:
        """Take ``count`` messages from the ingest queue without acknowledging them."""
        queue = self.app.amqp.queues[f"{NS}.ingest"]
        got: list[Message] = []
        with Consumer(
            self.connection.default_channel,
            queues=[queue],
            callbacks=[lambda _body, message: got.append(message)],
            accept=["json"],
            prefetch_count=count,
        ):
            deadline = time.monotonic() + 10
            while len(got) < count and time.monotonic() < deadline:
                self.connection.drain_events(timeout=1)
        self.taken += got
        return got

    def close(self) -> None:
        self.connection.release()


@pytest.fixture
def broker(make_settings: MakeSettings, redis_client: redis.Redis) -> Iterator[Broker]:
    made = Broker(make_settings(namespace=NS))
    yield made
    made.close()


def _tag(message: Message) -> str:
    return str(message.delivery_tag)


def _last_refreshed(client: redis.Redis, message: Message, seconds_ago: float) -> None:
    """As if the consumer holding ``message`` last refreshed it ``seconds_ago``."""
    client.zadd(INDEX, {_tag(message): time.time() - seconds_ago})


def _next_in_queue(client: redis.Redis) -> dict[str, Any]:
    raw = client.lindex(QUEUE, -1)  # BRPOP takes from the right
    assert raw is not None
    doc: dict[str, Any] = json.loads(raw)
    return doc


def test_a_dead_workers_delivery_goes_back_to_the_head_of_its_queue(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """A delivery its consumer stopped refreshing STALE_S ago is put back where the next
    worker takes first, marked redelivered, and removed from kombu's keys: handed back
    once, and kombu's own restore later finds nothing to restore."""
    journal = Journal(redis_client, NS)
    for task_id in ("taken", "behind"):
        journal.add(task_id, "edgematch.ingest", {"lane": "live"}, QUEUE)
        broker.publish(task_id)
    (message,) = broker.take()
    assert redis_client.hlen(UNACKED) == 1 and redis_client.llen(QUEUE) == 1

    _last_refreshed(redis_client, message, STALE_S - 2)
    assert journal.hand_back().restored == ()  # not stale yet
    _last_refreshed(redis_client, message, STALE_S + 1)
    handed = journal.hand_back()

    assert handed.restored == ("taken",) and handed.dropped == ()
    assert redis_client.hlen(UNACKED) == 0 and redis_client.zcard(INDEX) == 0
    assert redis_client.llen(QUEUE) == 2
    head = _next_in_queue(redis_client)
    assert head["headers"]["id"] == "taken" and head["headers"]["redelivered"] is True
    assert journal.hand_back().restored == ()
    # kombu's restore of the same delivery (after its visibility timeout) adds nothing.
    channel: Any = broker.connection.default_channel
    channel.qos.restore_by_tag(_tag(message))
    assert redis_client.llen(QUEUE) == 2
    assert [t for _, _, t in _recover(journal)] == []


def test_a_live_workers_deliveries_are_kept_fresh_and_left_alone(
    broker: Broker, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """The consumer's keeper stamps what it holds with the time now, so however long a
    task runs or waits out its countdown, it is never handed back; once acknowledged it is
    no longer refreshed (nor brought back)."""
    journal = Journal(redis_client, NS)
    journal.add("running", "edgematch.ingest", {"lane": "live"}, QUEUE)
    broker.publish("running")
    (message,) = broker.take()
    keeper = DeliveryKeeper(redis_client, NS, max_age_s=3600)
    keeper.hold(message)
    _last_refreshed(redis_client, message, 10 * STALE_S)

    assert keeper.refresh_once() is True
    stamp = redis_client.zscore(INDEX, _tag(message))
    assert stamp is not None and abs(stamp - time.time()) < 2
    assert journal.hand_back() == journal_module.HandBack((), ())
    assert redis_client.hlen(UNACKED) == 1

    message.ack()
    assert keeper.held() == []
    assert keeper.refresh_once() is True
    assert redis_client.zcard(INDEX) == 0 and redis_client.hlen(UNACKED) == 0


def test_a_keeper_lets_go_of_the_deliveries_of_a_lost_connection(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """Once the consumer's broker connection is gone, its deliveries are its no longer:
    they are not refreshed, and go back once stale, whatever kombu managed to restore."""
    broker.publish("cut-off")
    (message,) = broker.take()
    keeper = DeliveryKeeper(redis_client, NS, max_age_s=3600)
    keeper.hold(message)
    assert keeper.held() == [_tag(message)]
    channel: Any = broker.connection.default_channel
    channel.close()
    assert keeper.held() == []


def test_a_keeper_lets_go_of_a_delivery_held_past_the_visibility_timeout(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """A delivery held longer than the visibility timeout is no longer refreshed: a
    consumer that lost track of an acknowledgement does not keep it for ever."""
    broker.publish("forgotten")
    (message,) = broker.take()
    keeper = DeliveryKeeper(redis_client, NS, max_age_s=0.2)
    keeper.hold(message)
    assert keeper.held() == [_tag(message)]
    time.sleep(0.3)
    assert keeper.held() == []


def test_a_dead_workers_delivery_of_an_ended_task_is_dropped(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """The task ended (its journal entry closed) but its worker died before acknowledging
    it: the delivery is removed, not run again."""
    journal = Journal(redis_client, NS)
    journal.add("finished", "edgematch.ingest", {"lane": "live"}, QUEUE)
    broker.publish("finished")
    (message,) = broker.take()
    journal.done("finished")
    _last_refreshed(redis_client, message, STALE_S + 1)

    handed = journal.hand_back()

    assert handed == journal_module.HandBack((), ("finished",))
    assert redis_client.llen(QUEUE) == 0 and redis_client.hlen(UNACKED) == 0


def test_a_dead_workers_pump_goes_back_though_pumps_are_not_journaled(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """A task the journal never records (a pump) has no entry to say it ended: it goes
    back to its queue, as kombu would put it back."""
    journal = Journal(redis_client, NS)
    broker.publish("pump-1", name="edgematch.pump")
    match_queue = broker.app.amqp.queues[f"{NS}.match"]
    got: list[Message] = []
    with Consumer(
        broker.connection.default_channel,
        queues=[match_queue],
        callbacks=[lambda _body, message: got.append(message)],
        accept=["json"],
    ):
        broker.connection.drain_events(timeout=5)
    (message,) = got
    _last_refreshed(redis_client, message, STALE_S + 1)

    assert journal.hand_back().restored == ("pump-1",)
    assert redis_client.llen(f"{NS}.match") == 1


def test_a_delivery_refreshed_after_it_was_read_stale_is_not_handed_back(
    broker: Broker, redis_client: redis.Redis
) -> None:
    """The hand-back checks again, atomically, that the delivery is still stale: a consumer
    that refreshed it in between keeps it."""
    broker.publish("slow")
    (message,) = broker.take()
    _last_refreshed(redis_client, message, STALE_S + 1)
    unacked = Unacked(redis_client, NS)
    cutoff, (stale,) = unacked.stale()
    keeper = DeliveryKeeper(redis_client, NS, max_age_s=3600)
    keeper.hold(message)
    keeper.refresh_once()

    assert unacked.hand_back(stale, cutoff, QUEUE) is False
    assert redis_client.hlen(UNACKED) == 1 and redis_client.llen(QUEUE) == 0
