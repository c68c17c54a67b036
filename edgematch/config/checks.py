"""Cross-field checks: what no single variable's parser can refuse.

Each check is a small function of the whole Settings that raises ConfigurationError naming
the variables involved; :data:`CHECKS` runs them in order, the first failure stops start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from edgematch.errors import ConfigurationError

if TYPE_CHECKING:  # settings.py imports this module
    from edgematch.config.settings import Settings


def sentinel_has_a_master(s: Settings) -> None:
    """A sentinel:// URL names the sentinels; kombu and redis-py also need the master's name."""
    for name, url in (("EDGEMATCH_REDIS_URL", s.redis_url), ("EDGEMATCH_BROKER_URL", s.broker_url)):
        if url.startswith("sentinel://") and not s.sentinel_master:
            raise ConfigurationError(
                f"EDGEMATCH_SENTINEL_MASTER is required with a sentinel:// {name} "
                "(the name of the monitored master, as in sentinel.conf)"
            )


def visibility_timeout_outlasts_tasks(s: Settings) -> None:
    """The broker redelivers a task unacknowledged for that long, even one still running
    (Redis only: RabbitMQ redelivers nothing while its consumer lives)."""
    if not s.broker.visibility_timeout:
        return
    longest_task_s = s.lease_s + s.api_timeout_s + s.backoff_cap_s
    if s.visibility_timeout_s <= longest_task_s:
        raise ConfigurationError(
            f"EDGEMATCH_VISIBILITY_TIMEOUT_S ({s.visibility_timeout_s}) must exceed the "
            f"longest task plus retry countdown ({longest_task_s:.0f} s): a shorter one "
            "makes the broker deliver running tasks twice"
        )


def the_window_outlasts_redeliveries(s: Settings) -> None:
    """The broker hands an unacknowledged ingest task out again up to the visibility timeout
    later; that second delivery must still find the object version remembered."""
    if s.idempotency_ttl_s <= s.visibility_timeout_s:
        raise ConfigurationError(
            f"EDGEMATCH_IDEMPOTENCY_TTL_S ({s.idempotency_ttl_s}) must exceed "
            f"EDGEMATCH_VISIBILITY_TIMEOUT_S ({s.visibility_timeout_s}): a task the broker "
            "delivers again after the window would be scanned twice"
        )


def results_stay_within_the_window(s: Settings) -> None:
    """Nothing kept in Redis per scanned hash outlives the idempotency window."""
    if s.result_ttl_s > s.idempotency_ttl_s:
        raise ConfigurationError(
            f"EDGEMATCH_RESULT_TTL_S ({s.result_ttl_s}) must not exceed "
            f"EDGEMATCH_IDEMPOTENCY_TTL_S ({s.idempotency_ttl_s}): results older than the "
            "window are read from the verdict log"
        )


def move_has_a_bucket(s: Settings) -> None:
    if s.quarantine_mode == "move" and not s.quarantine_bucket:
        raise ConfigurationError("EDGEMATCH_QUARANTINE_MODE=move needs EDGEMATCH_QUARANTINE_BUCKET")


def quarantine_is_not_an_upload_bucket(s: Settings) -> None:
    """Quarantined copies must not land where uploads are scanned (and served) from."""
    if s.quarantine_bucket and s.quarantine_bucket in s.allowed_buckets:
        raise ConfigurationError(
            f"EDGEMATCH_QUARANTINE_BUCKET ({s.quarantine_bucket}) must not be an upload "
            "bucket listed in EDGEMATCH_ALLOWED_BUCKETS"
        )


def reporter_has_what_it_needs(s: Settings) -> None:
    needed: dict[str, object] = {}
    if s.reporter == "webhook":
        needed = {
            "EDGEMATCH_REPORT_WEBHOOK_URL": s.report_webhook_url,
            "EDGEMATCH_REPORT_WEBHOOK_SECRET": s.report_webhook_secret,
        }
    elif s.reporter == "photodna":
        needed = {
            "EDGEMATCH_REPORT_USER": s.report_user,
            "EDGEMATCH_REPORT_PASSWORD": s.report_password,
            "EDGEMATCH_REPORT_ORG_NAME": s.report_org_name,
            "EDGEMATCH_REPORT_REPORTER_NAME": s.report_reporter_name,
        }
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise ConfigurationError(f"EDGEMATCH_REPORTER={s.reporter} needs {' and '.join(missing)}")


#: In the order they run: connection first, then the pipeline, then downstream.
CHECKS: Final[tuple[Callable[[Settings], None], ...]] = (
    sentinel_has_a_master,
    visibility_timeout_outlasts_tasks,
    the_window_outlasts_redeliveries,
    results_stay_within_the_window,
    move_has_a_bucket,
    quarantine_is_not_an_upload_bucket,
    reporter_has_what_it_needs,
)
