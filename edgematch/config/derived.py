"""What Settings works out from its fields, and asks of them before a process starts.

:class:`Derived` is a mixin of :class:`~edgematch.config.settings.Settings`, which declares
every field; it holds the methods, so that the declarations stay one list read top to
bottom. The fields it reads are named here for the type checker only: they are declared,
read and documented in ``settings.py`` and ``downstream.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgematch.config import required
from edgematch.config.brokerkind import Capabilities, capabilities
from edgematch.config.declare import declared

if TYPE_CHECKING:
    from edgematch.config.secret import Secret


class Derived:
    """Values worked out from the fields, and what one kind of process cannot start without."""

    if TYPE_CHECKING:  # Settings' fields, declared there
        subscription_key: Secret | None
        webhook_token: Secret | None
        sqs_queue_url: str | None
        batch_linger_ms: int
        quarantine_mode: str | None
        quarantine_bucket: str | None
        reports_bucket: str | None
        verdict_log_bucket: str | None
        broker_url: str
        reporter: str
        review: str

    @property
    def effective_quarantine_mode(self) -> str:
        """The quarantine mode in force: the configured one, else move with a bucket, else tag."""
        if self.quarantine_mode:
            return self.quarantine_mode
        return "move" if self.quarantine_bucket else "tag"

    @property
    def review_required(self) -> bool:
        """Whether a report waits for a person's confirmation before it is submitted:
        EDGEMATCH_REVIEW ``required``, or ``auto`` with a reporter that sends the report to
        another party (``webhook``, ``photodna``)."""
        if self.review == "auto":
            return self.reporter in ("webhook", "photodna")
        return self.review == "required"

    @property
    def effective_verdict_log_bucket(self) -> str | None:
        """The verdict log's bucket: its own, else the reports bucket (also when Settings is
        built directly, not read from the environment)."""
        return self.verdict_log_bucket or self.reports_bucket

    @property
    def broker(self) -> Capabilities:
        """The broker's kind and which of edgematch's broker workarounds it needs
        (config/brokerkind.py)."""
        return capabilities(self.broker_url)

    @property
    def batch_linger_s(self) -> float:
        return self.batch_linger_ms / 1000.0

    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this process holds, for the log masker."""
        held = (getattr(self, v.field) for v in declared(type(self)) if v.spec.secret and v.field)
        return tuple(secret for secret in held if secret)

    # What one kind of process cannot start without (config/required.py); each raises
    # ConfigurationError naming the variable.
    def require_subscription_key(self) -> Secret:
        return required.subscription_key(self)

    def require_webhook_token(self) -> Secret:
        return required.webhook_token(self)

    def require_sqs_queue_url(self) -> str:
        return required.sqs_queue_url(self)
