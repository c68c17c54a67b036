"""Liveness and readiness checks from heartbeat files (with Redis and the CLI: tests/integration/
test_health_probes.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from edgematch.infra import health


@pytest.fixture(autouse=True)
def _heartbeat_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEMATCH_HEARTBEAT_DIR", str(tmp_path))


def test_no_heartbeat_is_not_alive() -> None:
    """A process that never beat fails liveness, naming what is missing."""
    check = health.liveness("worker")
    assert not check.ok and "no heartbeat" in check.detail


def test_fresh_heartbeat_is_alive_and_stale_is_not() -> None:
    """A recent beat passes; one older than the limit fails."""
    health.beat("intake")
    assert health.liveness("intake", max_age_s=5).ok
    path = health.heartbeat_path("intake")
    old = time.time() - 120
    os.utime(path, (old, old))
    check = health.liveness("intake", max_age_s=60)
    assert not check.ok and "120" in check.detail


def test_unknown_process_type_is_refused() -> None:
    """Only the Procfile's process types have heartbeats."""
    with pytest.raises(ValueError, match="unknown process type"):
        health.heartbeat_path("scheduler")
