"""The pool-wide limiter alone: a pre-filled buffer drained by N worker processes.

Each process loops take → ``request.send_batch`` → settle against the sandbox over HTTP,
on a private Redis, with the default settings but for the rate. Prints one JSON line:
the sandbox's answers, its busiest one-second window, and accepted requests per second
over the saturated part (after the first second) over floor(R).

    .venv/bin/python -m bench.limiter_alone RATE WORKERS ITEMS
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import sys
import time

from devtools.devstack import RedisServer
from devtools.items import fill
from devtools.sandbox.server import Sandbox, SandboxConfig
from edgematch.config.settings import Secret, Settings
from edgematch.pipeline import request
from edgematch.pipeline.buffer import Empty, Wait
from edgematch.runtime import Runtime

KEY = "KEY-limiter-0123456789"


def _settings(redis_url: str, api_url: str, rate: float) -> Settings:
    return Settings(
        redis_url=redis_url,
        broker_url=redis_url,
        subscription_key=Secret(KEY),
        api_url=api_url,
        rate_limit_per_s=rate,
    ).validated()


def _worker(redis_url: str, api_url: str, rate: float) -> None:
    rt = Runtime(_settings(redis_url, api_url, rate))
    while True:
        taken = rt.buffer.take()
        if isinstance(taken, Empty):
            return
        if isinstance(taken, Wait):
            time.sleep(taken.seconds)
            continue
        request.send_batch(rt, taken, publish=lambda _results: None)


def main(rate: float, workers: int, items: int) -> dict[str, object]:
    redis_server = RedisServer().start()
    sandbox = Sandbox(SandboxConfig(key=KEY, rate=rate)).start()
    try:
        rt = Runtime(_settings(redis_server.url, sandbox.url, rate))
        fill(rt.buffer, items)
        procs = [
            multiprocessing.Process(target=_worker, args=(redis_server.url, sandbox.url, rate))
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        stats = sandbox.stats()
        # The arrival times behind stats()["max_accepted_in_any_1s_window"].
        accepted = list(sandbox.state._counters.accepted)
        window = [t for t in accepted if t >= accepted[0] + 1.0]
        per_s = (len(window) - 1) / (window[-1] - window[0])
        return {
            "rate": rate,
            "workers": workers,
            "by_http_status": stats["by_http_status"],
            "max_in_1s": stats["max_accepted_in_any_1s_window"],
            "steady_requests": len(window),
            "steady_requests_per_s": round(per_s, 3),
            "utilisation": round(per_s / math.floor(rate), 4),
            "load1": round(os.getloadavg()[0], 2),
        }
    finally:
        sandbox.stop()
        redis_server.stop()


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
