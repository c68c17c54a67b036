"""Redis through Sentinel: the buffer's client follows the monitored master by name."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.devstack import RedisServer, wait_for_port
from edgematch.errors import ConfigurationError
from edgematch.infra.redisclient import redis_client
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, int]]:
    master = RedisServer().start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor edgemaster 127.0.0.1 {master.port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield master, port
    finally:
        proc.terminate()
        proc.wait(10)
        master.close()


def test_client_reaches_the_master_through_sentinel(sentinel: tuple[RedisServer, int]) -> None:
    """A sentinel:// URL with the master's name reads and writes the monitored master."""
    master, port = sentinel
    client = redis_client(f"sentinel://127.0.0.1:{port}/0", sentinel_master="edgemaster")
    deadline = time.monotonic() + 10
    while True:
        try:
            client.set("edgematch:probe", "1")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    direct = redis_client(master.url)
    assert direct.get("edgematch:probe") == b"1"
    direct.flushdb()


def test_sentinel_url_without_master_name_is_refused() -> None:
    """The client cannot guess which master to follow."""
    with pytest.raises(ConfigurationError, match="EDGEMATCH_SENTINEL_MASTER"):
        redis_client("sentinel://127.0.0.1:26379/0")
