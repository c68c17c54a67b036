"""Celery's own per-task lines, "Task … received" and "Task … succeeded", at DEBUG.

At INFO they are two lines a task, several tasks a hash: a log volume a hash and the CPU
to format them, for lines that say nothing our own events do not. Failures (ERROR) and
retries (INFO, "Task … retry") keep their levels.

Celery offers no setting for this. ``celery.app.trace`` writes every line of a task's
outcome through one module function, ``info``, looked up at each call: we replace it with
one that writes the success line at DEBUG. ``celery.worker.strategy`` binds
``logger.info`` when a worker starts and writes only the "received" line at INFO (its
other line is an ERROR), so its logger is held at WARNING unless the level is DEBUG.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.app import trace

_TRACE = logging.getLogger("celery.app.trace")
_STRATEGY = logging.getLogger("celery.worker.strategy")


def _info(fmt: str, context: Any) -> None:
    level = logging.DEBUG if fmt is trace.LOG_SUCCESS else logging.INFO
    if _TRACE.isEnabledFor(level):
        _TRACE.log(level, fmt, context, extra={"data": context})


def install(level: str) -> None:
    """Write Celery's received and succeeded lines only when ``level`` is DEBUG.

    Call before the worker starts consuming (its strategies read the level once).
    Idempotent.
    """
    setattr(trace, "info", _info)  # noqa: B010 - celery-types does not declare it
    debug = logging.getLevelName(level.upper()) == logging.DEBUG
    _STRATEGY.setLevel(logging.DEBUG if debug else logging.WARNING)
