"""The Redis boundary against a real redis-server: every way a command fails is translated.

Each test gets its own private redis-server (stopped, paused, made a replica or filled
up without harming the others) and the client edgematch builds for every process
(``redis_client``). The errors are the ones a restart, a Sentinel failover, a long script
or a full Redis produce; each must reach the caller as ``RedisUnavailable`` (a
``TransientError``), never as redis-py's own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from devtools.devstack import RedisServer
from edgematch.errors import TransientError
from edgematch.infra.redisclient import (
    LockNotOwned,
    Redis,
    RedisUnavailable,
    ScriptMissing,
    redis_client,
)

pytestmark = pytest.mark.integration

#: Writes, so that a replica refuses it (READONLY) like a demoted master.
SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('GET', KEYS[1])"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server of this test alone."""
    srv = RedisServer().start()
    yield srv
    srv.close()


def _admin(server: RedisServer) -> redis.Redis:
    # A plain client on purpose: it controls the server the boundary's client talks to.
    return redis.Redis(port=server.port, socket_timeout=5)


def _raises(call: Callable[[], Any]) -> RedisUnavailable:
    with pytest.raises(RedisUnavailable) as caught:
        call()
    assert isinstance(caught.value, TransientError)
    assert isinstance(caught.value.__cause__, redis.RedisError)
    return caught.value


def _paths(client: Redis) -> dict[str, Callable[[], Any]]:
    """Every way a module reaches Redis: one command, a MULTI pipeline, a plain pipeline, a
    Lua script, the scan iterators, a lock."""
    script = client.register_script(SCRIPT)

    def multi() -> Any:
        pipe = client.pipeline()
        pipe.set("k", "1")
        pipe.incr("n")
        return pipe.execute()

    def plain() -> Any:
        pipe = client.pipeline(transaction=False)
        pipe.set("k", "1")
        pipe.get("k")
        return pipe.execute()

    return {
        "command": lambda: client.set("k", "1"),
        "multi": multi,
        "pipeline": plain,
        "script": lambda: script(keys=["s"], args=["v"]),
        "scan_iter": lambda: list(client.scan_iter(match="k*")),
        "hscan_iter": lambda: list(client.hscan_iter("h")),
        "lock": lambda: client.lock("l", timeout=5, blocking=False).acquire(),
    }


def test_every_path_is_translated_while_redis_is_down_and_works_after_a_restart(
    server: RedisServer,
) -> None:
    """With the server stopped, each path raises RedisUnavailable (caused by redis-py's
    ConnectionError); started again, each works — the script is loaded again although the
    restarted server has forgotten it."""
    client = redis_client(server.url)
    paths = _paths(client)
    for call in paths.values():
        call()  # all work, and the script is cached on the server

    server.stop()
    for name, call in paths.items():
        error = _raises(call)
        assert "ConnectionError" in str(error), name

    server.start()
    assert _admin(server).script_exists(redis.commands.core.Script(_admin(server), SCRIPT).sha) == [
        False
    ]
    for name, call in paths.items():
        assert call() is not None, name
    assert client.get("s") == b"v"


def test_a_script_the_server_forgot_is_loaded_again_not_raised(server: RedisServer) -> None:
    """After SCRIPT FLUSH (what a restart or a failover to a fresh replica does) a
    registered script runs as before: the NOSCRIPT answer is handled inside the boundary."""
    client = redis_client(server.url)
    script = client.register_script(SCRIPT)
    assert script(keys=["s"], args=["1"]) == b"1"
    _admin(server).script_flush()
    assert script(keys=["s"], args=["2"]) == b"2"
    # And a bare EVALSHA of an unknown script is ScriptMissing, a RedisUnavailable.
    missing = _raises(lambda: client.evalsha("0" * 40, 0))
    assert isinstance(missing, ScriptMissing) and missing.code == "NOSCRIPT"


def test_a_script_that_cannot_load_is_translated(server: RedisServer) -> None:
    """A script the server refuses to compile fails as RedisUnavailable, code ERR; the
    server's message (which may quote data) is not repeated."""
    client = redis_client(server.url)
    broken = client.register_script("return redis.call('GET', KEYS[1]")
    error = _raises(lambda: broken(keys=["secret-key-name"]))
    assert error.code == "ERR"
    assert "secret-key-name" not in str(error) and "user_script" not in str(error)


def test_a_paused_server_times_out_as_redis_unavailable(server: RedisServer) -> None:
    """CLIENT PAUSE (a server too busy to answer) makes a command time out: after the
    client's own retry, RedisUnavailable caused by redis-py's TimeoutError."""
    # The readiness probe's timeout (health.readiness): the default 10 s, retried once,
    # would only make this test 20 s longer.
    client = redis_client(server.url, timeout_s=2.0)
    client.ping()
    _admin(server).client_pause(20_000, all=True)
    started = time.monotonic()
    error = _raises(lambda: client.get("k"))
    assert "TimeoutError" in str(error)
    assert time.monotonic() - started < 15


