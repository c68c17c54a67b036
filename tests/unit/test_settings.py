"""Unit tests for edgematch.config.settings (Settings.from_env, Secret) and the CLI contract."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgematch.config import parsers
from edgematch.config.celery import celery_config
from edgematch.config.declare import Concern, declared, setting
from edgematch.config.parsers import positive_int as parse_int
from edgematch.config.settings import Secret, Settings, known_names, variables
from edgematch.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
KEY = "KEY-0123456789abcdef"

# The defaults operators have been told, pinned by variable: a declaration edited by mistake
# fails here (a deliberate change of default changes this table and CHANGELOG.md).
DEFAULTS: dict[str, tuple[str, object]] = {
    "EDGEMATCH_REDIS_URL": ("redis_url", "redis://127.0.0.1:6379/0"),
    "EDGEMATCH_BROKER_URL": ("broker_url", "redis://127.0.0.1:6379/0"),
    "EDGEMATCH_API_URL": ("api_url", "https://api.microsoftmoderator.com/photodna/v1.0"),
    "EDGEMATCH_SUBSCRIPTION_KEY": ("subscription_key", None),
    "EDGEMATCH_API_OPERATION": ("api_operation", "MatchEdgeHash"),
    "EDGEMATCH_RATE_LIMIT": ("rate_limit_per_s", 5.0),
    "EDGEMATCH_BATCH_LINGER_MS": ("batch_linger_ms", 250),
    "EDGEMATCH_SQS_QUEUE_URL": ("sqs_queue_url", None),
    "EDGEMATCH_HASH_SUFFIX": ("hash_suffix", ".bin"),
    "EDGEMATCH_MAX_HASH_BYTES": ("max_hash_bytes", 4096),
    "EDGEMATCH_RESULT_TAG": ("result_tag", "edgematch-status"),
    "EDGEMATCH_NAMESPACE": ("namespace", "edgematch"),
    "EDGEMATCH_ALLOWED_BUCKETS": ("allowed_buckets", ()),
    "EDGEMATCH_API_TIMEOUT_S": ("api_timeout_s", 10.0),
    "EDGEMATCH_API_CONNECT_TIMEOUT_S": ("api_connect_timeout_s", 3.0),
    "EDGEMATCH_TLS_VERIFY": ("tls_verify", True),
    "EDGEMATCH_BATCH_SIZE": ("batch_size", 5),
    "EDGEMATCH_RATE_LIMIT_MARGIN": ("rate_limit_margin", 0.02),
    "EDGEMATCH_MATCH_PUMPS": ("match_pumps", 4),
    "EDGEMATCH_PUMP_MAX_S": ("pump_max_s", 2.0),
    "EDGEMATCH_LEASE_S": ("lease_s", 15.0),
    "EDGEMATCH_MAX_ATTEMPTS": ("max_attempts", 8),
    "EDGEMATCH_MAX_DELIVERIES": ("max_deliveries", 3),
    "EDGEMATCH_DEAD_LETTER_LIMIT": ("dead_letter_limit", 100_000),
    "EDGEMATCH_BACKOFF_BASE_S": ("backoff_base_s", 1.0),
    "EDGEMATCH_BACKOFF_CAP_S": ("backoff_cap_s", 300.0),
    "EDGEMATCH_BREAKER_PROBE_S": ("breaker_probe_s", 30.0),
    "EDGEMATCH_MAX_COOLDOWN_S": ("max_cooldown_s", 60.0),
    "EDGEMATCH_LOCK_TTL_S": ("lock_ttl_s", 30.0),
    "EDGEMATCH_INTAKE_HIGH_WATER": ("intake_high_water", 10_000),
    "EDGEMATCH_INTAKE_BATCH": ("intake_batch", 10),
    "EDGEMATCH_INTAKE_WAIT_S": ("intake_wait_s", 20),
    "EDGEMATCH_VISIBILITY_TIMEOUT_S": ("visibility_timeout_s", 3600),
    "EDGEMATCH_IDEMPOTENCY_TTL_S": ("idempotency_ttl_s", 6 * 3600),
    "EDGEMATCH_WEBHOOK_TOKEN": ("webhook_token", None),
    "EDGEMATCH_WEBHOOK_HOST": ("webhook_host", "0.0.0.0"),
    "EDGEMATCH_WEBHOOK_PORT": ("webhook_port", 8080),
    "EDGEMATCH_WEBHOOK_MAX_BODY_BYTES": ("webhook_max_body_bytes", 262_144),
    "EDGEMATCH_WEBHOOK_RETRY_AFTER_S": ("webhook_retry_after_s", 5),
    "EDGEMATCH_WEBHOOK_ENQUEUE_TIMEOUT_S": ("webhook_enqueue_timeout_s", 10.0),
    "EDGEMATCH_WEBHOOK_MAX_CONNECTIONS": ("webhook_max_connections", 1000),
    "EDGEMATCH_WEBHOOK_TLS_CERTFILE": ("webhook_tls_certfile", None),
    "EDGEMATCH_WEBHOOK_TLS_KEYFILE": ("webhook_tls_keyfile", None),
    "EDGEMATCH_LOG_FORMAT": ("log_format", "json"),
    "EDGEMATCH_LOG_LEVEL": ("log_level", "INFO"),
    "EDGEMATCH_WORKER_CONCURRENCY": ("worker_concurrency", None),
    "EDGEMATCH_QUARANTINE_MODE": ("quarantine_mode", None),
    "EDGEMATCH_QUARANTINE_BUCKET": ("quarantine_bucket", None),
    "EDGEMATCH_EVIDENCE_RETENTION_DAYS": ("evidence_retention_days", 365),
    "EDGEMATCH_REPORTS_BUCKET": ("reports_bucket", None),
    "EDGEMATCH_VERDICT_LOG_BUCKET": ("verdict_log_bucket", None),
    "EDGEMATCH_VERDICT_LOG_FLUSH_S": ("verdict_log_flush_s", 10.0),
    "EDGEMATCH_VERDICT_LOG_MAX_STAGED": ("verdict_log_max_staged", 100_000),
    "EDGEMATCH_REPORTS_KMS_KEY_ID": ("reports_kms_key_id", None),
    "EDGEMATCH_REPORTER": ("reporter", "record"),
    "EDGEMATCH_REPORT_WEBHOOK_URL": ("report_webhook_url", None),
    "EDGEMATCH_REPORT_WEBHOOK_SECRET": ("report_webhook_secret", None),
    "EDGEMATCH_REPORT_USER": ("report_user", None),
    "EDGEMATCH_REPORT_PASSWORD": ("report_password", None),
    "EDGEMATCH_REPORT_ORG_NAME": ("report_org_name", None),
    "EDGEMATCH_REPORT_REPORTER_NAME": ("report_reporter_name", None),
    "EDGEMATCH_REPORT_TEST": ("report_test", False),
    "EDGEMATCH_REVIEW": ("review", "auto"),
    "EDGEMATCH_REVIEW_LINK_S": ("review_link_s", 900),
    "EDGEMATCH_FLOOD_MATCHES": ("flood_matches", 50),
    "EDGEMATCH_FLOOD_WINDOW_S": ("flood_window_s", 24 * 3600),
    "EDGEMATCH_MATCH_CACHE_TTL_S": ("match_cache_ttl_s", 90 * 24 * 3600),
    "EDGEMATCH_CLEAN_CACHE_TTL_S": ("clean_cache_ttl_s", 0),
    "EDGEMATCH_JOURNAL_GRACE_S": ("journal_grace_s", 20.0),
    "EDGEMATCH_BACKGROUND_MIN_SHARE": ("background_min_share", 0.1),
    "EDGEMATCH_TAG_CLEAN": ("tag_clean", True),
    "EDGEMATCH_GATE": ("gate", False),
    "EDGEMATCH_SHUTDOWN_GRACE_S": ("shutdown_grace_s", 30.0),
    "EDGEMATCH_METRICS_PORT": ("metrics_port", None),
    "EDGEMATCH_RESULT_TTL_S": ("result_ttl_s", 2 * 3600),
    "EDGEMATCH_SENTINEL_MASTER": ("sentinel_master", None),
}
#: The variables whose name is not EDGEMATCH_ + the field's name upper-cased.
NAMED_OTHERWISE = {"rate_limit_per_s": "EDGEMATCH_RATE_LIMIT"}


# --- declarations and defaults -------------------------------------------------------


def test_every_field_is_a_declared_variable() -> None:
    """Each Settings field is read from exactly one variable: EDGEMATCH_ + its name, or the
    listed exception; every one has a pinned default here."""
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert [v.field for v in variables()] == fields
    for variable in variables():
        assert variable.field is not None
        expected = NAMED_OTHERWISE.get(variable.field, "EDGEMATCH_" + variable.field.upper())
        assert variable.name == expected
    assert {v.name: v.field for v in variables()} == {k: f for k, (f, _) in DEFAULTS.items()}


@pytest.mark.parametrize(("var", "field_and_default"), sorted(DEFAULTS.items()))
def test_default_is_the_pinned_one(var: str, field_and_default: tuple[str, object]) -> None:
    """An empty environment and Settings() both give each variable's pinned default."""
    field_name, expected = field_and_default
    assert getattr(Settings.from_env({}), field_name) == expected
    assert getattr(Settings(), field_name) == expected


