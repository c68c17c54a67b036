"""What operators rely on, on the real processes: metrics, health probes, graceful shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, discard
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(
        rate=10.0,
        settings={"EDGEMATCH_HEARTBEAT_DIR": str(tmp_path), "EDGEMATCH_SHUTDOWN_GRACE_S": "10"},
    ).start()
    yield pipeline
    discard(pipeline)


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_endpoint_shows_the_pipeline_moving(pipe: LocalPipeline) -> None:
    """The worker's /metrics sums its prefork children and reads levels from Redis."""
    port = free_port()
    pipe.start_processes(
        "intake", "worker", "beat", worker_args=["--concurrency", "2", "--metrics-port", str(port)]
    )
    keys = [f"metrics/{i}.bin" for i in range(12)]
    hashes = {k: os.urandom(HASH) for k in keys}
    pipe.add_known([hashes[keys[0]]])
    for key in keys:
        pipe.upload(key, hashes[key])
    assert len(pipe.wait_for_results(keys, timeout_s=60)) == 12

    def scraped() -> str:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    _wait(lambda: _sample(scraped(), "edgematch_hashes_scanned_total") >= 12, 20, "12 scans")
    text = scraped()
    assert _sample(text, "edgematch_hashes_scanned_total", verdict="match") == 1
    assert _sample(text, "edgematch_matches_total") == 1
    requests = _sample(text, "edgematch_api_requests_total", outcome="ok", code="200")
    assert 3 <= requests <= 12
    assert _sample(text, "edgematch_batch_size_count") == requests
    assert _sample(text, "edgematch_api_request_duration_seconds_count") == requests
    assert _sample(text, "edgematch_end_to_end_seconds_count", lane="live") == 12
    assert _sample(text, "edgematch_rate_limit_capacity") == 10
    assert 'edgematch_queue_depth{queue="ingest"}' in text
    assert 'edgematch_buffer_items{lane="backfill"}' in text
    # No label carries an object name or key.
    assert not re.search(r'="[^"]*metrics/', text)


def test_liveness_follows_the_worker_event_loop(pipe: LocalPipeline, tmp_path: Path) -> None:
    """The worker's heartbeat comes from its event loop: a stopped loop fails liveness."""
    pipe.start_processes("worker", worker_args=["--concurrency", "1"])
    cmd = [sys.executable, "-m", "edgematch.ops.cli", "health"]

    def probe(*args: str) -> int:
        run = subprocess.run(
            [*cmd, *args], check=False, env=pipe.env(), capture_output=True, timeout=30
        )
        return run.returncode

    _wait(lambda: probe("--liveness", "--max-age", "8") == 0, 30, "a first heartbeat")
    assert probe("--readiness", "--max-age", "8") == 0
    assert pipe.processes is not None
    worker = pipe.processes.procs["worker"]
    os.kill(worker.pid, signal.SIGSTOP)  # the event loop hangs
    try:
        _wait(lambda: probe("--liveness", "--max-age", "8") == 1, 30, "liveness to fail")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    _wait(lambda: probe("--liveness", "--max-age", "8") == 0, 30, "liveness to recover")


def test_sigterm_under_load_drains_and_loses_nothing(
    make_pipeline: MakePipeline, broker: str, tmp_path: Path
) -> None:
    """SIGTERM to the worker and to intake mid-run: both exit within the grace, nothing is
    lost (on either broker: what the worker did not finish goes back to it)."""
    pipe = make_pipeline(
        rate=10.0,
        settings={"EDGEMATCH_HEARTBEAT_DIR": str(tmp_path), "EDGEMATCH_SHUTDOWN_GRACE_S": "10"},
        broker=broker,
    )
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    keys = [f"drain/{i}.bin" for i in range(60)]
    for key in keys[:30]:
        pipe.upload(key, os.urandom(HASH))
    _wait(lambda: len(pipe.results(keys[:30])) >= 5, 60, "first results")
    assert pipe.processes is not None

    worker = pipe.processes.procs["worker"]
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)  # as Kubernetes does to PID 1
    worker.wait(30)
    assert time.monotonic() - started <= 10 + 5  # the grace, plus the loop's own tick

    intake = pipe.processes.procs["intake"]
    for key in keys[30:]:
        pipe.upload(key, os.urandom(HASH))
    started = time.monotonic()
    intake.send_signal(signal.SIGTERM)
    intake.wait(30)
    assert time.monotonic() - started <= 10
    assert intake.returncode == 0

    pipe.processes.procs.pop("worker")
    pipe.processes.procs.pop("intake")
    pipe.start_processes("intake", "worker", worker_args=["--concurrency", "2"])
    results = pipe.wait_for_results(keys, timeout_s=120)
    assert set(results) == set(keys)


def test_sigterm_while_tasks_outlast_the_grace_exits_by_the_deadline(
    make_pipeline: MakePipeline, broker: str
) -> None:
    """A SIGTERM while every match task waits on an API answer longer than the grace: the
    worker still exits by the grace plus the cold shutdown's few seconds (warm shutdown
    alone would wait for the answers), and what it held is scanned once it is back.

    EDGEMATCH_SHUTDOWN_GRACE_S is set below the API's answer time, as the deployment docs
    tell operators to size it against their orchestrator's termination period."""
    grace_s = 3.0
    pipe = make_pipeline(
        rate=10.0, settings={"EDGEMATCH_SHUTDOWN_GRACE_S": str(grace_s)}, broker=broker
    )
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    known = os.urandom(HASH)
    pipe.add_known([known])
    pipe.upload("slow/warm-up.bin", os.urandom(HASH))
    pipe.wait_for_results(["slow/warm-up.bin"], timeout_s=60)
    pipe.sandbox_faults(slow_rate=1.0, slow_s=9.0)
    asked = int(pipe.sandbox_stats()["requests_total"])
    keys = [f"slow/{i} +%.bin" for i in range(8)]
    for i, key in enumerate(keys):
        pipe.upload(key, known if i == 0 else os.urandom(HASH))
    _wait(lambda: int(pipe.sandbox_stats()["requests_total"]) > asked, 60, "a request in flight")
    assert pipe.processes is not None

    worker = pipe.processes.procs["worker"]
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(grace_s + 20)
    took = time.monotonic() - started
    assert took <= grace_s + 5, f"the worker took {took:.1f} s to stop"
    assert any("shutdown_grace_spent" in line for line in pipe.log_lines("worker"))

    pipe.sandbox_faults(slow_rate=0.0)
    pipe.processes.procs.pop("worker")
    pipe.start_processes("worker", worker_args=["--concurrency", "2"])
    results = pipe.wait_for_results(keys, timeout_s=120)
    assert results[keys[0]]["verdict"] == "match"
    assert all(results[k]["verdict"] == "clean" for k in keys[1:])
    _wait(lambda: len(pipe.reports()) >= 1, 60, "the match's report")
    assert [r["hash"]["key"] for r in pipe.reports()] == [keys[0]]
