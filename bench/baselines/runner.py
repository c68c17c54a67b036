"""Run a baseline on the shared stack: fill its queue, start its workers, measure, stop.

The queue is filled before any worker starts, so each baseline works through a backlog
from its first request to its last (or to the time cap): saturated by construction.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery

from bench.baselines.common import DONE, STATS
from bench.measure import MachineLoad
from bench.stack import HASH_BYTES, Stack
from devtools.localstack import SANDBOX_KEY
from edgematch.infra.redisclient import redis_client

ROOT = Path(__file__).resolve().parents[2]
BROKER_DB = 1


@dataclass(frozen=True)
class BaselineRun:
    """What one run did, as its own counters and the sandbox saw it."""

    answered: list[tuple[float, int]]  # (unix time, hashes) of each accepted request
    own: dict[str, int]
    sandbox: dict[str, Any]
    hashes_fed: int
    capped: bool
    machine: dict[str, float]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _broker_url(stack: Stack) -> str:
    return f"redis://127.0.0.1:{stack.pipe.redis.port}/{BROKER_DB}"


def _hashes(count: int) -> list[dict[str, str]]:
    return [
        {"id": uuid.uuid4().hex, "b64": base64.b64encode(os.urandom(HASH_BYTES)).decode()}
        for _ in range(count)
    ]


def run_baseline(
    stack: Stack,
    kind: str,
    *,
    workers: int,
    hashes: int,
    cap_s: float,
    log_dir: Path,
) -> BaselineRun:
    """``kind`` is ``fixed_sleep`` (one prefork worker, ``-c workers``, batches of 5) or
    ``rate_limited`` (``workers`` worker instances of one process each, one hash per task,
    ``rate_limit`` ``R/workers`` on each)."""
    url = _broker_url(stack)
    r = redis_client(url)
    r.flushdb()
    sender = Celery("bench-feeder", broker=url)
    sender.conf.update(task_serializer="json")
    items = _hashes(hashes)
    if kind == "fixed_sleep":
        name, queue, per_task = "bench.fixed_sleep.match", "bench.fixed", 5
    else:
        name, queue, per_task = "bench.rate_limited.match", "bench.rl", 1
    with sender.connection_for_write() as conn:
        for i in range(0, len(items), per_task):
            sender.send_task(name, args=[items[i : i + per_task]], queue=queue, connection=conn)
    sender.close()
    stack.sandbox_reset()

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "BENCH_"))},
        "BENCH_BROKER_URL": url,
        "BENCH_API_URL": stack.pipe.sandbox.url,
        "BENCH_API_KEY": SANDBOX_KEY,
        "BENCH_TASK_RATE": f"{stack.rate / workers:g}/s",
        "PYTHONPATH": str(ROOT),
    }
    base = [sys.executable, "-m", "celery", "-A", f"bench.baselines.{kind}", "worker"]
    if kind == "fixed_sleep":
        commands = [[*base, "-Q", queue, "-c", str(workers), "-n", "fixed@%h"]]
    else:
        commands = [[*base, "-Q", queue, "-c", "1", "-n", f"rl{i}@%h"] for i in range(workers)]
    log = (log_dir / f"{kind}-{workers}.log").open("ab")
    procs = [
        subprocess.Popen(
            [*cmd, "--loglevel", "WARNING"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for cmd in commands
    ]
    capped = False
    load = MachineLoad()
    load.start()
    try:
        deadline = time.monotonic() + cap_s + 60.0
        first_answer: float | None = None
        while time.monotonic() < deadline:
            done = sum(int(v.split()[1]) for v in r.lrange(DONE, 0, -1))
            if done >= hashes:
                break
            if first_answer is None and r.llen(DONE):
                first_answer = time.monotonic()
                deadline = first_answer + cap_s
            load.poll()
            time.sleep(0.25)
        else:
            capped = True
        machine = load.result()
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
    answered = []
    for raw in r.lrange(DONE, 0, -1):
        at, count = raw.split()
        answered.append((float(at), int(count)))
    own = {_text(k): int(v) for k, v in r.hgetall(STATS).items()}
    r.flushdb()
    r.close()
    return BaselineRun(
        answered=sorted(answered),
        own=own,
        sandbox=stack.sandbox_stats(),
        hashes_fed=hashes,
        capped=capped,
        machine=machine,
    )