def test_only_secrets_have_a_file_variant() -> None:
    """The subscription key, the reporter's secrets and the webhook's token, and nothing else,
    may come from a *_FILE variable, and are kept out of the dataclass repr."""
    secrets = {v.field for v in variables() if v.spec.secret}
    assert secrets == {
        "subscription_key",
        "webhook_token",
        "report_webhook_secret",
        "report_user",
        "report_password",
    }
    repr_hidden = {f.name for f in dataclasses.fields(Settings) if not f.repr}
    assert repr_hidden == secrets
    assert {n for v in variables() for n in v.names if n.endswith("_FILE")} == {
        v.name + "_FILE" for v in variables() if v.spec.secret
    }


def test_a_field_without_a_declaration_is_refused() -> None:
    """declared() refuses a dataclass field made without setting(): it could be neither read
    nor documented."""

    @dataclasses.dataclass(frozen=True)
    class Partial:
        fine: int = setting(1, Concern.API, parse_int, help="declared")
        bare: int = 2

    with pytest.raises(TypeError, match=r"Partial\.bare"):
        declared(Partial)


def test_same_as_must_name_an_earlier_field() -> None:
    """A default taken from another field needs that field read first; declared() says so."""

    @dataclasses.dataclass(frozen=True)
    class Backwards:
        copy: str = setting("a", Concern.API, str, same_as="source", help="copy")
        source: str = setting("a", Concern.API, str, help="source")

    with pytest.raises(TypeError, match=r"Backwards\.copy"):
        declared(Backwards)


def test_empty_environment_has_no_key_and_no_queue() -> None:
    """Without the key and the queue URL those stay unset (required only where used)."""
    settings = Settings.from_env({})
    assert settings.subscription_key is None
    assert settings.sqs_queue_url is None


def test_blank_values_mean_the_default() -> None:
    """A variable set to whitespace only is treated as unset."""
    settings = Settings.from_env({"EDGEMATCH_RATE_LIMIT": "   ", "EDGEMATCH_NAMESPACE": ""})
    assert settings.rate_limit_per_s == 5.0
    assert settings.namespace == "edgematch"


# --- every variable parsed -------------------------------------------------------------

