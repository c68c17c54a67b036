"""What both baseline apps share: configuration from ``BENCH_*`` variables, one pooled
HTTP client per process, the MatchEdgeHash call, and the record of each answer.

Records, in the broker's Redis database: ``bench:stats`` (a hash: ``requests``,
``http_200``, ``http_429``, ``http_other``) and ``bench:done`` (a list of
``"<unix time> <hashes>"`` for every accepted request).
"""

from __future__ import annotations

import base64
import os
import time
from functools import cache
from typing import Any

import httpx
import redis
from celery import Celery

from edgematch.infra.redisclient import redis_client

STATS = "bench:stats"
DONE = "bench:done"


def make_app(name: str, queue: str) -> Celery:
    """A Celery app on ``BENCH_BROKER_URL`` with Celery's defaults, JSON only."""
    app = Celery(name, broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/1"))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
    )
    return app


@cache
def _http(pid: int) -> httpx.Client:
    # One pooled client per process (the pid in the key: a forked child builds its own).
    return httpx.Client(
        headers={"Ocp-Apim-Subscription-Key": os.environ["BENCH_API_KEY"]}, timeout=10
    )


@cache
def _redis(pid: int) -> redis.Redis:
    return redis_client(os.environ["BENCH_BROKER_URL"])


def call_match(hashes: list[dict[str, str]]) -> tuple[int, float]:
    """POST one MatchEdgeHash request with ``hashes`` (``{"id", "b64"}``) and record it.

    Returns the HTTP status and the Retry-After seconds (0 when there is none).
    """
    files: list[tuple[str, tuple[str, bytes, str]]] = [
        (h["id"], (f"{h['id']}.bin", base64.b64decode(h["b64"]), "application/octet-stream"))
        for h in hashes
    ]
    reply = _http(os.getpid()).post(
        os.environ["BENCH_API_URL"].rstrip("/") + "/MatchEdgeHash", files=files
    )
    r = _redis(os.getpid())
    pipe: Any = r.pipeline(transaction=False)
    pipe.hincrby(STATS, "requests", 1)
    if reply.status_code == 200:
        pipe.hincrby(STATS, "http_200", 1)
        pipe.rpush(DONE, f"{time.time():.6f} {len(hashes)}")
    elif reply.status_code == 429:
        pipe.hincrby(STATS, "http_429", 1)
    else:
        pipe.hincrby(STATS, "http_other", 1)
    pipe.execute()
    retry_after = float(reply.headers.get("Retry-After", "0") or 0)
    return reply.status_code, retry_after
