"""Which broker a URL names, and which of edgematch's broker workarounds it needs: decided here.

edgematch runs Celery on Redis (``redis://``, ``rediss://``, ``sentinel://``) or on RabbitMQ
(``amqp://``, ``amqps://``). Redis's transport lacks guarantees edgematch needs, and
edgematch builds them itself:

- the task journal (recovery/journal.py): a message popped (``BRPOP``) before kombu records
  it as unacknowledged is lost with a killed worker, so every task is journaled before it
  is published and republished by the sweep when it is alive nowhere;
- the hand-back of a dead worker's deliveries (recovery/unacked.py): kombu's unacked hash
  gives a dead consumer's messages back only after the visibility timeout, so a worker
  keeps its deliveries fresh and the sweep hands back stale ones;
- delivery counting (recovery/poison.py): nothing in Redis counts how often a message was
  delivered, so a task's starts are counted in Redis and one started too often is a
  ``poison`` dead letter;
- the visibility timeout's checks (config/checks.py): Redis redelivers a task left
  unacknowledged that long, even one still running.

RabbitMQ gives each of these itself, on quorum queues: a message is unacknowledged from the
moment it is sent to a consumer, and requeued the moment that consumer's connection drops;
publisher confirms say when the broker has a message; a queue counts every message's
deliveries (``x-delivery-count``) and dead-letters it past ``x-delivery-limit``; nothing
is redelivered while its consumer lives. :func:`capabilities` is the one place that tells
the journal, the sweep, the delivery counter, the checks and the queue readers which
workarounds apply. Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit


class BrokerKind(enum.Enum):
    REDIS = "redis"
    AMQP = "amqp"


#: URL schemes of each kind.
REDIS_SCHEMES = frozenset({"redis", "rediss", "sentinel", "unix"})
AMQP_SCHEMES = frozenset({"amqp", "amqps"})


@dataclass(frozen=True)
class Capabilities:
    """What edgematch must do itself on this broker (True: the workaround applies)."""

    kind: BrokerKind
    #: Journal tasks before publishing, republish the ones alive nowhere.
    journal: bool
    #: Keep a worker's deliveries fresh; hand back a dead worker's (kombu's unacked hash).
    hand_back: bool
    #: Count deliveries in Redis; otherwise the broker counts them (``x-delivery-count``)
    #: and dead-letters a message past its delivery limit.
    count_deliveries: bool
    #: The broker redelivers a task unacknowledged for EDGEMATCH_VISIBILITY_TIMEOUT_S.
    visibility_timeout: bool

    @property
    def redis(self) -> bool:
        return self.kind is BrokerKind.REDIS

    @property
    def amqp(self) -> bool:
        return self.kind is BrokerKind.AMQP


REDIS = Capabilities(
    BrokerKind.REDIS, journal=True, hand_back=True, count_deliveries=True, visibility_timeout=True
)
AMQP = Capabilities(
    BrokerKind.AMQP,
    journal=False,
    hand_back=False,
    count_deliveries=False,
    visibility_timeout=False,
)


def kind_of(broker_url: str) -> BrokerKind:
    """The kind of broker ``broker_url`` names; ValueError for any other scheme."""
    scheme = urlsplit(broker_url).scheme
    if scheme in REDIS_SCHEMES:
        return BrokerKind.REDIS
    if scheme in AMQP_SCHEMES:
        return BrokerKind.AMQP
    raise ValueError(
        "expected a redis://, rediss://, sentinel://, unix://, amqp:// or amqps:// URL, "
        f"got scheme {scheme!r}"
    )


def capabilities(broker_url: str) -> Capabilities:
    """Which workarounds the broker at ``broker_url`` needs."""
    return REDIS if kind_of(broker_url) is BrokerKind.REDIS else AMQP
