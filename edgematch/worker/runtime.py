"""What one process holds: settings, one Redis pool, one API client, one S3 client.

Built lazily on first use and rebuilt after a fork (Celery's prefork children must not
share their parent's sockets). Tasks reach everything through :func:`runtime`.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import redis
from redis import Redis
from redis.sentinel import Sentinel

from edgematch.config.settings import Settings
from edgematch.worker.api import PhotoDNAClient
from edgematch.worker.buffer import BatchBuffer
from edgematch.worker.deadletters import DeadLetters
from edgematch.worker.errors import ConfigurationError
from edgematch.worker.journal import Journal
from edgematch.worker.results import ResultStore
from edgematch.worker.storage import ObjectStore, make_s3_client


def redis_client(
    url: str, *, sentinel_master: str | None = None, timeout_s: float = 10.0
) -> redis.Redis:
    """A pooled client with timeouts, keepalive and health checks (rediss:// verifies TLS).

    ``sentinel://[:password@]host:port[;sentinel://host:port…][/db]`` follows the master
    named ``sentinel_master`` through failovers, like the broker does.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": min(5.0, timeout_s),
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry_on_timeout": True,
    }
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(url, **options)
    if not sentinel_master:
        raise ConfigurationError(
            "EDGEMATCH_SENTINEL_MASTER is required with a sentinel:// EDGEMATCH_REDIS_URL"
        )
    nodes = [urlsplit(part) for part in url.split(";") if part.strip()]
    db = int((nodes[-1].path or "/0").strip("/") or 0)
    password = next((n.password for n in nodes if n.password), None)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        [(n.hostname or "127.0.0.1", n.port or 26379) for n in nodes],
        sentinel_kwargs={"password": password, "socket_timeout": 5},
        password=password,
        db=db,
        **options,
    )
    master: redis.Redis = sentinel.master_for(sentinel_master)  # type: ignore[no-untyped-call]
    return master


class Runtime:
    """The per-process singletons. Attributes are created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings.redis_url, sentinel_master=self.settings.sentinel_master)

    @cached_property
    def buffer(self) -> BatchBuffer:
        return BatchBuffer(self.redis, self.settings)

    @cached_property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(
            self.redis, self.settings.namespace, max_entries=self.settings.dead_letter_limit
        )

    @cached_property
    def results(self) -> ResultStore:
        return ResultStore(self.redis, self.settings.namespace, ttl_s=self.settings.result_ttl_s)

    @cached_property
    def broker_redis(self) -> Redis:
        """The broker's Redis (queues, kombu's unacked deliveries): ``redis`` unless
        EDGEMATCH_BROKER_URL names another."""
        s = self.settings
        if s.broker_url == s.redis_url:
            return self.redis
        return redis_client(s.broker_url, sentinel_master=s.sentinel_master)

    @cached_property
    def journal(self) -> Journal:
        return Journal(
            self.redis,
            self.settings.namespace,
            grace_s=self.settings.journal_grace_s,
            broker=self.broker_redis,
        )

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(make_s3_client(self.settings))

    @cached_property
    def api(self) -> PhotoDNAClient:
        return PhotoDNAClient.from_settings(self.settings)

    def close(self) -> None:
        if "api" in self.__dict__:
            self.api.close()
        if "broker_redis" in self.__dict__ and self.broker_redis is not self.redis:
            self.broker_redis.close()
        if "redis" in self.__dict__:
            self.redis.close()


_lock = threading.Lock()
_current: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    global _current  # noqa: PLW0603 - one runtime per process, by design
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = Runtime(Settings.from_env())
        return _current


def install(rt: Runtime) -> None:
    """Use ``rt`` as this process's runtime (tests, the demo)."""
    global _current  # noqa: PLW0603
    with _lock:
        _current = rt
