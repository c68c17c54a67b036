"""One exception tree, split by who must react.

::

    EdgematchError
    ├── ConfigurationError        refuse to start; a person must fix a variable
    ├── CredentialError           401/403: pause every API call of the pool (circuit breaker)
    ├── TransientError            retry with backoff; nothing is wrong with the item
    │   ├── RateLimited           429: a shared cooldown of ``retry_after_s`` for the pool
    │   ├── ServerError           5xx, or a body we cannot read
    │   ├── TransportError        timeouts, refused or dropped connections
    │   ├── ItemTransient         one item answered 3004 (or was missing from the answer)
    │   └── RedisUnavailable      any Redis error: down, failing over, READONLY, BUSY …
    │                             (infra/redisclient.py, the Redis boundary)
    └── PermanentError            give up on this item only: result ``unscannable``
        ├── ItemRejected          one item answered 3002, 3206, 3208 …
        ├── RequestRejected       the whole request refused (3209, other 4xx)
        ├── ObjectMissing         the object an event names no longer exists
        └── BadInput              input that can never succeed: oversized or empty
                                  hash file, malformed event, key outside the allow-list

Third-party exceptions (httpx, botocore, redis) are translated into this tree at one
boundary each (``raise TransportError(...) from exc``), never leaked to callers.
Messages never carry a subscription key, credentials or hash bytes.
"""

from __future__ import annotations


class EdgematchError(Exception):
    """Root of every error edgematch raises on purpose."""

    #: A short machine-readable class, used in results and dead letters.
    reason: str = "error"


class ConfigurationError(EdgematchError):
    """A setting is missing or malformed; the process refuses to start."""

    reason = "configuration"


class CredentialError(EdgematchError):
    """The API refused our subscription key (HTTP 401 or 403)."""

    reason = "credentials"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class TransientError(EdgematchError):
    """Worth another try later; the item itself is fine."""

    reason = "transient"


class RateLimited(TransientError):
    """HTTP 429. ``retry_after_s`` is the cooldown the whole pool must honour."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServerError(TransientError):
    """HTTP 5xx, or an answer that is not what the API documents."""

    reason = "server_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class TransportError(TransientError):
    """The request did not complete: timeout, refused or dropped connection."""

    reason = "transport"


class ItemTransient(TransientError):
    """One item of a batch failed transiently (status 3004, or missing from the answer)."""

    reason = "item_transient"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class PermanentError(EdgematchError):
    """Will never succeed as it is: give up on the item, keep it for inspection."""

    reason = "permanent"


class ItemRejected(PermanentError):
    """The API refused one item for good (3002, 3206, 3208 …)."""

    reason = "item_rejected"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RequestRejected(PermanentError):
    """The API refused the whole request for good (3209, or a 4xx other than 401/403/429)."""

    reason = "request_rejected"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BadInput(PermanentError):
    """Input that can never be scanned: a malformed event, an empty or oversized hash file."""

    reason = "bad_input"


class ObjectMissing(PermanentError):
    """The object an event names is gone (deleted before we could read it).

    ``delete_marker``: S3 said the key's current version is a delete marker, so older
    versions of it may still be stored (and readable by version id).
    """

    reason = "object_missing"

    def __init__(self, message: str, *, delete_marker: bool = False) -> None:
        super().__init__(message)
        self.delete_marker = delete_marker
