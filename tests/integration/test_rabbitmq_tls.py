"""amqps:// verifies RabbitMQ's certificate: a private node serving TLS with a certificate
from a private CA (tests/chaos/test_security.py makes it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from devtools.rabbitserver import RabbitServer
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.infra.redisclient import BrokerUnavailable, publishing
from edgematch.names import TASK_INGEST
from tests.chaos.test_security import Certs, certs  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_node(certs: Certs) -> Iterator[RabbitServer]:  # noqa: F811
    server = RabbitServer(vhosts=1, tls=(certs.ca, certs.cert, certs.key)).start()
    yield server
    server.close()


def _publish(url: str) -> None:
    """One task published as every process publishes (publisher confirms), or raise."""
    settings = Settings.from_env(
        {"EDGEMATCH_BROKER_URL": url, "EDGEMATCH_SUBSCRIPTION_KEY": "test-key-0123"}
    )
    app = Celery(set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.broker_connection_max_retries = 1  # fail fast here: the refusal is the point
    with publishing():
        app.send_task(TASK_INGEST, kwargs={"event": {}, "lane": "live"}, retry=False)


def test_amqps_is_verified_against_the_operators_ca(
    tls_node: RabbitServer,
    certs: Certs,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the private CA among the trusted ones the connection is refused (nothing,
    not the password, goes to an unverified server); with it (SSL_CERT_FILE), by IP or by
    the name the certificate carries, it works."""
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(BrokerUnavailable):
        _publish(tls_node.tls_url())
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    _publish(tls_node.tls_url())
    _publish(tls_node.tls_url("localhost"))
    queues = tls_node.queue_counts(tls_node.url)
    assert queues["edgematch.ingest"] == (2, 0)
