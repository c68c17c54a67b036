"""Baseline 2: one hash per task, paced by Celery's own ``rate_limit``.

Celery enforces ``rate_limit`` per worker instance, not for the pool, so an operator with
``N`` workers sets ``R / N`` on each (``BENCH_TASK_RATE``, e.g. ``2.5/s``). A 429 is
retried after the answer's Retry-After, as ``self.retry`` would be written in such an app.
Run ``N`` instances of ``celery -A bench.baselines.rate_limited worker -Q bench.rl``.
"""

from __future__ import annotations

import os
from typing import Any

from bench.baselines.common import call_match, make_app

QUEUE = "bench.rl"

app = make_app("bench-rate-limited", QUEUE)


@app.task(
    name="bench.rate_limited.match",
    bind=True,
    max_retries=None,
    rate_limit=os.environ.get("BENCH_TASK_RATE", "10/s"),
)
def match(self: Any, hashes: list[dict[str, str]]) -> int:
    """Send one hash in one request; a 429 comes back later. Returns the HTTP status."""
    status, retry_after = call_match(hashes)
    if status == 429:
        raise self.retry(countdown=max(retry_after, 1.0))
    return status
