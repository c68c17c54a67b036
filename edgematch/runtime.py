"""The composition root: every client and part of one process, built once and passed in.

One Redis pool (and the broker's, when it is another Redis), one S3 client, one API
client, and the parts made of them — the batch buffer, result store, verdict log, dead
letters, journal, failure policy, publisher, match cache and the downstream parts
(quarantine, reports, reporter). Nothing else in the application builds a client: a part
is given the clients it uses.

Built lazily on first use and rebuilt after a fork (Celery's prefork children must not
share their parent's sockets). Tasks reach everything through :func:`runtime`; tests
build a :class:`Runtime` with their own clients (``Runtime(settings, api=...)``).
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

from edgematch.config.celery import broker_ssl
from edgematch.config.settings import Settings
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.filing import Downstream
from edgematch.infra.brokerqueues import QueueDepths
from edgematch.infra.logs import register_secret
from edgematch.infra.logstore import LogObjects
from edgematch.infra.redisclient import Redis, redis_client
from edgematch.infra.storage import ObjectStore, make_s3_client
from edgematch.photodna.client import PhotoDNAClient
from edgematch.photodna.matchcache import MatchCache
from edgematch.pipeline.allowlist import Allowlist
from edgematch.pipeline.buffer import BatchBuffer
from edgematch.pipeline.departure import Departures
from edgematch.pipeline.logpaths import PREFIX as VERDICT_LOG_PREFIX
from edgematch.pipeline.resultstore import ResultStore
from edgematch.pipeline.verdictlog import VerdictLog
from edgematch.recovery.deadletters import DeadLetters
from edgematch.recovery.guard import Guard
from edgematch.recovery.journal import Journal
from edgematch.recovery.poison import Deliveries, counter_ttl_s
from edgematch.recovery.policy import Policy
from edgematch.recovery.publishing import Publisher

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Runtime:
    """The per-process parts. Attributes are created on first use.

    ``redis``, ``s3`` and ``api``, when given, are used in place of the clients the
    settings describe (tests, the demo); the runtime closes them with its own.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        redis: Redis | None = None,
        s3: S3Client | None = None,
        api: PhotoDNAClient | None = None,
    ) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._redis, self._s3, self._api = redis, s3, api

    # -- clients ----------------------------------------------------------------------------
    @cached_property
    def redis(self) -> Redis:
        # Every Redis error of every module is translated by this client (redisclient.py).
        if self._redis is not None:
            return self._redis
        return redis_client(self.settings.redis_url, sentinel_master=self.settings.sentinel_master)

    @cached_property
    def broker_redis(self) -> Redis:
        """The broker's Redis (queues, kombu's unacked deliveries): ``redis`` unless
        EDGEMATCH_BROKER_URL names another Redis (on RabbitMQ: ``redis``, never read as
        the broker's)."""
        s = self.settings
        if s.broker_url == s.redis_url or not s.broker.redis:
            return self.redis
        return redis_client(s.broker_url, sentinel_master=s.sentinel_master)

    @cached_property
    def queues(self) -> QueueDepths:
        """The broker's queue lengths (infra/brokerqueues.py)."""
        s = self.settings
        return QueueDepths(
            s.broker, redis=self.broker_redis, broker_url=s.broker_url, ssl=broker_ssl(s.broker_url)
        )

    @cached_property
    def s3(self) -> S3Client:
        """The one S3 client of the process: hash files, tags, quarantine and reports."""
        return self._s3 if self._s3 is not None else make_s3_client(self.settings)

    @cached_property
    def api(self) -> PhotoDNAClient:
        return self._api if self._api is not None else PhotoDNAClient.from_settings(self.settings)

    # -- parts ------------------------------------------------------------------------------
    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.s3)

    @cached_property
    def buffer(self) -> BatchBuffer:
        return BatchBuffer(self.redis, self.settings)

    @cached_property
    def departures(self) -> Departures:
        return Departures(self.redis, self.settings)

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
            return LogObjects(self.s3, bucket, VERDICT_LOG_PREFIX, kms_key_id=s.reports_kms_key_id)

        return VerdictLog(
            self.redis, s.namespace, objects if bucket else None, flush_s=s.verdict_log_flush_s
        )

    @cached_property
    def journal(self) -> Journal:
        return Journal(
            self.redis,
            self.settings.namespace,
            grace_s=self.settings.journal_grace_s,
            broker=self.broker_redis,
            capabilities=self.settings.broker,
        )

    @cached_property
    def guard(self) -> Guard:
        """The failure policy's numbers and effects (recovery/policy.py, guard.py)."""
        s = self.settings
        deliveries = Deliveries(
            self.redis,
            s.namespace,
            ttl_s=counter_ttl_s(s.visibility_timeout_s, s.max_deliveries),
        )
        return Guard(
            deliveries=deliveries,
            dead_letters=self.dead_letters,
            journal=self.journal,
            namespace=s.namespace,
            policy=Policy(
                max_attempts=s.max_attempts, base_s=s.backoff_base_s, cap_s=s.backoff_cap_s
            ),
            max_deliveries=s.max_deliveries,
            broker=s.broker,
        )

    @cached_property
    def publisher(self) -> Publisher:
        return Publisher(self.journal, self.settings.namespace, amqp=self.settings.broker.amqp)

    @cached_property
    def match_cache(self) -> MatchCache:
        s = self.settings
        return MatchCache(
            self.redis, s.namespace, ttl_s=s.match_cache_ttl_s, clean_ttl_s=s.clean_cache_ttl_s
        )

    @cached_property
    def allowlist(self) -> Allowlist:
        """Match ids and hashes on-call cleared (pipeline/allowlist.py)."""
        return Allowlist(self.redis, self.settings.namespace)

    @cached_property
    def downstream(self) -> Downstream:
        """Quarantine, reports and the reporter (downstream/filing.py)."""
        for secret in self.settings.secrets():
            register_secret(secret.reveal())
        return Downstream(
            self.settings,
            redis=self.redis,
            evidence=EvidenceStore(self.s3),
            objects=self.store,
            match_cache=self.match_cache,
        )

    def close(self) -> None:
        if "downstream" in self.__dict__:
            self.downstream.close()
        if "api" in self.__dict__:
            self.api.close()
        if "queues" in self.__dict__:
            self.queues.close()
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
