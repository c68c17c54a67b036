"""Structured logs: structlog for our events, stdlib (Celery, kombu, botocore) routed through it.

Production writes one JSON object a line; ``EDGEMATCH_LOG_FORMAT=console`` is for people.
Every task binds its correlation id (carried from the S3 event to the report) through
contextvars, cleared when the task ends. As a last line of defence, every registered
secret is masked in every rendered line, whatever field it hides in.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import structlog

_secrets: set[str] = set()
_lock = threading.Lock()
_MASK = "**********"


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it would appear in a log line. Short values are ignored."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def _mask(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _mask_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = _mask(value)
        elif not isinstance(value, int | float | bool | type(None)):
            rendered = repr(value)
            masked = _mask(rendered)
            if masked != rendered:
                event_dict[key] = masked
    return event_dict


def configure(level: str = "INFO", fmt: str = "json", *, process: str | None = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        shared.append(_add_process(process))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _mask_secrets,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _mask_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request chatter from the HTTP and AWS libraries would drown the events that
    # matter, and botocore at DEBUG logs request headers.
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _add_process(name: str) -> Any:
    def add(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("process", name)
        return event_dict

    return add


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