GOOD_VALUES: list[tuple[str, str, str, object]] = [
    ("EDGEMATCH_REDIS_URL", "redis://10.0.0.5:6380/2", "redis_url", "redis://10.0.0.5:6380/2"),
    ("EDGEMATCH_REDIS_URL", "rediss://:pw@cache:6380/0", "redis_url", "rediss://:pw@cache:6380/0"),
    ("EDGEMATCH_REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
    ("EDGEMATCH_BROKER_URL", "redis://b:6379/1", "broker_url", "redis://b:6379/1"),
    ("EDGEMATCH_BROKER_URL", "rediss://b:6380/1", "broker_url", "rediss://b:6380/1"),
    (
        "EDGEMATCH_BROKER_URL",
        "sentinel://s1:26379;sentinel://s2:26379",
        "broker_url",
        "sentinel://s1:26379;sentinel://s2:26379",
    ),
    ("EDGEMATCH_BROKER_URL", "unix:///run/redis.sock", "broker_url", "unix:///run/redis.sock"),
    (
        "EDGEMATCH_API_URL",
        "http://127.0.0.1:8080/photodna/v1.0/",
        "api_url",
        "http://127.0.0.1:8080/photodna/v1.0",
    ),
    ("EDGEMATCH_API_OPERATION", "MatchHash", "api_operation", "MatchHash"),
    ("EDGEMATCH_API_OPERATION", "MatchEdgeHash", "api_operation", "MatchEdgeHash"),
    ("EDGEMATCH_RATE_LIMIT", "7.5", "rate_limit_per_s", 7.5),
    ("EDGEMATCH_RATE_LIMIT", " 10 ", "rate_limit_per_s", 10.0),
    ("EDGEMATCH_BATCH_LINGER_MS", "0", "batch_linger_ms", 0),
    ("EDGEMATCH_BATCH_LINGER_MS", "1000", "batch_linger_ms", 1000),
    (
        "EDGEMATCH_SQS_QUEUE_URL",
        "https://sqs.us-east-1.amazonaws.com/123456789012/events",
        "sqs_queue_url",
        "https://sqs.us-east-1.amazonaws.com/123456789012/events",
    ),
    ("EDGEMATCH_HASH_SUFFIX", ".pdna", "hash_suffix", ".pdna"),
    ("EDGEMATCH_MAX_HASH_BYTES", "1024", "max_hash_bytes", 1024),
    ("EDGEMATCH_RESULT_TAG", "scan-status", "result_tag", "scan-status"),
    ("EDGEMATCH_RESULT_TAG", "t" * 128, "result_tag", "t" * 128),
    ("EDGEMATCH_NAMESPACE", "tenant_a-1", "namespace", "tenant_a-1"),
    ("EDGEMATCH_API_TIMEOUT_S", "5.5", "api_timeout_s", 5.5),
    ("EDGEMATCH_API_CONNECT_TIMEOUT_S", "1", "api_connect_timeout_s", 1.0),
    ("EDGEMATCH_TLS_VERIFY", "false", "tls_verify", False),
    ("EDGEMATCH_TLS_VERIFY", "0", "tls_verify", False),
    ("EDGEMATCH_TLS_VERIFY", "no", "tls_verify", False),
    ("EDGEMATCH_TLS_VERIFY", "OFF", "tls_verify", False),
    ("EDGEMATCH_TLS_VERIFY", "True", "tls_verify", True),
    ("EDGEMATCH_TLS_VERIFY", "1", "tls_verify", True),
    ("EDGEMATCH_TLS_VERIFY", "yes", "tls_verify", True),
    ("EDGEMATCH_TLS_VERIFY", "on", "tls_verify", True),
    ("EDGEMATCH_BATCH_SIZE", "1", "batch_size", 1),
    ("EDGEMATCH_BATCH_SIZE", "5", "batch_size", 5),
    ("EDGEMATCH_LEASE_S", "90", "lease_s", 90.0),
    ("EDGEMATCH_MAX_ATTEMPTS", "3", "max_attempts", 3),
    ("EDGEMATCH_MAX_DELIVERIES", "5", "max_deliveries", 5),
    ("EDGEMATCH_DEAD_LETTER_LIMIT", "500", "dead_letter_limit", 500),
    ("EDGEMATCH_BACKOFF_BASE_S", "0.5", "backoff_base_s", 0.5),
    ("EDGEMATCH_BACKOFF_CAP_S", "120", "backoff_cap_s", 120.0),
    ("EDGEMATCH_BREAKER_PROBE_S", "10", "breaker_probe_s", 10.0),
    ("EDGEMATCH_LOCK_TTL_S", "4.5", "lock_ttl_s", 4.5),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "0", "rate_limit_margin", 0.0),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "0.1", "rate_limit_margin", 0.1),
    ("EDGEMATCH_MATCH_PUMPS", " 8 ", "match_pumps", 8),
    ("EDGEMATCH_PUMP_MAX_S", "1.5", "pump_max_s", 1.5),
    ("EDGEMATCH_IDEMPOTENCY_TTL_S", "86400", "idempotency_ttl_s", 86400),
    ("EDGEMATCH_INTAKE_HIGH_WATER", "500", "intake_high_water", 500),
    ("EDGEMATCH_INTAKE_BATCH", "1", "intake_batch", 1),
    ("EDGEMATCH_INTAKE_BATCH", "10", "intake_batch", 10),
    ("EDGEMATCH_INTAKE_WAIT_S", "0", "intake_wait_s", 0),
    ("EDGEMATCH_INTAKE_WAIT_S", "20", "intake_wait_s", 20),
    ("EDGEMATCH_VISIBILITY_TIMEOUT_S", "7200", "visibility_timeout_s", 7200),
    ("EDGEMATCH_LOG_FORMAT", "console", "log_format", "console"),
    ("EDGEMATCH_LOG_FORMAT", "json", "log_format", "json"),
    ("EDGEMATCH_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("EDGEMATCH_LOG_LEVEL", "Warning", "log_level", "WARNING"),
    ("EDGEMATCH_LOG_LEVEL", "ERROR", "log_level", "ERROR"),
    ("EDGEMATCH_ALLOWED_BUCKETS", " a, b ,,c ", "allowed_buckets", ("a", "b", "c")),
    ("EDGEMATCH_ALLOWED_BUCKETS", "uploads", "allowed_buckets", ("uploads",)),
    ("EDGEMATCH_ALLOWED_BUCKETS", " , ", "allowed_buckets", ()),
    ("EDGEMATCH_CLEAN_CACHE_TTL_S", "0", "clean_cache_ttl_s", 0),
    ("EDGEMATCH_CLEAN_CACHE_TTL_S", " 3600 ", "clean_cache_ttl_s", 3600),
    ("EDGEMATCH_JOURNAL_GRACE_S", "2.5", "journal_grace_s", 2.5),
    ("EDGEMATCH_MAX_COOLDOWN_S", "600", "max_cooldown_s", 600.0),
    ("EDGEMATCH_RESULT_TTL_S", "14400", "result_ttl_s", 14400),
    ("EDGEMATCH_VERDICT_LOG_FLUSH_S", "2.5", "verdict_log_flush_s", 2.5),
    ("EDGEMATCH_VERDICT_LOG_MAX_STAGED", "5000", "verdict_log_max_staged", 5000),
    ("EDGEMATCH_VERDICT_LOG_BUCKET", "audit-log", "verdict_log_bucket", "audit-log"),
    ("EDGEMATCH_MATCH_CACHE_TTL_S", "3600", "match_cache_ttl_s", 3600),
    ("EDGEMATCH_BACKGROUND_MIN_SHARE", "0.25", "background_min_share", 0.25),
    ("EDGEMATCH_BACKGROUND_MIN_SHARE", "0", "background_min_share", 0.0),
    ("EDGEMATCH_WORKER_CONCURRENCY", "3", "worker_concurrency", 3),
    ("EDGEMATCH_SHUTDOWN_GRACE_S", "45", "shutdown_grace_s", 45.0),
    ("EDGEMATCH_METRICS_PORT", "9100", "metrics_port", 9100),
    ("EDGEMATCH_METRICS_PORT", "65535", "metrics_port", 65535),
    ("EDGEMATCH_TAG_CLEAN", "off", "tag_clean", False),
    ("EDGEMATCH_GATE", "on", "gate", True),
    ("EDGEMATCH_GATE", "off", "gate", False),
    ("EDGEMATCH_SENTINEL_MASTER", "mymaster", "sentinel_master", "mymaster"),
    ("EDGEMATCH_QUARANTINE_MODE", "tag", "quarantine_mode", "tag"),
    ("EDGEMATCH_QUARANTINE_MODE", "off", "quarantine_mode", "off"),
    (
        "EDGEMATCH_QUARANTINE_BUCKET",
        "quarantine.example-1",
        "quarantine_bucket",
        "quarantine.example-1",
    ),
    ("EDGEMATCH_EVIDENCE_RETENTION_DAYS", "0", "evidence_retention_days", 0),
    ("EDGEMATCH_EVIDENCE_RETENTION_DAYS", "36500", "evidence_retention_days", 36500),
    ("EDGEMATCH_REPORTS_BUCKET", "edgematch-reports", "reports_bucket", "edgematch-reports"),
    ("EDGEMATCH_REPORTS_KMS_KEY_ID", "alias/edgematch", "reports_kms_key_id", "alias/edgematch"),
    ("EDGEMATCH_REPORTER", "record", "reporter", "record"),
    (
        "EDGEMATCH_REPORT_WEBHOOK_URL",
        "https://hooks.example/r",
        "report_webhook_url",
        "https://hooks.example/r",
    ),
    (
        "EDGEMATCH_REPORT_WEBHOOK_URL",
        "http://localhost:8080/r",
        "report_webhook_url",
        "http://localhost:8080/r",
    ),
    ("EDGEMATCH_REPORT_ORG_NAME", "Example Inc.", "report_org_name", "Example Inc."),
    ("EDGEMATCH_REPORT_REPORTER_NAME", "T&S team", "report_reporter_name", "T&S team"),
    ("EDGEMATCH_REPORT_TEST", "yes", "report_test", True),
    ("EDGEMATCH_REVIEW", "required", "review", "required"),
    ("EDGEMATCH_REVIEW", "off", "review", "off"),
    ("EDGEMATCH_REVIEW_LINK_S", "300", "review_link_s", 300),
    ("EDGEMATCH_FLOOD_MATCHES", "5", "flood_matches", 5),
    ("EDGEMATCH_FLOOD_WINDOW_S", "3600", "flood_window_s", 3600),
    ("EDGEMATCH_WEBHOOK_HOST", "127.0.0.1", "webhook_host", "127.0.0.1"),
    ("EDGEMATCH_WEBHOOK_PORT", "9443", "webhook_port", 9443),
    ("EDGEMATCH_WEBHOOK_MAX_BODY_BYTES", "65536", "webhook_max_body_bytes", 65536),
    ("EDGEMATCH_WEBHOOK_RETRY_AFTER_S", "30", "webhook_retry_after_s", 30),
    ("EDGEMATCH_WEBHOOK_ENQUEUE_TIMEOUT_S", "2.5", "webhook_enqueue_timeout_s", 2.5),
    ("EDGEMATCH_WEBHOOK_MAX_CONNECTIONS", "200", "webhook_max_connections", 200),
    (
        "EDGEMATCH_WEBHOOK_TLS_CERTFILE",
        "/etc/tls/tls.crt",
        "webhook_tls_certfile",
        "/etc/tls/tls.crt",
    ),
    (
        "EDGEMATCH_WEBHOOK_TLS_KEYFILE",
        "/etc/tls/tls.key",
        "webhook_tls_keyfile",
        "/etc/tls/tls.key",
    ),
]


