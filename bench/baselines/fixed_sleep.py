"""Baseline 1, as Microsoft's PhotoDNA quick-start samples pace the API: batches of 5
hashes, and a fixed 100 ms sleep after every call, in every worker process.

On a 429 the same batch is sent again after the same sleep: the samples have no other
pacing. Run with ``celery -A bench.baselines.fixed_sleep worker -Q bench.fixed -c N``.
"""

from __future__ import annotations

import time

from bench.baselines.common import call_match, make_app

QUEUE = "bench.fixed"
SLEEP_S = 0.1

app = make_app("bench-fixed-sleep", QUEUE)


@app.task(name="bench.fixed_sleep.match")
def match(hashes: list[dict[str, str]]) -> int:
    """Send one batch until it is accepted; sleep 100 ms after each call. Returns calls."""
    calls = 0
    while True:
        status, _ = call_match(hashes)
        calls += 1
        time.sleep(SLEEP_S)
        if status != 429:
            return calls
