"""Heartbeats: which edgematch processes are alive, for ``edgematch status``.

Every worker process (each prefork child: the processes that run tasks), intake and beat
refresh ``<ns>:heartbeat:<host>:<pid>`` every ``INTERVAL_S`` from a daemon thread, with a
TTL of ``TTL_S``. A process that dies, even by SIGKILL, drops out of the list within
``TTL_S``; one that stops cleanly removes its key at once. Ages are read from the keys'
TTLs, on Redis's clock, so a host with a wrong clock still shows a true age.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import redis

from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable

log = get_logger(__name__)

INTERVAL_S = 5.0
TTL_S = 20


@dataclass(frozen=True)
class Beat:
    """One live process. ``age_s``: seconds since its last beat (None before it is read)."""

    role: str
    host: str
    pid: int
    started_at: float
    queues: tuple[str, ...] = ()
    age_s: float | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "age_s"})

    @classmethod
    def from_json(cls, raw: str | bytes, *, age_s: float | None) -> Beat:
        doc = json.loads(raw)
        return cls(
            role=str(doc["role"]),
            host=str(doc["host"]),
            pid=int(doc["pid"]),
            started_at=float(doc.get("started_at", 0.0)),
            queues=tuple(doc.get("queues") or ()),
            age_s=age_s,
        )


class Heartbeat:
    """Keeps this process's heartbeat key fresh until ``stop()``."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        role: str,
        *,
        queues: Iterable[str] = (),
        interval_s: float = INTERVAL_S,
        ttl_s: int = TTL_S,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        """``host`` and ``pid`` default to this process's (others are for tests)."""
        self._r = client
        host, pid = host or socket.gethostname(), pid or os.getpid()
        self.key = Keys(namespace).heartbeat(host, pid)
        self.beat = Beat(role=role, host=host, pid=pid, started_at=time.time(), queues=(*queues,))
        self._interval_s = interval_s
        self._ttl_s = ttl_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def beat_once(self) -> bool:
        """Refresh the key. A Redis error is logged once per outage, never raised."""
        try:
            self._r.set(self.key, self.beat.to_json(), ex=self._ttl_s)
        except RedisUnavailable as exc:  # not a translation: logged, and tried again
            if not self._warned:
                log.warning("heartbeat_failed", role=self.beat.role, error=type(exc).__name__)
                self._warned = True
            return False
        self._warned = False
        return True

    def start(self) -> Heartbeat:
        """Beat now and then every ``interval_s`` from a daemon thread; returns self."""
        self.beat_once()
        self._thread = threading.Thread(target=self._loop, name="edgematch-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating and remove the key (best effort: the TTL removes it otherwise)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        try:
            self._r.delete(self.key)
        except RedisUnavailable as exc:  # not a translation: the TTL removes the key
            log.debug("heartbeat_not_removed", error=type(exc).__name__)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat_once()


def alive(client: redis.Redis, namespace: str, *, ttl_s: int = TTL_S) -> list[Beat]:
    """Every process whose heartbeat has not run out, by role, host and pid.

    Raises ``RedisUnavailable`` when Redis cannot be reached.
    """
    keys = [
        key.decode() if isinstance(key, bytes) else str(key)
        for key in client.scan_iter(match=f"{Keys(namespace).heartbeat_prefix}*", count=500)
    ]
    if not keys:
        return []
    pipe = client.pipeline()
    for key in keys:
        pipe.get(key)
        pipe.pttl(key)
    replies = pipe.execute()
    beats: list[Beat] = []
    for n in range(len(keys)):
        raw, pttl = replies[2 * n], replies[2 * n + 1]
        if raw is None:  # expired between SCAN and GET
            continue
        age = max(0.0, ttl_s - int(pttl) / 1000) if int(pttl) >= 0 else None
        try:
            beats.append(Beat.from_json(raw, age_s=age))
        except (ValueError, KeyError, TypeError):
            log.warning("heartbeat_unreadable", key=keys[n])
    return sorted(beats, key=lambda b: (b.role, b.host, b.pid))
