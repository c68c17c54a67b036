"""What one process holds: settings, one Redis pool, one API client, one S3 client.

Built lazily on first use and rebuilt after a fork (Celery's prefork children must not
share their parent's sockets). Tasks reach everything through :func:`runtime`.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property

from edgematch.config.settings import Settings
from edgematch.infra.logstore import LogObjects
from edgematch.infra.redisclient import Redis, redis_client
from edgematch.infra.storage import ObjectStore, make_s3_client
from edgematch.photodna.client import PhotoDNAClient
from edgematch.pipeline.buffer import BatchBuffer
from edgematch.pipeline.logpaths import PREFIX as VERDICT_LOG_PREFIX
from edgematch.pipeline.results import ResultStore
from edgematch.pipeline.verdictlog import VerdictLog
from edgematch.recovery.deadletters import DeadLetters
from edgematch.recovery.journal import Journal


class Runtime:
    """The per-process singletons. Attributes are created on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()

    @cached_property
    def redis(self) -> Redis:
        # Every Redis error of every module is translated by this client (redisclient.py).
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
        s = self.settings
        return ResultStore(
            self.redis, s.namespace, ttl_s=s.result_ttl_s, max_staged=s.verdict_log_max_staged
        )

    @cached_property
    def verdict_log(self) -> VerdictLog:
        """The verdict log's staging area and flush; it writes nothing without a bucket
        (EDGEMATCH_VERDICT_LOG_BUCKET, or EDGEMATCH_REPORTS_BUCKET). Its S3 client is made
        when it first writes or reads the log, not to read what waits in Redis."""
        s = self.settings
        bucket = s.effective_verdict_log_bucket

        def objects() -> LogObjects:
            assert bucket is not None
            return LogObjects(
                make_s3_client(s), bucket, VERDICT_LOG_PREFIX, kms_key_id=s.reports_kms_key_id
            )

        return VerdictLog(
            self.redis, s.namespace, objects if bucket else None, flush_s=s.verdict_log_flush_s
        )

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