@pytest.mark.parametrize(("var", "raw", "field_name", "expected"), GOOD_VALUES)
def test_variable_is_parsed(var: str, raw: str, field_name: str, expected: object) -> None:
    """Each EDGEMATCH_* variable is parsed into its typed field."""
    # A master name, for the sentinel:// URLs among the cases.
    value = getattr(Settings.from_env({"EDGEMATCH_SENTINEL_MASTER": "m", var: raw}), field_name)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "url", ["redis://r:6379/3", "rediss://:secret@r:6380/0", "unix:///run/redis.sock"]
)
def test_broker_defaults_to_redis_url(url: str) -> None:
    """Without EDGEMATCH_BROKER_URL the broker is EDGEMATCH_REDIS_URL."""
    settings = Settings.from_env({"EDGEMATCH_REDIS_URL": url})
    assert settings.redis_url == url
    assert settings.broker_url == url


@pytest.mark.parametrize("var", ["EDGEMATCH_REDIS_URL", "EDGEMATCH_BROKER_URL"])
def test_sentinel_needs_a_master_name(var: str) -> None:
    """A sentinel:// URL without EDGEMATCH_SENTINEL_MASTER is refused, naming both variables."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({var: "sentinel://s:26379"})
    assert "EDGEMATCH_SENTINEL_MASTER" in str(info.value) and var in str(info.value)


def test_sentinel_master_reaches_the_broker_options() -> None:
    """kombu needs master_name to follow a sentinel:// broker; it comes from the setting."""
    settings = Settings.from_env(
        {"EDGEMATCH_BROKER_URL": "sentinel://s:26379", "EDGEMATCH_SENTINEL_MASTER": "mymaster"}
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["master_name"] == "mymaster"
    assert "master_name" not in celery_config(Settings())["broker_transport_options"]


def test_broker_url_overrides_redis_url() -> None:
    """An explicit EDGEMATCH_BROKER_URL wins over the Redis URL for the broker only."""
    settings = Settings.from_env(
        {
            "EDGEMATCH_REDIS_URL": "redis://r:6379/0",
            "EDGEMATCH_BROKER_URL": "sentinel://s:26379",
            "EDGEMATCH_SENTINEL_MASTER": "mymaster",
        }
    )
    assert settings.redis_url == "redis://r:6379/0"
    assert settings.broker_url == "sentinel://s:26379"


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.from_env() without an argument reads the process environment."""
    monkeypatch.setenv("EDGEMATCH_MATCH_PUMPS", "11")
    assert Settings.from_env().match_pumps == 11


# --- malformed values ----------------------------------------------------------------

BAD_VALUES: list[tuple[str, str]] = [
    ("EDGEMATCH_REDIS_URL", "http://cache:6379"),
    ("EDGEMATCH_REDIS_URL", "localhost"),
    ("EDGEMATCH_REDIS_URL", "127.0.0.1:6379"),
    ("EDGEMATCH_BROKER_URL", "kafka://broker:9092"),
    ("EDGEMATCH_BROKER_URL", "sqs://"),
    ("EDGEMATCH_BROKER_URL", "http://b:6379"),
    ("EDGEMATCH_API_URL", "ftp://example.com/photodna"),
    ("EDGEMATCH_API_URL", "api.example.com/photodna"),
    ("EDGEMATCH_API_URL", "https://"),
    ("EDGEMATCH_API_URL", "http:///photodna"),
    ("EDGEMATCH_SQS_QUEUE_URL", "sqs://events"),
    ("EDGEMATCH_SQS_QUEUE_URL", "edgematch-events"),
    ("EDGEMATCH_API_OPERATION", "matchedgehash"),
    ("EDGEMATCH_API_OPERATION", "Match"),
    ("EDGEMATCH_API_OPERATION", "MatchEdgeHashes"),
    ("EDGEMATCH_RATE_LIMIT", "0"),
    ("EDGEMATCH_RATE_LIMIT", "-1"),
    ("EDGEMATCH_RATE_LIMIT", "fast"),
    ("EDGEMATCH_RATE_LIMIT", "5/s"),
    ("EDGEMATCH_RATE_LIMIT", "nan"),
    ("EDGEMATCH_RATE_LIMIT", "inf"),
    ("EDGEMATCH_BATCH_LINGER_MS", "-1"),
    ("EDGEMATCH_BATCH_LINGER_MS", "2.5"),
    ("EDGEMATCH_BATCH_LINGER_MS", "250ms"),
    ("EDGEMATCH_MAX_HASH_BYTES", "0"),
    ("EDGEMATCH_MAX_HASH_BYTES", "-5"),
    ("EDGEMATCH_MAX_HASH_BYTES", "4k"),
    ("EDGEMATCH_MAX_HASH_BYTES", "1e3"),
    ("EDGEMATCH_RESULT_TAG", "t" * 129),
    ("EDGEMATCH_NAMESPACE", "a:b"),
    ("EDGEMATCH_NAMESPACE", "a b"),
    ("EDGEMATCH_NAMESPACE", "ns/1"),
    ("EDGEMATCH_NAMESPACE", "a.b"),
    ("EDGEMATCH_NAMESPACE", "ns{1}"),
    ("EDGEMATCH_API_TIMEOUT_S", "0"),
    ("EDGEMATCH_API_TIMEOUT_S", "-1"),
    ("EDGEMATCH_API_TIMEOUT_S", "ten"),
    ("EDGEMATCH_API_TIMEOUT_S", "inf"),
    ("EDGEMATCH_API_CONNECT_TIMEOUT_S", "0"),
    ("EDGEMATCH_API_CONNECT_TIMEOUT_S", "3s"),
    ("EDGEMATCH_TLS_VERIFY", "maybe"),
    ("EDGEMATCH_TLS_VERIFY", "2"),
    ("EDGEMATCH_TLS_VERIFY", "tru"),
    ("EDGEMATCH_BATCH_SIZE", "0"),
    ("EDGEMATCH_BATCH_SIZE", "6"),
    ("EDGEMATCH_BATCH_SIZE", "five"),
    ("EDGEMATCH_LEASE_S", "0"),
    ("EDGEMATCH_LEASE_S", "-3"),
    ("EDGEMATCH_LEASE_S", "1m"),
    ("EDGEMATCH_MAX_ATTEMPTS", "0"),
    ("EDGEMATCH_MAX_ATTEMPTS", "1.5"),
    ("EDGEMATCH_MAX_DELIVERIES", "0"),
    ("EDGEMATCH_MAX_DELIVERIES", "three"),
    ("EDGEMATCH_DEAD_LETTER_LIMIT", "0"),
    ("EDGEMATCH_DEAD_LETTER_LIMIT", "1e5"),
    ("EDGEMATCH_BACKOFF_BASE_S", "0"),
    ("EDGEMATCH_BACKOFF_BASE_S", "x"),
    ("EDGEMATCH_BACKOFF_CAP_S", "-1"),
    ("EDGEMATCH_BACKOFF_CAP_S", "nan"),
    ("EDGEMATCH_BREAKER_PROBE_S", "0"),
    ("EDGEMATCH_BREAKER_PROBE_S", "-inf"),
    ("EDGEMATCH_LOCK_TTL_S", "0"),
    ("EDGEMATCH_LOCK_TTL_S", "inf"),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "1"),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "1.5"),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "-0.1"),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "nan"),
    ("EDGEMATCH_RATE_LIMIT_MARGIN", "2%"),
    ("EDGEMATCH_MATCH_PUMPS", "0"),
    ("EDGEMATCH_MATCH_PUMPS", "-2"),
    ("EDGEMATCH_MATCH_PUMPS", "many"),
    ("EDGEMATCH_PUMP_MAX_S", "0"),
    ("EDGEMATCH_IDEMPOTENCY_TTL_S", "0"),
    ("EDGEMATCH_IDEMPOTENCY_TTL_S", "30d"),
    ("EDGEMATCH_INTAKE_HIGH_WATER", "0"),
    ("EDGEMATCH_INTAKE_HIGH_WATER", "1e4"),
    ("EDGEMATCH_INTAKE_BATCH", "0"),
    ("EDGEMATCH_INTAKE_BATCH", "11"),
    ("EDGEMATCH_INTAKE_WAIT_S", "-1"),
    ("EDGEMATCH_INTAKE_WAIT_S", "21"),
    ("EDGEMATCH_VISIBILITY_TIMEOUT_S", "0"),
    ("EDGEMATCH_VISIBILITY_TIMEOUT_S", "3600.5"),
    ("EDGEMATCH_VISIBILITY_TIMEOUT_S", "1h"),
    ("EDGEMATCH_LOG_FORMAT", "text"),
    ("EDGEMATCH_LOG_FORMAT", "yaml"),
    ("EDGEMATCH_LOG_LEVEL", "TRACE"),
    ("EDGEMATCH_LOG_LEVEL", "verbose"),
    ("EDGEMATCH_CLEAN_CACHE_TTL_S", "-1"),
    ("EDGEMATCH_CLEAN_CACHE_TTL_S", "1h"),
    ("EDGEMATCH_JOURNAL_GRACE_S", "0"),
    ("EDGEMATCH_CLEAN_CACHE_TTL_S", "1.5"),
    ("EDGEMATCH_MAX_COOLDOWN_S", "0"),
    ("EDGEMATCH_MAX_COOLDOWN_S", "1m"),
    ("EDGEMATCH_RESULT_TTL_S", "0"),
    ("EDGEMATCH_RESULT_TTL_S", "90d"),
    ("EDGEMATCH_VERDICT_LOG_FLUSH_S", "0"),
    ("EDGEMATCH_VERDICT_LOG_MAX_STAGED", "0"),
    ("EDGEMATCH_VERDICT_LOG_BUCKET", "Not_A_Bucket"),
    ("EDGEMATCH_MATCH_CACHE_TTL_S", "0"),
    ("EDGEMATCH_BACKGROUND_MIN_SHARE", "1"),
    ("EDGEMATCH_BACKGROUND_MIN_SHARE", "10%"),
    ("EDGEMATCH_WORKER_CONCURRENCY", "0"),
    ("EDGEMATCH_WORKER_CONCURRENCY", "lots"),
    ("EDGEMATCH_SHUTDOWN_GRACE_S", "0"),
    ("EDGEMATCH_SHUTDOWN_GRACE_S", "30s"),
    ("EDGEMATCH_METRICS_PORT", "0"),
    ("EDGEMATCH_METRICS_PORT", "65536"),
    ("EDGEMATCH_METRICS_PORT", "http"),
    ("EDGEMATCH_GATE", "enabled"),
    ("EDGEMATCH_TAG_CLEAN", "clean"),
    ("EDGEMATCH_QUARANTINE_MODE", "delete"),
    ("EDGEMATCH_QUARANTINE_MODE", "Move"),
    ("EDGEMATCH_QUARANTINE_BUCKET", "Quarantine"),
    ("EDGEMATCH_QUARANTINE_BUCKET", "q"),
    ("EDGEMATCH_QUARANTINE_BUCKET", "a..b"),
    ("EDGEMATCH_EVIDENCE_RETENTION_DAYS", "-1"),
    ("EDGEMATCH_EVIDENCE_RETENTION_DAYS", "36501"),
    ("EDGEMATCH_REPORTS_BUCKET", "s3://reports"),
    ("EDGEMATCH_REPORTER", "email"),
    ("EDGEMATCH_REPORT_WEBHOOK_URL", "http://hooks.example/r"),
    ("EDGEMATCH_REPORT_WEBHOOK_URL", "hooks.example/r"),
    ("EDGEMATCH_REPORT_TEST", "maybe"),
    ("EDGEMATCH_REVIEW", "always"),
    ("EDGEMATCH_REVIEW_LINK_S", "0"),
    ("EDGEMATCH_REVIEW_LINK_S", "86400"),
    ("EDGEMATCH_FLOOD_MATCHES", "0"),
    ("EDGEMATCH_FLOOD_WINDOW_S", "1d"),
    ("EDGEMATCH_WEBHOOK_PORT", "0"),
    ("EDGEMATCH_WEBHOOK_PORT", "http"),
    ("EDGEMATCH_WEBHOOK_MAX_BODY_BYTES", "0"),
    ("EDGEMATCH_WEBHOOK_RETRY_AFTER_S", "-5"),
    ("EDGEMATCH_WEBHOOK_ENQUEUE_TIMEOUT_S", "0"),
    ("EDGEMATCH_WEBHOOK_MAX_CONNECTIONS", "many"),
]


@pytest.mark.parametrize(("var", "raw"), BAD_VALUES)
def test_malformed_value_names_the_variable(var: str, raw: str) -> None:
    """A malformed value raises ConfigurationError whose message starts with the variable."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({var: raw})
    assert str(info.value).startswith(f"{var}: ")


def test_every_variable_has_a_parsed_case() -> None:
    """The good-value table covers every declared variable but the secrets (tested below)."""
    parsed = {var for var, *_ in GOOD_VALUES}
    assert parsed == {v.name for v in variables() if not v.spec.secret}


def test_every_parsed_variable_has_a_malformed_case() -> None:
    """The malformed-value table covers every variable that has a malformed value."""
    parsed = {var for var, *_ in GOOD_VALUES}
    # Any non-blank text (a suffix, a name, a key id) and any list of buckets are valid.
    no_bad_value = {v.name for v in variables() if v.spec.parse in (parsers.non_empty, parsers.csv)}
    assert no_bad_value == {
        "EDGEMATCH_HASH_SUFFIX",
        "EDGEMATCH_ALLOWED_BUCKETS",
        "EDGEMATCH_SENTINEL_MASTER",
        "EDGEMATCH_REPORTS_KMS_KEY_ID",
        "EDGEMATCH_REPORT_ORG_NAME",
        "EDGEMATCH_REPORT_REPORTER_NAME",
        "EDGEMATCH_WEBHOOK_HOST",
        "EDGEMATCH_WEBHOOK_TLS_CERTFILE",
        "EDGEMATCH_WEBHOOK_TLS_KEYFILE",
    }
    assert parsed - no_bad_value == {var for var, _ in BAD_VALUES}


# --- the subscription key ----------------------------------------------------------------


def test_key_from_variable_is_stripped() -> None:
    """EDGEMATCH_SUBSCRIPTION_KEY is read, stripped of whitespace, and wrapped in a Secret."""
    settings = Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY": f"  {KEY}\n"})
    assert isinstance(settings.subscription_key, Secret)
    assert settings.subscription_key.reveal() == KEY


def test_key_file_is_read_and_stripped(tmp_path: Path) -> None:
    """EDGEMATCH_SUBSCRIPTION_KEY_FILE is read once and stripped of surrounding whitespace."""
    key_file = tmp_path / "key"
    key_file.write_text(f"\n  {KEY}  \n\n", encoding="utf-8")
    settings = Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file)})
    assert settings.require_subscription_key().reveal() == KEY
    key_file.write_text("changed", encoding="utf-8")
    assert settings.require_subscription_key().reveal() == KEY


