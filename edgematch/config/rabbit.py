"""edgematch's queues on RabbitMQ: quorum queues, a delivery limit, a dead-letter queue.

Chosen for the failures the Redis transport needs workarounds for (config/brokerkind.py):

- Every queue is a *quorum* queue: durable, replicated over the cluster's nodes (Raft), and
  the only kind with a delivery limit. A message a consumer holds is requeued the moment
  its connection drops (a SIGKILLed worker), with its delivery counted.
- ``x-delivery-limit``: a message delivered ``EDGEMATCH_MAX_DELIVERIES`` times without an
  acknowledgement (each delivery killed its worker) is dead-lettered, not delivered again.
  RabbitMQ counts returns: the limit is the deliveries allowed *after* the first.
- Dead letters go, ``at-least-once`` (the source queue keeps a message until the
  dead-letter queue has confirmed it; that strategy needs ``x-overflow: reject-publish``),
  to the ``<namespace>.dead`` exchange and its quorum queue, which the beat's sweep drains
  into edgematch's dead letters with reason ``poison`` (recovery/deadqueue.py).
- Tasks are published to the ``<namespace>`` topic exchange, bound to each queue by its
  name: Celery's native delayed delivery (a retry's countdown waits in RabbitMQ, not in a
  worker, which would hold it unacknowledged) forwards only through topic exchanges.
- Publisher confirms: a publish returns once the broker has the message (for a quorum
  queue: once a majority of its replicas wrote it).
- ``amqps://`` verifies the server's certificate and host name against the system's CAs
  (``SSL_CERT_FILE`` names another bundle); py-amqp alone would not check the host name.

Pure: names and arguments only; nothing here connects.
"""

from __future__ import annotations

import math
import ssl
from typing import Any
from urllib.parse import urlsplit

from kombu import Exchange, Queue

from edgematch.names import QUEUE_STEPS, queue_name


def exchange(namespace: str) -> Exchange:
    """The topic exchange every task is published to."""
    return Exchange(namespace, type="topic", durable=True)


def dead_letter_name(namespace: str) -> str:
    """The dead-letter exchange and queue: ``<namespace>.dead``."""
    return f"{namespace}.dead"


def queue_arguments(namespace: str, max_deliveries: int) -> dict[str, Any]:
    """The arguments of every edgematch queue (see the module docstring)."""
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": max(0, max_deliveries - 1),
        "x-dead-letter-exchange": dead_letter_name(namespace),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def task_queues(namespace: str, max_deliveries: int) -> list[Queue]:
    """One quorum queue per step, bound to the namespace's exchange by its own name."""
    ex = exchange(namespace)
    args = queue_arguments(namespace, max_deliveries)
    return [
        Queue(
            queue_name(namespace, step),
            ex,
            routing_key=queue_name(namespace, step),
            queue_arguments=args,
            durable=True,
        )
        for step in QUEUE_STEPS
    ]


def dead_letter_queue(namespace: str) -> Queue:
    """Where the queues dead-letter to: a quorum queue on a fanout exchange."""
    name = dead_letter_name(namespace)
    return Queue(
        name,
        Exchange(name, type="fanout", durable=True),
        routing_key=name,
        queue_arguments={"x-queue-type": "quorum"},
        durable=True,
    )


def countdown(delay_s: float) -> float:
    """A countdown Celery's native delayed delivery can take: whole seconds, at least one.

    It routes a delayed task by ``int(countdown)`` and refuses 0 (``ValueError: countdown
    must be a positive number``) for any countdown between 0 and 1; a shorter wait is
    rounded up to a second. Pure.
    """
    return max(1.0, float(math.ceil(delay_s))) if delay_s > 0 else delay_s


def transport_options() -> dict[str, Any]:
    """kombu's py-amqp transport options."""
    return {"confirm_publish": True}


def broker_ssl(broker_url: str) -> dict[str, Any] | None:
    """py-amqp's TLS options for an ``amqps://`` URL: the certificate and host name verified."""
    parts = urlsplit(broker_url)
    if parts.scheme != "amqps":
        return None
    return {"cert_reqs": ssl.CERT_REQUIRED, "server_hostname": parts.hostname}
