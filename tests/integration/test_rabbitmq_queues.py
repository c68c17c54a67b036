"""Queue depths from RabbitMQ's own counts, on the session's private RabbitMQ node: what
backpressure, ``edgematch status`` and the metrics read when the broker is RabbitMQ."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery

from devtools.rabbitserver import RabbitServer
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.errors import TransientError
from edgematch.infra import scrape
from edgematch.names import QUEUE_STEPS, TASK_INGEST
from edgematch.ops import status
from edgematch.pipeline import backpressure
from edgematch.runtime import Runtime

pytestmark = pytest.mark.integration

MakeSettings = Callable[..., Settings]


@pytest.fixture
def runtime(
    redis_client: redis.Redis, make_settings: MakeSettings, rabbit_server: RabbitServer
) -> Iterator[Runtime]:
    rt = Runtime(make_settings(broker_url=rabbit_server.vhost_url()))
    yield rt
    rt.close()


def _publish(rt: Runtime, count: int) -> None:
    """``count`` live ingest tasks, published as intake publishes them (confirmed)."""
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(rt.settings))
    with app.producer_or_acquire() as producer:
        for n in range(count):
            app.send_task(
                TASK_INGEST,
                kwargs={"event": {"bucket": "b", "key": f"k{n}.bin"}, "lane": "live"},
                producer=producer,
            )


def test_a_queue_not_declared_yet_waits_with_nothing(runtime: Runtime) -> None:
    keys = runtime.buffer.keys
    assert runtime.queues.waiting([keys.queue(step) for step in QUEUE_STEPS]) == [0] * 6


def test_depths_are_rabbitmqs_counts_for_backpressure_status_and_metrics(
    runtime: Runtime,
) -> None:
    _publish(runtime, 3)
    keys = runtime.buffer.keys
    assert runtime.queues.waiting([keys.queue("ingest"), keys.queue("results")]) == [3, 0]
    assert runtime.queues.consumers([keys.queue("ingest")]) == [0]
    assert backpressure.backlog(runtime).ingest == 3
    snapshot = status.collect(runtime)
    assert snapshot.queues["ingest"] == 3 and snapshot.running == -1
    (family,) = scrape._queue_depth(runtime)
    depths = {s.labels["queue"]: s.value for s in family.samples}
    assert depths["ingest"] == 3 and depths["match"] == 0


def test_an_unreachable_broker_is_a_transient_error(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    rt = Runtime(make_settings(broker_url="amqp://edgematch:x@127.0.0.1:9/v0"))
    try:
        with pytest.raises(TransientError):
            rt.queues.waiting(["edgematch.ingest"])
        assert not backpressure.others_waiting(rt, ["edgematch.ingest"])
    finally:
        rt.close()