def test_missing_key_file_names_the_variable(tmp_path: Path) -> None:
    """A key file that does not exist is a ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(tmp_path / "absent")})
    assert str(info.value).startswith("EDGEMATCH_SUBSCRIPTION_KEY_FILE: ")


def test_directory_as_key_file_names_the_variable(tmp_path: Path) -> None:
    """A key file path that is a directory is a ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(tmp_path)})
    assert str(info.value).startswith("EDGEMATCH_SUBSCRIPTION_KEY_FILE: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_key_file_names_the_variable(tmp_path: Path) -> None:
    """A key file without read permission is a ConfigurationError naming the variable."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    key_file.chmod(0)
    try:
        with pytest.raises(ConfigurationError) as info:
            Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file)})
    finally:
        key_file.chmod(0o600)
    assert str(info.value).startswith("EDGEMATCH_SUBSCRIPTION_KEY_FILE: ")


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_key_file_names_the_variable(tmp_path: Path, content: str) -> None:
    """An empty (or whitespace-only) key file is a ConfigurationError naming the variable."""
    key_file = tmp_path / "key"
    key_file.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file)})
    assert str(info.value).startswith("EDGEMATCH_SUBSCRIPTION_KEY_FILE: ")


def test_non_utf8_key_file_names_the_variable(tmp_path: Path) -> None:
    """A key file that is not UTF-8 text is a ConfigurationError naming the variable."""
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfe" + KEY.encode())
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file)})
    assert str(info.value).startswith("EDGEMATCH_SUBSCRIPTION_KEY_FILE: ")


def test_key_and_key_file_together_is_an_error(tmp_path: Path) -> None:
    """Setting both the key and the key file is an error naming both variables."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(
            {
                "EDGEMATCH_SUBSCRIPTION_KEY": KEY,
                "EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file),
            }
        )
    message = str(info.value)
    assert "EDGEMATCH_SUBSCRIPTION_KEY_FILE" in message
    assert "EDGEMATCH_SUBSCRIPTION_KEY " in message
    assert KEY not in message


