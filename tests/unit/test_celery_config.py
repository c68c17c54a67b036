"""The Celery configuration's TLS choice for the broker, as kombu reads it (no connection made)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from celery import Celery
from kombu.utils.scheduling import cycle_by_name

from edgematch.config.celery import broker_ssl, celery_config
from edgematch.config.queue_order import LiveFirst
from edgematch.config.settings import Settings
from edgematch.names import QUEUE_STEPS


def _connection_ssl(broker_url: str) -> Any:
    """What kombu would connect with, for a worker configured with ``broker_url``."""
    settings = Settings.from_env(
        {"EDGEMATCH_BROKER_URL": broker_url, "EDGEMATCH_SUBSCRIPTION_KEY": "test-key-0123"}
    )
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(settings))
    with app.connection_for_write() as conn:
        return conn.ssl


def test_rediss_broker_verifies_the_server_by_default() -> None:
    """A rediss:// URL with no ssl_* parameters gets CERT_REQUIRED, not kombu's CERT_NONE."""
    assert _connection_ssl("rediss://:pw@redis.internal:6380/0") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # A CA bundle alone: redis-py's own default (required) then verifies against it.
        ("?ssl_ca_certs=/etc/ca.pem", {"ssl_ca_certs": "/etc/ca.pem"}),
        (
            "?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required",
            {"ssl_ca_certs": "/etc/ca.pem", "ssl_cert_reqs": ssl.CERT_REQUIRED},
        ),
        # Turned off explicitly, for this endpoint only.
        ("?ssl_cert_reqs=none", {"ssl_cert_reqs": ssl.CERT_NONE}),
    ],
)
def test_ssl_parameters_in_the_url_win(query: str, expected: dict[str, Any]) -> None:
    """The URL's own ssl_* parameters replace the default as a whole."""
    assert _connection_ssl(f"rediss://:pw@redis.internal:6380/0{query}") == expected


def test_plain_redis_broker_has_no_tls() -> None:
    """redis:// and sentinel:// get no TLS options from us."""
    assert broker_ssl("redis://127.0.0.1:6379/0") is None
    assert broker_ssl("sentinel://10.0.0.1:26379") is None
    assert not _connection_ssl("redis://127.0.0.1:6379/0")


#: The order of every fetch but the background's own.
LIVE_FIRST = ["ns.match", "ns.quarantine", "ns.reports", "ns.results", "ns.ingest", "ns.background"]


def test_queues_are_served_live_first_whatever_order_kombu_has_them_in() -> None:
    """Pumps, then the downstream of matches, live results, live ingest; backfills last."""
    names = [f"ns.{step}" for step in QUEUE_STEPS]
    for order in (names, list(reversed(names))):
        cycle = LiveFirst()
        cycle.update(order)
        assert list(cycle.consume(len(order))) == LIVE_FIRST
    options = celery_config(Settings())["broker_transport_options"]
    made = cycle_by_name(options["queue_order_strategy"])()
    assert isinstance(made, LiveFirst) and made.every == 10


def test_one_fetch_in_one_over_the_min_share_names_background_first() -> None:
    """With a share of 0.25, every fourth fetch tries background first, the rest live first."""
    names = [f"ns.{step}" for step in QUEUE_STEPS]
    options = celery_config(Settings(background_min_share=0.25))["broker_transport_options"]
    cycle = cycle_by_name(options["queue_order_strategy"])()
    assert isinstance(cycle, LiveFirst)
    cycle.update(names)
    fetches = [cycle.consume(len(names)) for _ in range(12)]
    background_first = ["ns.background", *LIVE_FIRST[:-1]]  # the others keep their order
    assert fetches == ([LIVE_FIRST] * 3 + [background_first]) * 3


def test_a_min_share_of_zero_never_puts_background_first() -> None:
    """EDGEMATCH_BACKGROUND_MIN_SHARE=0: background only when every other queue is empty."""
    cycle = LiveFirst(["ns.background", "ns.ingest"], min_share=0.0)
    assert {cycle.consume(2)[0] for _ in range(50)} == {"ns.ingest"}
