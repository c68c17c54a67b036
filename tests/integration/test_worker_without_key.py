"""Workers that never call the API start cleanly without the subscription key (least
privilege: only match and photodna-reports pods are given it); a match worker refuses, and
so does a results worker without a bucket for the verdict log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from devtools.devstack import RedisServer

pytestmark = pytest.mark.integration


def _env(redis_server: RedisServer, *, reports_bucket: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "AWS_"))}
    env.update(
        EDGEMATCH_REDIS_URL=redis_server.url,
        EDGEMATCH_LOG_FORMAT="json",
        EDGEMATCH_NAMESPACE="nokey",
        EDGEMATCH_API_URL="http://127.0.0.1:9/photodna/v1.0",
    )
    if reports_bucket:
        # docs/configuration.md: required by a worker that consumes results (the verdict
        # log goes there). Nothing is written to it here: no result is recorded.
        env["EDGEMATCH_REPORTS_BUCKET"] = "edgematch-reports"
    return env


def _worker(
    redis_server: RedisServer, queues: str, *, reports_bucket: bool = True
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgematch.ops.cli", "worker", "--queues", queues, "-c", "1"],
        env=_env(redis_server, reports_bucket=reports_bucket),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_an_ingest_results_quarantine_worker_starts_without_the_key(
    redis_server: RedisServer,
) -> None:
    """It runs, warms up what it uses (no API client), and stops on SIGTERM with status 0,
    without one error logged."""
    worker = _worker(redis_server, "ingest,results,quarantine")
    try:
        deadline = time.monotonic() + 60
        assert worker.stdout is not None
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = worker.stdout.readline()
            if not line:
                break
            lines.append(line)
            if " ready." in line:
                break
        assert any(" ready." in line for line in lines), "".join(lines[-20:])
        time.sleep(2.0)  # the pool process's start-up hooks (warm-up, heartbeat) run now
        worker.send_signal(signal.SIGTERM)
        rest, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    output = "".join(lines) + rest
    assert worker.returncode == 0, output[-2000:]
    assert '"level": "error"' not in output and "Traceback" not in output, output[-3000:]


def test_a_match_worker_refuses_to_start_without_the_key(redis_server: RedisServer) -> None:
    """Exit status 2 (configuration) naming the variable, before Celery starts."""
    worker = _worker(redis_server, "match")
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert "EDGEMATCH_SUBSCRIPTION_KEY" in out and "match" in out
    assert " ready." not in out


def test_a_results_worker_refuses_to_start_without_a_verdict_log_bucket(
    redis_server: RedisServer,
) -> None:
    """Exit status 2 naming the variables, before Celery starts: its results could not
    leave Redis."""
    worker = _worker(redis_server, "results", reports_bucket=False)
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert "EDGEMATCH_VERDICT_LOG_BUCKET" in out and "EDGEMATCH_REPORTS_BUCKET" in out
    assert " ready." not in out