def test_key_never_shows_in_settings_repr_or_str(tmp_path: Path) -> None:
    """Neither repr(settings) nor str(settings) contains the subscription key."""
    direct = Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY": KEY})
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    from_file = Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file)})
    for settings in (direct, from_file):
        assert settings.require_subscription_key().reveal() == KEY
        assert KEY not in repr(settings)
        assert KEY not in str(settings)
        assert KEY not in f"{settings}"


def test_secret_hides_its_value() -> None:
    """repr(), str() and format() of a Secret never show the value; reveal() does."""
    secret = Secret(KEY)
    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret}"
    assert KEY not in repr([secret])
    assert "*" in repr(secret)
    assert secret.reveal() == KEY


def test_secret_equality_and_truth() -> None:
    """Secrets compare by value, and an empty Secret is falsy."""
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret(KEY + "x")
    assert Secret(KEY) != KEY
    assert bool(Secret(KEY)) is True
    assert bool(Secret("")) is False


def test_require_subscription_key() -> None:
    """require_subscription_key returns the key, or names both variables when it is unset."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}).require_subscription_key()
    assert "EDGEMATCH_SUBSCRIPTION_KEY" in str(info.value)
    assert "EDGEMATCH_SUBSCRIPTION_KEY_FILE" in str(info.value)
    with pytest.raises(ConfigurationError):
        Settings(subscription_key=Secret("")).require_subscription_key()
    key = Settings.from_env({"EDGEMATCH_SUBSCRIPTION_KEY": KEY}).require_subscription_key()
    assert key == Secret(KEY)


def test_require_sqs_queue_url() -> None:
    """require_sqs_queue_url returns the URL, or names the variable when it is unset."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}).require_sqs_queue_url()
    assert str(info.value).startswith("EDGEMATCH_SQS_QUEUE_URL")
    url = "http://127.0.0.1:4566/000000000000/events"
    assert Settings.from_env({"EDGEMATCH_SQS_QUEUE_URL": url}).require_sqs_queue_url() == url


