"""What one kind of process refuses to start without: each raises ConfigurationError
naming the variable (the CLI turns it into exit status 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from edgematch.errors import ConfigurationError

if TYPE_CHECKING:  # derived.py imports this module
    from edgematch.config.derived import Derived
    from edgematch.config.secret import Secret

#: The shortest webhook token accepted: a shared secret short enough to guess is none.
MIN_WEBHOOK_TOKEN_CHARS: Final = 16


def subscription_key(s: Derived) -> Secret:
    """The PhotoDNA subscription key (workers)."""
    if not s.subscription_key:
        raise ConfigurationError(
            "EDGEMATCH_SUBSCRIPTION_KEY or EDGEMATCH_SUBSCRIPTION_KEY_FILE is required"
        )
    return s.subscription_key


def webhook_token(s: Derived) -> Secret:
    """The webhook's token; refuses a missing or short one (a guessable shared secret)."""
    token = s.webhook_token
    if not token:
        raise ConfigurationError(
            "EDGEMATCH_WEBHOOK_TOKEN or EDGEMATCH_WEBHOOK_TOKEN_FILE is required for webhook"
        )
    if len(token.reveal()) < MIN_WEBHOOK_TOKEN_CHARS:
        raise ConfigurationError(
            f"EDGEMATCH_WEBHOOK_TOKEN must be at least {MIN_WEBHOOK_TOKEN_CHARS} characters "
            "(for example: openssl rand -hex 32)"
        )
    return token


def sqs_queue_url(s: Derived) -> str:
    """The SQS queue intake long-polls."""
    if not s.sqs_queue_url:
        raise ConfigurationError("EDGEMATCH_SQS_QUEUE_URL is required for intake")
    return s.sqs_queue_url
