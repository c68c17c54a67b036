"""Readiness against a real Redis and a real RabbitMQ node, and `edgematch health` run as
the probes run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import rabbitserver
from devtools.devstack import RedisServer
from devtools.rabbitserver import RabbitServer
from edgematch.infra import health

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _heartbeat_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMATCH_HEARTBEAT_DIR", str(tmp_path))


def test_readiness_needs_redis(redis_server: RedisServer) -> None:
    """Ready with a live heartbeat and Redis answering; not ready when Redis does not."""
    health.beat("worker")
    assert health.readiness("worker", redis_server.url).ok
    unreachable = "redis://127.0.0.1:1/0"
    check = health.readiness("worker", unreachable, timeout_s=0.5)
    assert not check.ok and "redis unreachable" in check.detail


def test_cli_exit_codes(tmp_path: Path) -> None:
    """`edgematch health --liveness` exits 1 without a heartbeat and 0 with one."""
    env = {**os.environ, "EDGEMATCH_HEARTBEAT_DIR": str(tmp_path)}
    cmd = [
        sys.executable,
        "-m",
        "edgematch.ops.cli",
        "health",
        "--liveness",
        "--process",
        "beat",
    ]
    first = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=30)
    assert first.returncode == 1 and first.stdout.startswith("unhealthy:")
    (tmp_path / "edgematch-beat.heartbeat").touch()
    second = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=30)
    assert second.returncode == 0 and second.stdout.startswith("ok:")


def test_readiness_on_rabbitmq_needs_the_broker(redis_server: RedisServer, tmp_path: Path) -> None:
    """With EDGEMATCH_BROKER_URL on RabbitMQ a process is ready while its node takes
    connections, and not ready (exit 1, naming RabbitMQ) once the node is stopped. A node of
    this test's own: stopping the session's would take it from the other tests."""
    if not rabbitserver.installed():
        pytest.skip("rabbitmq-server is not installed: run scripts/bootstrap")
    node = RabbitServer(vhosts=1).start()
    try:
        health.beat("worker")
        check = health.readiness("worker", redis_server.url, broker_url=node.url)
        assert check.ok and "rabbitmq answer" in check.detail, check.detail
        node.stop()
        env = {
            **os.environ,
            "EDGEMATCH_HEARTBEAT_DIR": str(tmp_path),
            "EDGEMATCH_REDIS_URL": redis_server.url,
            "EDGEMATCH_BROKER_URL": node.url,
        }
        cmd = [sys.executable, "-m", "edgematch.ops.cli", "health", "--readiness"]
        done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith("unhealthy: worker: rabbitmq unreachable"), done.stdout
    finally:
        node.close()
