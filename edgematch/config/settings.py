"""Settings: read once from the environment into one typed, validated object.

Each field is declared once, with its variable, default, parser, unit and help
(:func:`~edgematch.config.declare.setting`), here or, for quarantine, reports and review,
in :mod:`edgematch.config.downstream`; reading (:meth:`Settings.from_env`) and the
reference in ``docs/configuration.md`` (``python -m edgematch.config.docs``) are generated
from the declarations. A field's variable is ``EDGEMATCH_`` + its name upper-cased; the one
exception is ``rate_limit_per_s``, read from ``EDGEMATCH_RATE_LIMIT`` (the name deployments
already set).

Endpoints of S3-compatible stores and SQS come from boto3's own variables
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_SQS``,
``AWS_DEFAULT_REGION`` and the credentials chain) and are not repeated here.

A missing or malformed value raises :class:`~edgematch.errors.ConfigurationError`
whose message names the variable; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final

from edgematch.config import parsers as p
from edgematch.config.checks import CHECKS
from edgematch.config.declare import (
    DAY_S,
    HOUR_S,
    Concern,
    Variable,
    declared,
    secret_setting,
    setting,
)
from edgematch.config.derived import Derived
from edgematch.config.downstream import DownstreamSettings
from edgematch.config.elsewhere import READ_ELSEWHERE
from edgematch.config.environ import read, warn_unknown
from edgematch.config.parsers import OPERATIONS
from edgematch.config.secret import Secret

__all__ = [
    "DAY_S",
    "DEFAULT_API_URL",
    "HOUR_S",
    "OPERATIONS",
    "READ_ELSEWHERE",
    "Secret",
    "Settings",
    "known_names",
    "variables",
]

DEFAULT_API_URL: Final = "https://api.microsoftmoderator.com/photodna/v1.0"

API, RATE, REDIS, INTAKE = Concern.API, Concern.RATE, Concern.REDIS, Concern.INTAKE
WEBHOOK = Concern.WEBHOOK
RESULTS, RECOVERY = Concern.RESULTS, Concern.RECOVERY
PROCESSES = Concern.PROCESSES


@dataclass(frozen=True)
class Settings(Derived, DownstreamSettings):
    """Everything an edgematch process is configured with. Units are in the names.

    Every field is declared here, but for those of quarantine, reports and review
    (:class:`~edgematch.config.downstream.DownstreamSettings`, whose fields come first); the
    methods worked out from them are in :class:`~edgematch.config.derived.Derived`.
    """

    # fmt: off
    # One declaration a setting, laid out by hand: default, concern and parser first, then
    # the docs. Read top to bottom (after downstream.py's) as the order `edgematch config`
    # prints.
    redis_url: str = setting(
        "redis://127.0.0.1:6379/0", REDIS, p.redis_url,
        help="Redis for the rate limiter, batch buffer, idempotency keys, results and dead "
        "letters (`redis://`, `rediss://`, password, db)")
    broker_url: str = setting(
        "redis://127.0.0.1:6379/0", REDIS, p.broker_url, same_as="redis_url",
        default_doc="same as `EDGEMATCH_REDIS_URL`",
        help="Celery broker: Redis (`redis://`, `rediss://`, `sentinel://`) or RabbitMQ "
        "(`amqp://user:password@host:5672/vhost`, `amqps://` verified against the system's "
        "CAs); on RabbitMQ every queue is a quorum queue (deploy/README.md)")
    api_url: str = setting(DEFAULT_API_URL, API, p.base_url, help="PhotoDNA base URL")
    subscription_key: Secret | None = secret_setting(  # noqa: RUF009 (a field)
        API, help="the `Ocp-Apim-Subscription-Key` (a file is read once at start)",
        default_doc="required by a worker that consumes `match`, or `reports` with "
        "`EDGEMATCH_REPORTER=photodna` (the only processes that call the API); intake, beat "
        "and the other workers start without it")
    api_operation: str = setting(
        "MatchEdgeHash", API, p.operation,
        help="`MatchEdgeHash` (multipart `.bin` files) or `MatchHash` (JSON, base64)")
    rate_limit_per_s: float = setting(
        5.0, RATE, p.rate, unit="requests/s", env="EDGEMATCH_RATE_LIMIT",
        help="requests per second the subscription allows (set it to your subscription's "
        "quota), shared by every process on every host; a fractional rate above 1 runs at its "
        "whole part (no second may see more), below 1 at one request per 1/rate seconds")
    batch_linger_ms: int = setting(
        250, RATE, p.non_negative_int, unit="ms",
        help="how long a lone item may wait for company before it goes in a partial batch")
    sqs_queue_url: str | None = setting(
        None, INTAKE, p.http_url, default_doc="required for `intake`",
        help="the queue that receives the bucket's event notifications")
    hash_suffix: str = setting(".bin", INTAKE, p.non_empty, help="object keys that are hash files")
    max_hash_bytes: int = setting(
        4096, INTAKE, p.positive_int, unit="bytes",
        help="larger objects are refused before download")
    result_tag: str = setting(
        "edgematch-status", RESULTS, p.tag_key,
        help="tag key written on each scanned content object")
    namespace: str = setting(
        "edgematch", REDIS, p.namespace, help="prefix of every Redis key and queue name")
    api_timeout_s: float = setting(10.0, API, p.positive_float, unit="s", help="API read timeout")
    api_connect_timeout_s: float = setting(
        3.0, API, p.positive_float, unit="s", help="API connect timeout")
    tls_verify: bool = setting(
        True, API, p.boolean, help="TLS certificate verification for the API")
    batch_size: int = setting(
        5, RATE, p.batch_size, unit="hashes",
        help="hashes sent in one API request, 1 to 5 (the API's limit); a request counts once "
        "against the quota however many it carries, so a smaller batch scans fewer a second")
    lease_s: float = setting(
        15.0, RECOVERY, p.positive_float, unit="s",
        help="lease of a batch sent to the API, renewed every third of it while its worker "
        "lives: how long a killed worker's batch stays out")
    max_attempts: int = setting(
        8, RECOVERY, p.positive_int, unit="requests",
        help="requests an item may ride before it is `unscannable`")
    max_deliveries: int = setting(
        3, RECOVERY, p.positive_int, unit="deliveries",
        help="times workers may begin the same task (and die with it) before it is "
        "dead-lettered as `poison`")
    backoff_base_s: float = setting(
        1.0, RECOVERY, p.positive_float, unit="s",
        help="retry backoff: the first retry waits up to this, each later one up to twice as "
        "long as the one before (half of each wait is random)")
    backoff_cap_s: float = setting(
        300.0, RECOVERY, p.positive_float, unit="s", help="retry backoff: the longest wait")
    breaker_probe_s: float = setting(
        30.0, API, p.positive_float, unit="s",
        help="pause after the key is refused (401/403), between probes")
    max_cooldown_s: float = setting(
        60.0, RATE, p.positive_float, unit="s",
        help="the longest the pool honours a 429's `Retry-After`; a longer one is capped, and "
        "then one probe request goes before the pool resumes "
        "([why a minute](#why-the-cooldown-is-capped-at-a-minute))")
    lock_ttl_s: float = setting(
        30.0, RECOVERY, p.positive_float, unit="s",
        help="TTL of a quarantine, report or tag lock, renewed while its worker lives: how "
        "long a killed worker holds the step up")
    rate_limit_margin: float = setting(
        0.02, RATE, p.fraction, unit="fraction",
        help="extra spacing between the pool's requests beyond 1/rate, as a fraction of the "
        "interval, for the jitter between a request leaving and the API counting it")
    match_pumps: int = setting(
        4, RATE, p.positive_int, unit="tasks",
        help="match tasks draining the buffer at once, and requests each keeps in flight "
        "(≈ rate × API latency is enough)")
    pump_max_s: float = setting(
        2.0, RATE, p.positive_float, unit="s",
        help="how long one match task drains the buffer (and holds a worker process) before "
        "a new one takes over")
    idempotency_ttl_s: int = setting(
        6 * HOUR_S, INTAKE, p.positive_int, unit="s",
        help="how long an accepted object version is remembered, so that a duplicate event "
        "costs no second scan; no key kept per scanned hash outlives it "
        "([why six hours](#the-idempotency-window))")
    dead_letter_limit: int = setting(
        100_000, RECOVERY, p.positive_int, unit="entries",
        help="entries the dead-letter store holds; past it, failures are kept in their queue "
        "and `status` says so")
    intake_high_water: int = setting(
        10_000, INTAKE, p.positive_int, unit="hash files",
        help="backlog, in hash files queued or buffered, at which intake stops receiving (a "
        "queued live ingest task counts as the 10 it may carry)")
    intake_batch: int = setting(
        10, INTAKE, p.sqs_batch, unit="messages",
        help="SQS messages one receive asks for (1 to 10); their hash files go to one "
        "`ingest_many` task")
    intake_wait_s: int = setting(
        20, INTAKE, p.sqs_wait, unit="s",
        help="how long one SQS receive waits for messages (long polling, 0 to 20)")
    visibility_timeout_s: int = setting(
        3600, REDIS, p.positive_int, unit="s",
        help="the broker's own redelivery of unacknowledged tasks, the outer bound (must exceed "
        "`EDGEMATCH_LEASE_S` + `EDGEMATCH_API_TIMEOUT_S` + `EDGEMATCH_BACKOFF_CAP_S`, the "
        "longest task and retry countdown); a dead worker's tasks come back within about 15 s "
        "without it ([Reliability](reliability.md))")
    webhook_token: Secret | None = secret_setting(  # noqa: RUF009 (a field)
        WEBHOOK, default_doc="required for `webhook`",
        help="the token senders present, as `Authorization: Bearer TOKEN` (MinIO's "
        "`auth_token`) or as the password of HTTP Basic (a Ceph topic's endpoint URL); at least "
        "16 characters, compared in constant time")
    webhook_host: str = setting(
        "0.0.0.0", WEBHOOK, p.non_empty,  # noqa: S104 - a server for other hosts' notifications
        help="the address `edgematch webhook` listens on")
    webhook_port: int = setting(8080, WEBHOOK, p.port, help="the port it listens on")
    webhook_max_body_bytes: int = setting(
        262_144, WEBHOOK, p.positive_int, unit="bytes",
        help="a larger request is answered 413 from its `Content-Length`, or as soon as that much "
        "of it has arrived: never read whole")
    webhook_retry_after_s: int = setting(
        5, WEBHOOK, p.positive_int, unit="s",
        help="the `Retry-After` of a 503 (backlog at `EDGEMATCH_INTAKE_HIGH_WATER`, Redis or the "
        "broker unreachable); MinIO retries every 3 s whatever it says")
    webhook_enqueue_timeout_s: float = setting(
        10.0, WEBHOOK, p.positive_float, unit="s",
        help="how long a request waits for its ingest task to be enqueued before it is answered "
        "503 (the sender sends it again; ingest ignores the repeat if the task got in after all)")
    webhook_max_connections: int = setting(
        1000, WEBHOOK, p.positive_int, unit="connections",
        help="connections served at once by one process; past it new ones are answered 503")
    webhook_tls_certfile: str | None = setting(
        None, WEBHOOK, p.non_empty,
        help="serve HTTPS with this PEM certificate chain (and its key, or "
        "`EDGEMATCH_WEBHOOK_TLS_KEYFILE`); "
        "without it, terminate TLS in front ([the webhook](operations.md#the-webhook-intake))")
    webhook_tls_keyfile: str | None = setting(
        None, WEBHOOK, p.non_empty,
        help="the PEM private key of that certificate, when it is not in the same file")
    log_format: str = setting(
        "json", PROCESSES, p.log_format,
        help="`json` (one object a line) or `console` (for people)")
    log_level: str = setting(
        "INFO", PROCESSES, p.log_level, help="`DEBUG`, `INFO`, `WARNING` or `ERROR`")
    allowed_buckets: tuple[str, ...] = setting(
        (), INTAKE, p.csv, default_doc="empty",
        help="comma-separated buckets whose events are accepted (empty: all)")
    worker_concurrency: int | None = setting(
        None, PROCESSES, p.positive_int, unit="processes", default_doc="CPU count",
        help="processes of `edgematch worker` (or pass `--concurrency`)")
    background_min_share: float = setting(
        0.1, RATE, p.fraction, unit="fraction",
        help="share of requests, and of a worker's task fetches, replays and backfills keep "
        "while live uploads saturate the quota "
        "([live uploads first](operations.md#live-uploads-first-and-the-publication-gate))")
    shutdown_grace_s: float = setting(
        30.0, PROCESSES, p.positive_float, unit="s",
        help="on SIGTERM, how long running tasks may finish before the rest is handed back")
    tag_clean: bool = setting(
        True, RESULTS, p.boolean, default_doc="`on`",
        help="`off`: a `clean` verdict leaves the content's tags alone — two S3 requests "
        "fewer a clean hash (the tags' GET and PUT, the PUT billed like an upload) and no "
        "tag stored on clean content; the verdict log is the record. The publication gate "
        "tags clean content whatever this says "
        "([tagging clean content](operations.md#tagging-clean-content))")
    gate: bool = setting(
        False, RESULTS, p.boolean, default_doc="`off`",
        help="`on`: tag content `pending` until its verdict "
        "([the publication gate](operations.md#live-uploads-first-and-the-publication-gate))")
    result_ttl_s: int = setting(
        2 * HOUR_S, RESULTS, p.positive_int, unit="s",
        help="how long a recorded result stays in Redis, the hot window `edgematch result` "
        "reads first (older ones are read from the verdict log); at most "
        "`EDGEMATCH_IDEMPOTENCY_TTL_S` ([Redis sizing](#the-idempotency-window))")
    sentinel_master: str | None = setting(
        None, REDIS, p.non_empty,
        help="the monitored master's name, required when a Redis or broker URL is "
        "`sentinel://host:26379[;sentinel://…]`")
    metrics_port: int | None = setting(
        None, PROCESSES, p.port,
        help="serve Prometheus metrics on this port (or `--metrics-port` per process)")
    verdict_log_bucket: str | None = setting(
        None, RESULTS, p.bucket_name, same_as="reports_bucket",
        default_doc="same as `EDGEMATCH_REPORTS_BUCKET`; required by a worker that consumes "
        "`results`",
        help="where the verdict log is written, under `verdicts/`: every recorded result, "
        "JSON Lines by date and hour ([the verdict log](operations.md#the-verdict-log))")
    verdict_log_flush_s: float = setting(
        10.0, RESULTS, p.positive_float, unit="s",
        help="how often the results recorded meanwhile are written to the verdict log, "
        "together, as one object (per hour they were scanned in) for the whole pool")
    verdict_log_max_staged: int = setting(
        100_000, RESULTS, p.positive_int, unit="results",
        help="results recorded but not yet in the verdict log (the object store cannot be "
        "written) past which no result is recorded: they are retried instead")
    match_cache_ttl_s: int = setting(
        90 * DAY_S, RESULTS, p.positive_int, unit="s",
        help="how long a matched hash is remembered, to match its re-uploads without an API "
        "call")
    clean_cache_ttl_s: int = setting(
        0, RESULTS, p.non_negative_int, unit="s",
        help="how long a clean verdict is remembered, to answer byte-identical re-uploads "
        "without an API call (`0`: off; a list update is not seen for those hashes meanwhile)")
    journal_grace_s: float = setting(
        20.0, RECOVERY, p.positive_float, unit="s",
        help="how long a task may be missing from its queue and from every worker before the "
        "beat's sweep publishes it again (a task lost with a killed worker; "
        "[Reliability](reliability.md))")
    # fmt: on

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment. Raises ConfigurationError naming the variable.

        An ``EDGEMATCH_*`` variable edgematch does not read is logged as a warning, not refused.
        """
        env = os.environ if environ is None else environ
        warn_unknown(env, (*variables(), *READ_ELSEWHERE))
        # read() returns each field's value by name, typed by its parser: object to mypy.
        return cls(**read(variables(), env)).validated()  # type: ignore[arg-type]

    def validated(self) -> Settings:
        """Cross-field checks that no single variable can make (:mod:`edgematch.config.checks`)."""
        for check in CHECKS:
            check(self)
        return self


@cache
def variables() -> tuple[Variable, ...]:
    """Every variable Settings reads, in declaration order."""
    return declared(Settings)


def known_names() -> frozenset[str]:
    """Every ``EDGEMATCH_*`` name edgematch reads (``_FILE`` variants too), here or elsewhere."""
    return frozenset(name for v in (*variables(), *READ_ELSEWHERE) for name in v.names)