SECRET_VARIABLES = [v.name for v in variables() if v.spec.secret]


@pytest.mark.parametrize("var", SECRET_VARIABLES)
def test_every_secret_comes_from_its_variable_or_its_file(var: str, tmp_path: Path) -> None:
    """Each secret is read, stripped, from its variable or from the file VAR_FILE names, and
    is a Secret that shows in no repr; both at once is refused naming both."""
    field_name = next(str(v.field) for v in variables() if v.name == var)
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"  {KEY}\n", encoding="utf-8")
    for env in ({var: f" {KEY} "}, {f"{var}_FILE": str(secret_file)}):
        settings = Settings.from_env(env)
        assert getattr(settings, field_name) == Secret(KEY)
        assert KEY not in repr(settings)
        assert Secret(KEY) in settings.secrets()
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({var: KEY, f"{var}_FILE": str(secret_file)})
    assert str(info.value) == f"set {var} or {var}_FILE, not both"


# --- variables edgematch does not read ----------------------------------------------------------


def test_an_unknown_variable_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """A misspelt EDGEMATCH_* variable is logged with the name it resembles, never its value,
    and the process starts on the defaults."""
    caplog.set_level(logging.WARNING, logger="edgematch.config")
    settings = Settings.from_env({"EDGEMATCH_RATE_LIMT": "secret-looking-777"})
    assert settings.rate_limit_per_s == 5.0
    [record] = [r for r in caplog.records if r.name.startswith("edgematch.config")]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "EDGEMATCH_RATE_LIMT" in message and "EDGEMATCH_RATE_LIMIT?" in message
    assert "secret-looking-777" not in message


def test_an_unknown_variable_is_reported_once_a_process(caplog: pytest.LogCaptureFixture) -> None:
    """Settings are read several times a process (CLI, Celery app, runtime): one warning."""
    caplog.set_level(logging.WARNING, logger="edgematch.config")
    for _ in range(3):
        Settings.from_env({"EDGEMATCH_NOT_A_SETTING_ONCE": "1"})
    assert len([r for r in caplog.records if "EDGEMATCH_NOT_A_SETTING_ONCE" in r.getMessage()]) == 1


def test_every_known_variable_is_read_without_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Neither a declared variable, nor a secret's _FILE, nor one another module reads (the
    heartbeat directory, the process name …) is reported; other names are, AWS_* are not ours."""
    caplog.set_level(logging.WARNING, logger="edgematch.config")
    key_file = tmp_path / "key"
    key_file.write_text(KEY, encoding="utf-8")
    env = {name: "" for name in known_names()}
    env.update({"EDGEMATCH_SUBSCRIPTION_KEY_FILE": str(key_file), "AWS_DEFAULT_REGION": "x"})
    Settings.from_env(env)
    assert not [r for r in caplog.records if r.name.startswith("edgematch.config")]
    assert "EDGEMATCH_HEARTBEAT_DIR" in known_names()
    assert "EDGEMATCH_NAMESPACE_FILE" not in known_names()


# --- cross-field checks ------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        # lease 15 + API timeout 10 + backoff cap 300 = 325: equal is not enough.
        {"EDGEMATCH_VISIBILITY_TIMEOUT_S": "325"},
        {"EDGEMATCH_VISIBILITY_TIMEOUT_S": "100"},
        {"EDGEMATCH_BACKOFF_CAP_S": "3600"},
        {"EDGEMATCH_LEASE_S": "3300"},
        {"EDGEMATCH_API_TIMEOUT_S": "3300", "EDGEMATCH_LEASE_S": "3304"},
    ],
)
def test_visibility_timeout_must_exceed_longest_task(env: dict[str, str]) -> None:
    """A visibility timeout not above lease + API timeout + backoff cap names the variable."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith("EDGEMATCH_VISIBILITY_TIMEOUT_S")


