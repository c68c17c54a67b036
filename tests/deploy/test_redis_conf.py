"""deploy/redis: a real redis-server and sentinel accept the settings edgematch needs."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.devstack import wait_for_port
from tests.support.ports import free_port

REDIS = Path(__file__).resolve().parents[2] / "deploy" / "redis"
PASSWORD = "CHANGE-ME"  # the placeholder both files carry

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("redis-server") is None, reason="scripts/bootstrap installs it"
    ),
]


def _start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout_s=10)
    except Exception:
        proc.kill()
        proc.wait()
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def redis_with_conf(tmp_path: Path) -> Iterator[redis.Redis]:
    """A private redis-server on a free port of 127.0.0.1, started from deploy/redis/redis.conf."""
    port = free_port()
    proc = _start(
        [
            "redis-server",
            str(REDIS / "redis.conf"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--logfile",
            str(tmp_path / "redis.log"),
            "--maxmemory",
            "64mb",
        ],
        port,
    )
    client = redis.Redis(port=port, password=PASSWORD)
    try:
        yield client
    finally:
        client.close()
        _stop(proc)


def test_redis_starts_with_the_conf_and_keeps_what_edgematch_needs(
    redis_with_conf: redis.Redis,
) -> None:
    """AOF on and fsynced every second, noeviction, and writes refused without a replica."""
    config = redis_with_conf.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["min-replicas-to-write"] == "1"
    with pytest.raises(redis.ResponseError, match="NOREPLICAS"):
        redis_with_conf.set("edgematch:probe", "1")


def test_sentinel_accepts_the_conf_and_watches_the_master(
    redis_with_conf: redis.Redis, tmp_path: Path
) -> None:
    """sentinel.conf's master `edgematch` is monitored with its password and timeouts."""
    master_port = redis_with_conf.connection_pool.connection_kwargs["port"]
    conf = (REDIS / "sentinel.conf").read_text(encoding="utf-8")
    conf = conf.replace("REDIS-MASTER-HOST 6379", f"127.0.0.1 {master_port}")
    (tmp_path / "sentinel.conf").write_text(conf, encoding="utf-8")
    port = free_port()
    proc = _start(
        [
            "redis-server",
            str(tmp_path / "sentinel.conf"),
            "--sentinel",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--logfile",
            str(tmp_path / "sentinel.log"),
        ],
        port,
    )
    sentinel = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            reply = sentinel.sentinel_master("edgematch")
            assert isinstance(reply, dict)
            master: dict[str, Any] = reply
            # role-reported comes from INFO, which needs the password to be right.
            if master.get("role-reported") == "master" and not master.get("is_disconnected"):
                break
            assert time.monotonic() < deadline, f"sentinel never reached the master: {master}"
            time.sleep(0.2)
        assert int(master["port"]) == master_port
        assert int(master["quorum"]) == 2
        assert int(master["down-after-milliseconds"]) == 5000
    finally:
        sentinel.close()
        _stop(proc)
