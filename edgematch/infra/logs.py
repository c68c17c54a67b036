"""Structured logs: structlog for our events, stdlib (Celery, kombu, botocore) routed through it.

Production writes one JSON object a line; ``EDGEMATCH_LOG_FORMAT=console`` is for people.
Every task binds its correlation id (carried from the S3 event to the report) through
contextvars, cleared when the task ends. As a last line of defence, every registered
secret is masked in every rendered line, whatever field it hides in.
"""

from __future__ import annotations

import json
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
    """Mask ``value`` wherever it would appear in a log line. Short values are ignored.

    Lines are masked once rendered, so the forms a renderer writes a string in are
    registered too: JSON's escaping and ``repr``'s (the console renderer, reprs of
    containers and exceptions).
    """
    if value and len(value) >= 6:
        forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
        with _lock:
            _secrets.update(forms)


def _mask_rendered(_: Any, __: str, line: Any) -> str:
    """Mask every registered secret in a rendered line, whatever field it was in.

    One ``in`` scan of the line a secret: cheaper than walking (and repr-ing) every field
    of the event, and it cannot miss a field, a key or a nested value.
    """
    text = str(line)  # the renderer's output: a str, typed as an event dict by structlog
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


# One encoder made once: ``json.dumps`` with any argument builds a new encoder a call.
# Values JSON cannot hold are written as their repr (masked afterwards like the rest).
_ENCODER = json.JSONEncoder(default=repr)


def _render_json(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    return _ENCODER.encode(event_dict)


def configure(level: str = "INFO", fmt: str = "json", *, process: str | None = None) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once.

    Our events below the root logger's level are dropped before any processor runs
    (``filter_by_level`` first); the rest are formatted once, by the handler's formatter,
    and masked once, as a rendered line.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        shared.append(_add_process(process))
    renderer: Any = (
        _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
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
            renderer,
            _mask_rendered,
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