@pytest.mark.parametrize(
    "env",
    [
        {"EDGEMATCH_VISIBILITY_TIMEOUT_S": "326"},
        {"EDGEMATCH_BACKOFF_CAP_S": "3574"},
        {"EDGEMATCH_VISIBILITY_TIMEOUT_S": "4000", "EDGEMATCH_BACKOFF_CAP_S": "3000"},
    ],
)
def test_visibility_timeout_just_above_longest_task_is_accepted(env: dict[str, str]) -> None:
    """A visibility timeout above lease + API timeout + backoff cap is accepted."""
    settings = Settings.from_env(env)
    assert settings.visibility_timeout_s > (
        settings.lease_s + settings.api_timeout_s + settings.backoff_cap_s
    )


@pytest.mark.parametrize(
    "env",
    [
        {"EDGEMATCH_LEASE_S": "5"},
        {"EDGEMATCH_API_TIMEOUT_S": "57"},
        {"EDGEMATCH_API_CONNECT_TIMEOUT_S": "50"},
    ],
)
def test_a_lease_shorter_than_a_request_is_accepted(env: dict[str, str]) -> None:
    """The lease is renewed while its request runs (pipeline/buffer.py), so it need not
    outlast the API's read and connect timeouts."""
    settings = Settings.from_env(env)
    assert settings.lease_s < settings.api_timeout_s + settings.api_connect_timeout_s


@pytest.mark.parametrize(
    "env",
    [
        {"EDGEMATCH_IDEMPOTENCY_TTL_S": "3600"},
        {"EDGEMATCH_IDEMPOTENCY_TTL_S": "1800", "EDGEMATCH_RESULT_TTL_S": "600"},
        {"EDGEMATCH_VISIBILITY_TIMEOUT_S": "21600"},
    ],
)
def test_the_window_must_outlast_the_brokers_redelivery(env: dict[str, str]) -> None:
    """An idempotency window not above the visibility timeout names both variables: the
    broker may deliver an ingest task again that late."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith("EDGEMATCH_IDEMPOTENCY_TTL_S")
    assert "EDGEMATCH_VISIBILITY_TIMEOUT_S" in str(info.value)


def test_results_in_redis_stay_within_the_window() -> None:
    """A hot window longer than the idempotency window is refused: nothing kept per scanned
    hash may outlive it; the same length is accepted."""
    with pytest.raises(ConfigurationError, match=r"^EDGEMATCH_RESULT_TTL_S .*IDEMPOTENCY"):
        Settings.from_env({"EDGEMATCH_RESULT_TTL_S": str(6 * 3600 + 1)})
    settings = Settings.from_env({"EDGEMATCH_RESULT_TTL_S": str(6 * 3600)})
    assert settings.result_ttl_s == settings.idempotency_ttl_s


def test_the_verdict_log_shares_the_reports_bucket_unless_told() -> None:
    """Without EDGEMATCH_VERDICT_LOG_BUCKET the log goes to the reports bucket."""
    assert Settings.from_env({}).verdict_log_bucket is None
    shared = Settings.from_env({"EDGEMATCH_REPORTS_BUCKET": "reports"})
    assert shared.verdict_log_bucket == "reports"
    own = Settings.from_env(
        {"EDGEMATCH_REPORTS_BUCKET": "reports", "EDGEMATCH_VERDICT_LOG_BUCKET": "audit"}
    )
    assert own.verdict_log_bucket == "audit"


def test_validated_checks_directly_built_settings() -> None:
    """Settings(...).validated() applies the same cross-field checks as from_env."""
    with pytest.raises(ConfigurationError, match=r"^EDGEMATCH_VISIBILITY_TIMEOUT_S"):
        Settings(visibility_timeout_s=60).validated()
    fine = Settings()
    assert fine.validated() is fine


# --- the CLI contract --------------------------------------------------------------------


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it, in a process of its own: the tests that call this are
    marked integration (the fast tier starts no process)."""
    controlled = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        # Never the machine's shared Redis, should a command try to connect.
        "EDGEMATCH_REDIS_URL": "redis://127.0.0.1:9/0",
    }
    controlled.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", *args],
        env=controlled,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("EDGEMATCH_RATE_LIMIT", "fast"),
        ("EDGEMATCH_BROKER_URL", "kafka://broker:9092"),
        ("EDGEMATCH_VISIBILITY_TIMEOUT_S", "60"),
    ],
)
def test_cli_config_bad_variable_exits_2(var: str, raw: str) -> None:
    """`edgematch config` with a bad variable exits 2 and names it on stderr, no traceback."""
    proc = _run_cli("config", env={var: raw})
    assert proc.returncode == 2
    assert var in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.integration
def test_cli_config_bad_worker_concurrency_exits_2() -> None:
    """`edgematch config` refuses a malformed EDGEMATCH_WORKER_CONCURRENCY like any variable."""
    proc = _run_cli("config", env={"EDGEMATCH_WORKER_CONCURRENCY": "lots"})
    assert proc.returncode == 2
    assert "EDGEMATCH_WORKER_CONCURRENCY" in proc.stderr


@pytest.mark.integration
def test_cli_config_masks_the_key() -> None:
    """`edgematch config` prints the effective settings as JSON with the key masked."""
    proc = _run_cli(
        "config", env={"EDGEMATCH_SUBSCRIPTION_KEY": KEY, "EDGEMATCH_RATE_LIMIT": "7.5"}
    )
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert KEY not in proc.stdout
    assert KEY not in proc.stderr
    assert doc["subscription_key"]
    assert "*" in doc["subscription_key"]
    assert doc["rate_limit_per_s"] == 7.5
    assert doc["redis_url"] == "redis://127.0.0.1:9/0"
    assert doc["broker_url"] == "redis://127.0.0.1:9/0"


@pytest.mark.integration
def test_cli_help_lists_commands() -> None:
    """`edgematch --help` exits 0 and lists every process type and tool."""
    proc = _run_cli("--help")
    assert proc.returncode == 0
    for command in ("intake", "worker", "beat", "result", "config"):
        assert command in proc.stdout


@pytest.mark.integration
def test_cli_result_rejects_a_non_s3_uri() -> None:
    """`edgematch result not-a-uri` exits 2 with a message, before touching Redis."""
    proc = _run_cli("result", "not-a-uri")
    assert proc.returncode == 2
    assert "s3://" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("review", "reporter", "required"),
    [
        ("auto", "record", False),
        ("auto", "webhook", True),
        ("auto", "photodna", True),
        ("required", "record", True),
        ("off", "photodna", False),
    ],
)
def test_review_is_required_by_default_where_a_report_leaves(
    review: str, reporter: str, required: bool
) -> None:
    """EDGEMATCH_REVIEW=auto holds the reports a reporter sends to another party."""
    settings = Settings(review=review, reporter=reporter)
    assert settings.review_required is required
