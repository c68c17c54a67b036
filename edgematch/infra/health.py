"""Liveness and readiness that do not depend on ``celery inspect ping``.

Each process type touches a heartbeat file from the loop that does its work — the Celery
worker from its event loop's timer, intake from its receive loop, webhook from the loop that
enqueues what it accepts, beat from its scheduler tick — so a hung loop stops the heartbeat
even when a stray thread keeps running.
``edgematch health --liveness`` checks the file's age; ``--readiness`` also needs Redis to
answer, and on RabbitMQ (an ``amqp://`` or ``amqps://`` broker URL) the broker to take a
connection: a process that cannot reach its broker publishes and consumes nothing. Both exit
0 or 1 and print one line, for Kubernetes exec probes.

A file, not Redis: a broker outage must not make every pod fail liveness and restart
(celery#4079), it should only make them unready.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgematch.config.brokerkind import capabilities
from edgematch.infra.redisclient import BrokerUnavailable, RedisUnavailable, redis_client

PROCESS_TYPES = ("worker", "intake", "webhook", "beat")
DEFAULT_MAX_AGE_S = 60.0
BEAT_INTERVAL_S = 5.0


def heartbeat_path(process: str) -> Path:
    """Where ``process`` keeps its heartbeat: ``EDGEMATCH_HEARTBEAT_DIR`` or the temp dir."""
    if process not in PROCESS_TYPES:
        raise ValueError(f"unknown process type {process!r}")
    base = os.environ.get("EDGEMATCH_HEARTBEAT_DIR") or tempfile.gettempdir()
    return Path(base) / f"edgematch-{process}.heartbeat"


def beat(process: str) -> None:
    """Record that ``process``'s main loop is alive now. Never raises."""
    path = heartbeat_path(process)
    try:
        path.touch()
        os.utime(path)
    except OSError:
        # A full or read-only disk shows up as a failing liveness probe; nothing to do here.
        pass


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def liveness(
    process: str, *, max_age_s: float = DEFAULT_MAX_AGE_S, now: float | None = None
) -> Check:
    """Alive when the heartbeat file was touched within ``max_age_s`` seconds."""
    path = heartbeat_path(process)
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return Check(False, f"{process}: no heartbeat yet at {path}")
    if age > max_age_s:
        return Check(False, f"{process}: last heartbeat {age:.0f} s ago (limit {max_age_s:.0f} s)")
    return Check(True, f"{process}: heartbeat {age:.1f} s ago")


def readiness(
    process: str,
    redis_url: str,
    *,
    broker_url: str | None = None,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    timeout_s: float = 2.0,
    sentinel_master: str | None = None,
) -> Check:
    """Ready when alive, Redis (buffer, limiter, and broker unless ``broker_url`` names
    RabbitMQ) answers a PING in time, and RabbitMQ, if it is the broker, takes a connection
    in time."""
    alive = liveness(process, max_age_s=max_age_s)
    if not alive.ok:
        return alive
    try:
        client = redis_client(redis_url, sentinel_master=sentinel_master, timeout_s=timeout_s)
        client.ping()
    except RedisUnavailable as exc:
        # Not a translation: the probe's answer is this line and its exit status.
        return Check(False, f"{process}: redis unreachable ({exc})")
    client.close()
    if broker_url is None or not capabilities(broker_url).amqp:
        return Check(True, f"{alive.detail}; redis answers")
    # Imported here: a probe on a Redis broker loads no AMQP client.
    from edgematch.config.celery import broker_ssl  # noqa: PLC0415
    from edgematch.infra import brokerqueues  # noqa: PLC0415

    try:
        brokerqueues.answers(broker_url, ssl=broker_ssl(broker_url), timeout_s=timeout_s)
    except BrokerUnavailable as exc:
        return Check(False, f"{process}: rabbitmq unreachable ({exc})")
    return Check(True, f"{alive.detail}; redis and rabbitmq answer")
