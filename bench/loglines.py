"""CPU a log line: ``python -m bench.loglines`` writes lines through edgematch's logging
(``infra/logs.configure``, JSON, a secret registered, a correlation id bound) to memory
and prints the process CPU time a line, for a structlog INFO line, a structlog DEBUG line
dropped by the level, and a stdlib (Celery) INFO line."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable

import structlog

from edgematch.infra import logs


def per_line_us(write: Callable[[], None], lines: int) -> float:
    """Process CPU µs a call of ``write``, after a warm-up."""
    for _ in range(1000):
        write()
    started = time.process_time()
    for _ in range(lines):
        write()
    return (time.process_time() - started) / lines * 1e6


def main(lines: int = 20_000) -> int:
    logs.configure("INFO", "json", process="worker")
    logs.register_secret("KEY-abcdef123456")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(io.StringIO())
    structlog.contextvars.bind_contextvars(correlation_id="c0ffee")
    log = logs.get_logger("edgematch.bench")
    celery = logging.getLogger("celery.app.trace")
    cases: dict[str, Callable[[], None]] = {
        "structlog INFO": lambda: log.info("hash.scanned", key="a/b.jpg", n=3),
        "structlog DEBUG (dropped)": lambda: log.debug("hash.debug", key="a/b.jpg"),
        "stdlib INFO": lambda: celery.info("Task %s succeeded in %ss", "x", 0.1),
    }
    for name, write in cases.items():
        print(f"{name:<28} {per_line_us(write, lines):6.1f} µs a line")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
