"""Parsers of single setting values: ``str -> value``, raising ValueError with the reason.

Each is pure and sees one variable's stripped, non-blank text; the reader
(:mod:`edgematch.config.environ`) puts the variable's name in front of the reason, so a
message reads ``EDGEMATCH_RATE_LIMIT: expected a positive number, got 'fast'``. A value
that passes here may still be refused by a cross-field check
(:mod:`edgematch.config.checks`).
"""

from __future__ import annotations

import math
import re
from typing import Final
from urllib.parse import urlsplit

#: The match operations the API offers for hashes computed on the platform's side.
OPERATIONS: Final = ("MatchEdgeHash", "MatchHash")


def redis_url(raw: str) -> str:
    """A Redis (or Redis broker) URL: ``redis://``, ``rediss://``, ``sentinel://``, ``unix://``."""
    scheme = urlsplit(raw).scheme
    if scheme not in ("redis", "rediss", "sentinel", "unix"):
        raise ValueError(
            f"expected a redis://, rediss://, sentinel:// or unix:// URL, got scheme {scheme!r}"
        )
    return raw


def http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http:// or https:// URL, got {raw!r}")
    return raw


def base_url(raw: str) -> str:
    """An http(s) URL that paths are appended to, so without a trailing slash."""
    return http_url(raw).rstrip("/")


def webhook_url(raw: str) -> str:
    url = http_url(raw)
    host = (urlsplit(url).hostname or "").lower()
    # A report names matched content: it never travels in clear text off this machine.
    if urlsplit(url).scheme != "https" and host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"expected an https:// URL (http:// only for localhost), got {raw!r}")
    return url


def operation(raw: str) -> str:
    if raw not in OPERATIONS:
        raise ValueError(f"expected one of {', '.join(OPERATIONS)}, got {raw!r}")
    return raw


def number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def positive_float(raw: str) -> float:
    value = number(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number, got {raw!r}")
    return value


def rate(raw: str) -> float:
    value = positive_float(raw)
    if value < 0.001:
        raise ValueError(f"expected at least 0.001 requests per second, got {raw!r}")
    return value


def fraction(raw: str) -> float:
    value = number(raw)
    if not 0 <= value < 1:
        raise ValueError(f"expected a number in [0, 1), got {raw!r}")
    return value


def whole(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def positive_int(raw: str) -> int:
    value = whole(raw)
    if value <= 0:
        raise ValueError(f"expected a positive whole number, got {raw!r}")
    return value


def non_negative_int(raw: str) -> int:
    value = whole(raw)
    if value < 0:
        raise ValueError(f"expected zero or a positive whole number, got {raw!r}")
    return value


def port(raw: str) -> int:
    value = whole(raw)
    if not 1 <= value <= 65535:
        raise ValueError(f"expected a TCP port from 1 to 65535, got {raw!r}")
    return value


def batch_size(raw: str) -> int:
    value = whole(raw)
    if not 1 <= value <= 5:
        raise ValueError(f"the API takes 1 to 5 hashes a request, got {raw!r}")
    return value


def sqs_batch(raw: str) -> int:
    value = whole(raw)
    if not 1 <= value <= 10:
        raise ValueError(f"SQS receives 1 to 10 messages a call, got {raw!r}")
    return value


def sqs_wait(raw: str) -> int:
    value = whole(raw)
    if not 0 <= value <= 20:
        raise ValueError(f"SQS long polls 0 to 20 seconds, got {raw!r}")
    return value


def retention_days(raw: str) -> int:
    value = non_negative_int(raw)
    # S3 Object Lock accepts at most 100 years.
    if value > 36_500:
        raise ValueError(f"expected at most 36500 days, got {raw!r}")
    return value


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def non_empty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def tag_key(raw: str) -> str:
    if len(raw) > 128:
        raise ValueError("an S3 tag key has at most 128 characters")
    return raw


def namespace(raw: str) -> str:
    if not all(c.isalnum() or c in "-_" for c in raw):
        raise ValueError(f"use letters, digits, '-' and '_' only, got {raw!r}")
    return raw


def csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def bucket_name(raw: str) -> str:
    if not _BUCKET_NAME.fullmatch(raw) or ".." in raw:
        raise ValueError(
            f"expected an S3 bucket name (3-63 lowercase letters, digits, '.' and '-'), got {raw!r}"
        )
    return raw


def one_of(*choices: str, upper: bool = False) -> _Choice:
    """A parser that accepts exactly ``choices`` (after upper-casing, with ``upper``)."""
    return _Choice(choices, upper)


class _Choice:
    def __init__(self, choices: tuple[str, ...], upper: bool) -> None:
        self.choices = choices
        self._upper = upper

    def __call__(self, raw: str) -> str:
        value = raw.upper() if self._upper else raw
        if value not in self.choices:
            raise ValueError(f"expected {_either(self.choices)}, got {raw!r}")
        return value


def _either(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


log_format = one_of("json", "console")
log_level = one_of("DEBUG", "INFO", "WARNING", "ERROR", upper=True)
quarantine_mode = one_of("move", "tag", "off")
reporter = one_of("record", "webhook", "photodna")
review = one_of("auto", "required", "off")


#: The longest a review link may live: a link is a bearer credential for the image.
MAX_REVIEW_LINK_S = 3600


def review_link_s(raw: str) -> int:
    """Seconds a pre-signed review link lives: 1 to an hour."""
    value = whole(raw)
    if not 1 <= value <= MAX_REVIEW_LINK_S:
        raise ValueError(f"expected 1 to {MAX_REVIEW_LINK_S} seconds, got {raw!r}")
    return value
