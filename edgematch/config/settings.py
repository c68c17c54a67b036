"""Settings: read once from the environment into one typed, validated object.

Every variable is named ``EDGEMATCH_*``; endpoints of S3-compatible stores and SQS come
from boto3's own variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_DEFAULT_REGION`` and the credentials chain) and are not
repeated here.

A missing or malformed value raises :class:`~edgematch.worker.errors.ConfigurationError`
whose message names the variable; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from edgematch.worker.errors import ConfigurationError

T = TypeVar("T")

DEFAULT_API_URL = "https://api.microsoftmoderator.com/photodna/v1.0"
OPERATIONS = ("MatchEdgeHash", "MatchHash")


class Secret:
    """A string that never shows itself in a repr, a str(), a log line or a traceback.

    ``reveal()`` is the one way to the value; grep for it to audit where secrets go.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    """Everything an edgematch process is configured with. Units are in the names."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "redis://127.0.0.1:6379/0"
    api_url: str = DEFAULT_API_URL
    subscription_key: Secret | None = field(default=None, repr=False)
    api_operation: str = "MatchEdgeHash"
    rate_limit_per_s: float = 5.0
    batch_linger_ms: int = 250
    sqs_queue_url: str | None = None
    hash_suffix: str = ".bin"
    max_hash_bytes: int = 4096
    result_tag: str = "edgematch-status"
    namespace: str = "edgematch"
    # Beyond the contract: knobs with safe defaults, for operators and tests.
    api_timeout_s: float = 10.0
    api_connect_timeout_s: float = 3.0
    tls_verify: bool = True
    batch_size: int = 5
    # A taken batch's lease, renewed every third of it while its sender lives
    # (worker/buffer.py): how long a killed sender's batch stays out.
    lease_s: float = 15.0
    max_attempts: int = 8
    # Times a worker may begin the same task (and die with it) before it is a poison message.
    max_deliveries: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    breaker_probe_s: float = 30.0
    # The longest the pool honours a 429's Retry-After; past it, one probe request first
    # (worker/cooldown.py).
    max_cooldown_s: float = 60.0
    # TTL of a quarantine or report lock, renewed while its holder works (worker/locks.py):
    # how long a killed holder keeps the step from running again.
    lock_ttl_s: float = 30.0
    # Spacing kept between the pool's requests beyond 1/rate, as a fraction of the
    # interval: absorbs the jitter between taking a slot and the request reaching the API.
    rate_limit_margin: float = 0.02
    match_pumps: int = 4
    pump_max_s: float = 2.0
    idempotency_ttl_s: int = 30 * 24 * 3600
    dead_letter_limit: int = 100_000
    intake_high_water: int = 10_000
    intake_batch: int = 10
    intake_wait_s: int = 20
    visibility_timeout_s: int = 3600
    log_format: str = "json"
    log_level: str = "INFO"
    allowed_buckets: tuple[str, ...] = ()
    worker_concurrency: int | None = None
    background_min_share: float = 0.1
    shutdown_grace_s: float = 30.0
    gate: bool = False
    result_ttl_s: int = 90 * 24 * 3600
    sentinel_master: str | None = None
    metrics_port: int | None = None
    # Downstream of a match (worker/quarantine.py, worker/reports.py, worker/reporters.py).
    #: move, tag or off; None picks move when a quarantine bucket is set, else tag.
    quarantine_mode: str | None = None
    quarantine_bucket: str | None = None
    #: Object Lock retention of a quarantined copy, in days; 0 sets the legal hold only.
    evidence_retention_days: int = 365
    reports_bucket: str | None = None
    #: With a key id the reports are encrypted with aws:kms, otherwise with AES256.
    reports_kms_key_id: str | None = None
    reporter: str = "record"
    report_webhook_url: str | None = None
    report_webhook_secret: Secret | None = field(default=None, repr=False)
    report_user: Secret | None = field(default=None, repr=False)
    report_password: Secret | None = field(default=None, repr=False)
    report_org_name: str | None = None
    report_reporter_name: str | None = None
    report_test: bool = False
    match_cache_ttl_s: int = 90 * 24 * 3600
    #: How long a clean verdict answers byte-identical re-uploads; 0 (the default) is off.
    clean_cache_ttl_s: int = 0
    #: Seconds a journaled task may be missing from its queue and every worker before the
    #: sweep publishes it again (worker/journal.py).
    journal_grace_s: float = 20.0

    @property
    def effective_quarantine_mode(self) -> str:
        """The quarantine mode in force: the configured one, else move with a bucket, else tag."""
        if self.quarantine_mode:
            return self.quarantine_mode
        return "move" if self.quarantine_bucket else "tag"

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this process holds, for the log masker."""
        held = (
            self.subscription_key,
            self.report_webhook_secret,
            self.report_user,
            self.report_password,
        )
        return tuple(secret for secret in held if secret)

    @property
    def batch_linger_s(self) -> float:
        return self.batch_linger_ms / 1000.0

    def require_subscription_key(self) -> Secret:
        if not self.subscription_key:
            raise ConfigurationError(
                "EDGEMATCH_SUBSCRIPTION_KEY or EDGEMATCH_SUBSCRIPTION_KEY_FILE is required"
            )
        return self.subscription_key

    def require_sqs_queue_url(self) -> str:
        if not self.sqs_queue_url:
            raise ConfigurationError("EDGEMATCH_SQS_QUEUE_URL is required for intake")
        return self.sqs_queue_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the environment. Raises ConfigurationError naming the variable."""
        env = os.environ if environ is None else environ
        r = _Reader(env)
        redis_url = r.get("EDGEMATCH_REDIS_URL", cls.redis_url, _redis_url)
        return cls(
            redis_url=redis_url,
            broker_url=r.get("EDGEMATCH_BROKER_URL", redis_url, _broker_url),
            api_url=r.get("EDGEMATCH_API_URL", DEFAULT_API_URL, _http_url).rstrip("/"),
            subscription_key=_subscription_key(env),
            api_operation=r.get("EDGEMATCH_API_OPERATION", cls.api_operation, _operation),
            rate_limit_per_s=r.get("EDGEMATCH_RATE_LIMIT", cls.rate_limit_per_s, _rate),
            batch_linger_ms=r.get(
                "EDGEMATCH_BATCH_LINGER_MS", cls.batch_linger_ms, _non_negative_int
            ),
            sqs_queue_url=r.get("EDGEMATCH_SQS_QUEUE_URL", None, _http_url),
            hash_suffix=r.get("EDGEMATCH_HASH_SUFFIX", cls.hash_suffix, _non_empty),
            max_hash_bytes=r.get("EDGEMATCH_MAX_HASH_BYTES", cls.max_hash_bytes, _positive_int),
            result_tag=r.get("EDGEMATCH_RESULT_TAG", cls.result_tag, _tag_key),
            namespace=r.get("EDGEMATCH_NAMESPACE", cls.namespace, _namespace),
            api_timeout_s=r.get("EDGEMATCH_API_TIMEOUT_S", cls.api_timeout_s, _positive_float),
            api_connect_timeout_s=r.get(
                "EDGEMATCH_API_CONNECT_TIMEOUT_S", cls.api_connect_timeout_s, _positive_float
            ),
            tls_verify=r.get("EDGEMATCH_TLS_VERIFY", cls.tls_verify, _bool),
            batch_size=r.get("EDGEMATCH_BATCH_SIZE", cls.batch_size, _batch_size),
            lease_s=r.get("EDGEMATCH_LEASE_S", cls.lease_s, _positive_float),
            max_attempts=r.get("EDGEMATCH_MAX_ATTEMPTS", cls.max_attempts, _positive_int),
            max_deliveries=r.get("EDGEMATCH_MAX_DELIVERIES", cls.max_deliveries, _positive_int),
            backoff_base_s=r.get("EDGEMATCH_BACKOFF_BASE_S", cls.backoff_base_s, _positive_float),
            backoff_cap_s=r.get("EDGEMATCH_BACKOFF_CAP_S", cls.backoff_cap_s, _positive_float),
            breaker_probe_s=r.get(
                "EDGEMATCH_BREAKER_PROBE_S", cls.breaker_probe_s, _positive_float
            ),
            max_cooldown_s=r.get("EDGEMATCH_MAX_COOLDOWN_S", cls.max_cooldown_s, _positive_float),
            lock_ttl_s=r.get("EDGEMATCH_LOCK_TTL_S", cls.lock_ttl_s, _positive_float),
            rate_limit_margin=r.get(
                "EDGEMATCH_RATE_LIMIT_MARGIN", cls.rate_limit_margin, _fraction
            ),
            match_pumps=r.get("EDGEMATCH_MATCH_PUMPS", cls.match_pumps, _positive_int),
            pump_max_s=r.get("EDGEMATCH_PUMP_MAX_S", cls.pump_max_s, _positive_float),
            idempotency_ttl_s=r.get(
                "EDGEMATCH_IDEMPOTENCY_TTL_S", cls.idempotency_ttl_s, _positive_int
            ),
            dead_letter_limit=r.get(
                "EDGEMATCH_DEAD_LETTER_LIMIT", cls.dead_letter_limit, _positive_int
            ),
            intake_high_water=r.get(
                "EDGEMATCH_INTAKE_HIGH_WATER", cls.intake_high_water, _positive_int
            ),
            intake_batch=r.get("EDGEMATCH_INTAKE_BATCH", cls.intake_batch, _sqs_batch),
            intake_wait_s=r.get("EDGEMATCH_INTAKE_WAIT_S", cls.intake_wait_s, _sqs_wait),
            visibility_timeout_s=r.get(
                "EDGEMATCH_VISIBILITY_TIMEOUT_S", cls.visibility_timeout_s, _positive_int
            ),
            log_format=r.get("EDGEMATCH_LOG_FORMAT", cls.log_format, _log_format),
            log_level=r.get("EDGEMATCH_LOG_LEVEL", cls.log_level, _log_level),
            allowed_buckets=r.get("EDGEMATCH_ALLOWED_BUCKETS", (), _csv),
            worker_concurrency=r.get("EDGEMATCH_WORKER_CONCURRENCY", None, _positive_int),
            shutdown_grace_s=r.get(
                "EDGEMATCH_SHUTDOWN_GRACE_S", cls.shutdown_grace_s, _positive_float
            ),
            metrics_port=r.get("EDGEMATCH_METRICS_PORT", None, _port),
            gate=r.get("EDGEMATCH_GATE", cls.gate, _bool),
            result_ttl_s=r.get("EDGEMATCH_RESULT_TTL_S", cls.result_ttl_s, _positive_int),
            sentinel_master=r.get("EDGEMATCH_SENTINEL_MASTER", None, _non_empty),
            background_min_share=r.get(
                "EDGEMATCH_BACKGROUND_MIN_SHARE", cls.background_min_share, _fraction
            ),
            quarantine_mode=r.get("EDGEMATCH_QUARANTINE_MODE", None, _quarantine_mode),
            quarantine_bucket=r.get("EDGEMATCH_QUARANTINE_BUCKET", None, _bucket_name),
            evidence_retention_days=r.get(
                "EDGEMATCH_EVIDENCE_RETENTION_DAYS", cls.evidence_retention_days, _retention_days
            ),
            reports_bucket=r.get("EDGEMATCH_REPORTS_BUCKET", None, _bucket_name),
            reports_kms_key_id=r.get("EDGEMATCH_REPORTS_KMS_KEY_ID", None, _non_empty),
            reporter=r.get("EDGEMATCH_REPORTER", cls.reporter, _reporter),
            report_webhook_url=r.get("EDGEMATCH_REPORT_WEBHOOK_URL", None, _webhook_url),
            report_webhook_secret=_secret(env, "EDGEMATCH_REPORT_WEBHOOK_SECRET"),
            report_user=_secret(env, "EDGEMATCH_REPORT_USER"),
            report_password=_secret(env, "EDGEMATCH_REPORT_PASSWORD"),
            report_org_name=r.get("EDGEMATCH_REPORT_ORG_NAME", None, _non_empty),
            report_reporter_name=r.get("EDGEMATCH_REPORT_REPORTER_NAME", None, _non_empty),
            report_test=r.get("EDGEMATCH_REPORT_TEST", cls.report_test, _bool),
            match_cache_ttl_s=r.get(
                "EDGEMATCH_MATCH_CACHE_TTL_S", cls.match_cache_ttl_s, _positive_int
            ),
            journal_grace_s=r.get(
                "EDGEMATCH_JOURNAL_GRACE_S", cls.journal_grace_s, _positive_float
            ),
            clean_cache_ttl_s=r.get(
                "EDGEMATCH_CLEAN_CACHE_TTL_S", cls.clean_cache_ttl_s, _non_negative_int
            ),
        ).validated()

    def validated(self) -> Settings:
        """Cross-field checks that no single variable can make."""
        for name, url in (
            ("EDGEMATCH_REDIS_URL", self.redis_url),
            ("EDGEMATCH_BROKER_URL", self.broker_url),
        ):
            if url.startswith("sentinel://") and not self.sentinel_master:
                raise ConfigurationError(
                    f"EDGEMATCH_SENTINEL_MASTER is required with a sentinel:// {name} "
                    "(the name of the monitored master, as in sentinel.conf)"
                )
        longest_task_s = self.lease_s + self.api_timeout_s + self.backoff_cap_s
        if self.visibility_timeout_s <= longest_task_s:
            raise ConfigurationError(
                f"EDGEMATCH_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must exceed the "
                f"longest task plus retry countdown ({longest_task_s:.0f} s): a shorter one "
                "makes the broker deliver running tasks twice"
            )
        self._validate_downstream()
        return self

    def _validate_downstream(self) -> None:
        if self.quarantine_mode == "move" and not self.quarantine_bucket:
            raise ConfigurationError(
                "EDGEMATCH_QUARANTINE_MODE=move needs EDGEMATCH_QUARANTINE_BUCKET"
            )
        if self.quarantine_bucket and self.quarantine_bucket in self.allowed_buckets:
            raise ConfigurationError(
                f"EDGEMATCH_QUARANTINE_BUCKET ({self.quarantine_bucket}) must not be an upload "
                "bucket listed in EDGEMATCH_ALLOWED_BUCKETS"
            )
        needed: dict[str, object] = {}
        if self.reporter == "webhook":
            needed = {
                "EDGEMATCH_REPORT_WEBHOOK_URL": self.report_webhook_url,
                "EDGEMATCH_REPORT_WEBHOOK_SECRET": self.report_webhook_secret,
            }
        elif self.reporter == "photodna":
            needed = {
                "EDGEMATCH_REPORT_USER": self.report_user,
                "EDGEMATCH_REPORT_PASSWORD": self.report_password,
                "EDGEMATCH_REPORT_ORG_NAME": self.report_org_name,
                "EDGEMATCH_REPORT_REPORTER_NAME": self.report_reporter_name,
            }
        missing = [name for name, value in needed.items() if not value]
        if missing:
            raise ConfigurationError(
                f"EDGEMATCH_REPORTER={self.reporter} needs {' and '.join(missing)}"
            )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None


def _subscription_key(env: Mapping[str, str]) -> Secret | None:
    return _secret(env, "EDGEMATCH_SUBSCRIPTION_KEY")


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The secret in ``name``, or in the file ``name``_FILE names (read once, stripped)."""
    direct = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if direct and path:
        raise ConfigurationError(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigurationError(f"{name}_FILE: {path} is not UTF-8 text") from None
        if not value:
            raise ConfigurationError(f"{name}_FILE: {path} is empty")
        return Secret(value)
    return Secret(direct) if direct else None


def _redis_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in ("redis", "rediss", "sentinel", "unix"):
        raise ValueError(
            f"expected a redis://, rediss://, sentinel:// or unix:// URL, got scheme {scheme!r}"
        )
    return raw


def _broker_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in ("redis", "rediss", "sentinel", "unix"):
        raise ValueError(
            f"expected a redis://, rediss://, sentinel:// or unix:// URL, got scheme {scheme!r}"
        )
    return raw


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {raw!r}")
    return raw


def _operation(raw: str) -> str:
    if raw not in OPERATIONS:
        raise ValueError(f"expected one of {', '.join(OPERATIONS)}, got {raw!r}")
    return raw


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def _positive_float(raw: str) -> float:
    value = _float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def _port(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a TCP port from 1 to 65535, got {raw!r}")
    return value


def _rate(raw: str) -> float:
    value = _positive_float(raw)
    if value < 0.001:
        raise ValueError(f"expected at least 0.001 requests per second, got {raw!r}")
    return value


def _fraction(raw: str) -> float:
    value = _float(raw)
    if not 0 <= value < 1:
        raise ValueError(f"expected a number in [0, 1), got {raw!r}")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise ValueError(f"expected zero or a positive whole number, got {raw!r}")
    return value


def _batch_size(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 5:
        raise ValueError(f"the API takes 1 to 5 hashes a request, got {raw!r}")
    return value


def _sqs_batch(raw: str) -> int:
    value = _int(raw)
    if not 1 <= value <= 10:
        raise ValueError(f"SQS receives 1 to 10 messages a call, got {raw!r}")
    return value


def _sqs_wait(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 20:
        raise ValueError(f"SQS long polls 0 to 20 seconds, got {raw!r}")
    return value


def _non_empty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _tag_key(raw: str) -> str:
    if len(raw) > 128:
        raise ValueError("an S3 tag key has at most 128 characters")
    return raw


def _namespace(raw: str) -> str:
    if not all(c.isalnum() or c in "-_" for c in raw):
        raise ValueError(f"use letters, digits, '-' and '_' only, got {raw!r}")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _log_format(raw: str) -> str:
    if raw not in ("json", "console"):
        raise ValueError(f"expected json or console, got {raw!r}")
    return raw


def _log_level(raw: str) -> str:
    upper = raw.upper()
    if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return upper


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _quarantine_mode(raw: str) -> str:
    if raw not in ("move", "tag", "off"):
        raise ValueError(f"expected move, tag or off, got {raw!r}")
    return raw


def _reporter(raw: str) -> str:
    if raw not in ("record", "webhook", "photodna"):
        raise ValueError(f"expected record, webhook or photodna, got {raw!r}")
    return raw


def _retention_days(raw: str) -> int:
    value = _non_negative_int(raw)
    # S3 Object Lock accepts at most 100 years.
    if value > 36_500:
        raise ValueError(f"expected at most 36500 days, got {raw!r}")
    return value


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _bucket_name(raw: str) -> str:
    if not _BUCKET_NAME.fullmatch(raw) or ".." in raw:
        raise ValueError(
            f"expected an S3 bucket name (3-63 lowercase letters, digits, '.' and '-'), got {raw!r}"
        )
    return raw


def _webhook_url(raw: str) -> str:
    url = _http_url(raw)
    host = (urlsplit(url).hostname or "").lower()
    # A report names matched content: it never travels in clear text off this machine.
    if urlsplit(url).scheme != "https" and host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"expected an https:// URL (http:// only for localhost), got {raw!r}")
    return url
