"""Shared fixtures: real parts on 127.0.0.1, never the machine's shared services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import structlog

from devtools.devstack import RedisServer
from edgematch.config.settings import Secret, Settings
from edgematch.infra.redisclient import redis_client as build_redis_client


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port for the whole session."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The client every process builds (redisclient.py), of the private server, emptied
    after each test (it is ours alone)."""
    client = build_redis_client(redis_server.url)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_settings(redis_server: RedisServer) -> Iterator[object]:
    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "redis_url": redis_server.url,
            "broker_url": redis_server.url,
            "subscription_key": Secret("test-key-0123456789"),
            "api_url": "http://127.0.0.1:9/photodna/v1.0",
        }
        base.update(overrides)
        return Settings(**base).validated()  # type: ignore[arg-type]

    yield make


@pytest.fixture(autouse=True)
def _clear_log_context() -> Iterator[None]:
    """No log context leaks from one test into the next."""
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region for in-process moto; no endpoint override leaks in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