def test_a_busy_script_is_translated(server: RedisServer) -> None:
    """A script running past the busy threshold makes every other command answer BUSY:
    RedisUnavailable with code BUSY."""
    admin = _admin(server)
    admin.config_set("busy-reply-threshold", 100)
    looping = threading.Thread(
        target=lambda: _swallow(lambda: redis.Redis(port=server.port).eval("while true do end", 0)),
        daemon=True,
    )
    looping.start()
    client = redis_client(server.url)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.get("k")
            except RedisUnavailable as error:
                if error.code == "BUSY":
                    break
                raise
            assert time.monotonic() < deadline, "the script never made the server busy"
            time.sleep(0.05)
    finally:
        admin.script_kill()
        looping.join(10)


def test_a_replica_answering_readonly_is_translated(server: RedisServer) -> None:
    """Writes to a replica (a master demoted by a failover, still in the pool) fail as
    RedisUnavailable with code READONLY: one command, a pipeline, a MULTI, a script."""
    replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(server.port)]).start()
    try:
        client = redis_client(replica.url)
        paths = _paths(client)
        for name in ("command", "multi", "pipeline", "script"):
            error = _raises(paths[name])
            assert error.code in {"READONLY", "EXECABORT"}, (name, error.code)
        assert client.get("k") is None  # reads still work on the replica
    finally:
        replica.close()


def test_a_full_redis_refusing_writes_is_translated(server: RedisServer) -> None:
    """``noeviction`` at maxmemory refuses writes with OOM: RedisUnavailable, code OOM."""
    _admin(server).config_set("maxmemory", 1)
    client = redis_client(server.url)
    error = _raises(lambda: client.set("k", "x" * 1000))
    assert error.code == "OOM"


def test_a_lock_that_is_no_longer_held_is_lock_not_owned(server: RedisServer) -> None:
    """Renewing or releasing a lock that expired raises LockNotOwned (a TransientError),
    not redis-py's LockError."""
    client = redis_client(server.url)
    lock = client.lock("l", timeout=5, blocking=False, thread_local=False)
    assert lock.acquire()
    _admin(server).delete("l")  # it expired, say
    with pytest.raises(LockNotOwned):
        lock.reacquire()
    with pytest.raises(LockNotOwned):
        lock.release()


def test_a_lock_is_released_by_del_only_while_it_is_surely_held(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock acquired (or renewed) less than half its TTL ago is released by one ``DEL``;
    past that, the checked release: a key another holder has by then is left to it."""
    client = redis_client(server.url)
    admin = _admin(server)
    fresh = client.lock("fresh", timeout=30, blocking=False, thread_local=False)
    assert fresh.acquire()
    admin.config_resetstat()
    fresh.release()
    assert admin.exists("fresh") == 0
    stats = admin.info("commandstats")
    assert "cmdstat_del" in stats and "cmdstat_evalsha" not in stats
    old = client.lock("old", timeout=30, blocking=False, thread_local=False)
    assert old.acquire()
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 16.0)  # half the TTL and more since
    admin.set("old", "another holder's token")  # it expired and was taken, say
    with pytest.raises(LockNotOwned):
        old.release()
    assert admin.get("old") in (b"another holder's token", "another holder's token")


def test_a_wrong_password_is_translated(server: RedisServer) -> None:
    """A server that refuses the client's credentials raises RedisUnavailable."""
    _admin(server).config_set("requirepass", "right")
    client = redis_client(f"redis://:wrong@127.0.0.1:{server.port}/0")
    error = _raises(client.ping)
    assert "Error" in str(error) and "wrong" not in str(error)


def test_concurrent_paths_during_an_outage_all_translate(server: RedisServer) -> None:
    """Threads sharing one client's pool (a worker's fan-out) all get RedisUnavailable
    while Redis is down, and the pool serves them again once it is back."""
    client = redis_client(server.url)
    client.ping()
    server.stop()
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: _outcome(lambda: client.incr("n")), range(16)))
    assert outcomes == ["RedisUnavailable"] * 16
    server.start()
    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(lambda _: int(client.incr("n")), range(16))) == list(range(1, 17))


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as exc:  # the type is what the test compares
        return type(exc).__name__
    return "ok"


def _swallow(call: Callable[[], Any]) -> None:
    with contextlib.suppress(redis.RedisError):  # the script was killed, as intended
        call()
