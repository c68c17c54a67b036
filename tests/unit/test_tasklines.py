"""Unit tests for edgematch.tasks.tasklines: Celery's per-task lines at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.app import trace

from edgematch.tasks import tasklines

_STRATEGY = "celery.worker.strategy"


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    """Put back Celery's trace.info and the strategy logger's level."""
    info = trace.info
    level = logging.getLogger(_STRATEGY).level
    yield
    setattr(trace, "info", info)  # noqa: B010
    logging.getLogger(_STRATEGY).setLevel(level)


def _context() -> dict[str, object]:
    return {"id": "t1", "name": "edgematch.scan", "return_value": None, "runtime": 0.1}


def test_succeeded_line_is_debug_retry_stays_info(caplog: pytest.LogCaptureFixture) -> None:
    """After install, the success line is written at DEBUG, the retry line still at INFO."""
    tasklines.install("INFO")
    caplog.set_level(logging.DEBUG, logger="celery.app.trace")
    trace.info(trace.LOG_SUCCESS, _context())
    trace.info(trace.LOG_RETRY, {**_context(), "exc": "boom"})
    levels = [(r.levelno, r.getMessage().split()[-1]) for r in caplog.records]
    assert [level for level, _ in levels] == [logging.DEBUG, logging.INFO]
    assert "succeeded" in caplog.records[0].getMessage()
    assert "retry" in caplog.records[1].getMessage()


def test_succeeded_line_is_dropped_at_info(caplog: pytest.LogCaptureFixture) -> None:
    """At INFO the success line is not written at all; a retry still is."""
    tasklines.install("INFO")
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    trace.info(trace.LOG_SUCCESS, _context())
    trace.info(trace.LOG_RETRY, {**_context(), "exc": "boom"})
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_received_line_follows_the_level() -> None:
    """The strategy logger (its only INFO line is "received") is held at WARNING unless
    the level is DEBUG; its ERROR line is kept either way."""
    strategy = logging.getLogger(_STRATEGY)
    tasklines.install("INFO")
    assert not strategy.isEnabledFor(logging.INFO)
    assert strategy.isEnabledFor(logging.ERROR)
    tasklines.install("DEBUG")
    assert strategy.level == logging.DEBUG
