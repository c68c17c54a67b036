"""Real local parts for the demo, the tests and the benchmarks.

Each part is a real process on 127.0.0.1 and a free port, started and stopped here:
a private ``redis-server`` (never the machine's shared one), moto's S3/SQS server, the
PhotoDNA sandbox, and the Procfile's process types. Nothing here is used in production.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from edgematch.infra.redisclient import RedisUnavailable, redis_client

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def _stop(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RedisServer:
    """A private redis-server on a free port, in its own directory (AOF optional).

    ``extra_args`` are more ``redis-server`` options (``--replicaof 127.0.0.1 PORT`` …).
    """

    def __init__(
        self, *, appendonly: bool = False, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run scripts/bootstrap")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="edgematch-redis-"))
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.dir / "redis.log"),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelGroup:
    """Redis for high availability as ``deploy/README.md`` runs it: a master, two replicas
    and three sentinels (quorum 2), each on a free port of 127.0.0.1.

    Every node has AOF on and the failover settings of ``deploy/redis/redis.conf``
    (``min-replicas-to-write 1``, ``min-replicas-max-lag 10``); the sentinels have
    ``deploy/redis/sentinel.conf``'s timings (master down after 5 s, a failover within
    60 s). ``master`` is not started here: start it (or hand it to a ``LocalPipeline``),
    then :meth:`start`.
    """

    #: The master's and replicas' settings from deploy/redis/redis.conf that bear on a failover.
    NODE_ARGS = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")

    def __init__(self, name: str = "edgematch", *, replicas: int = 2, sentinels: int = 3) -> None:
        self.name = name
        self.master = RedisServer(appendonly=True, extra_args=self.NODE_ARGS)
        follow = ("--replicaof", "127.0.0.1", str(self.master.port))
        self.replicas = [
            RedisServer(appendonly=True, extra_args=(*self.NODE_ARGS, *follow))
            for _ in range(replicas)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.dir = Path(tempfile.mkdtemp(prefix="edgematch-sentinel-"))
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """``sentinel://…;sentinel://…/0``, for EDGEMATCH_REDIS_URL and EDGEMATCH_BROKER_URL."""
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    @property
    def nodes(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def start(self, timeout_s: float = 30.0) -> SentinelGroup:
        """Start the replicas and the sentinels (the master must be up); return once every
        replica is in sync and every sentinel knows them."""
        for replica in self.replicas:
            replica.start()
        quorum = len(self.sentinel_ports) // 2 + 1
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"logfile {self.dir / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {self.name} 127.0.0.1 {self.master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {self.name} 5000\n"
                f"sentinel failover-timeout {self.name} 60000\n"
                f"sentinel parallel-syncs {self.name} 1\n",
                encoding="utf-8",
            )
            self._sentinels.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            wait_for_port(port)
        deadline = time.monotonic() + timeout_s
        while not self._settled():
            if time.monotonic() > deadline:
                raise TimeoutError("the sentinels did not see every replica in sync")
            time.sleep(0.2)
        return self

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it (None: none does)."""
        for port in self.sentinel_ports:
            reply = _ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            if reply and len(reply) == 2:
                return int(reply[1])
        return None

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def _settled(self) -> bool:
        for port in self.sentinel_ports:
            known = _ask(port, "SENTINEL", "REPLICAS", self.name)
            if known is None or len(known) < len(self.replicas):
                return False
        info = _ask(self.master.port, "INFO", "replication") or {}
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        return sum(1 for v in online if v.get("state") == "online") >= len(self.replicas)

    def close(self) -> None:
        for proc in self._sentinels:
            _stop(proc)
        self._sentinels.clear()
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _ask(port: int, *command: str) -> Any:
    """One command to a local Redis or sentinel; None when it does not answer."""
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout_s=2.0)
    try:
        return client.execute_command(*command)
    except RedisUnavailable:
        return None
    finally:
        client.close()


class MotoServer:
    """moto's server mode: S3 and SQS over real HTTP, notifications S3 → SQS included."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 30.0)
        return self

    def close(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


class SandboxServer:
    """The PhotoDNA sandbox as a separate process (``python -m devtools.sandbox``)."""

    def __init__(
        self,
        *,
        key: str,
        rate: float,
        known_file: Path | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.key = key
        self.rate = rate
        self.known_file = known_file
        self.extra = extra or []
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/photodna/v1.0"

    def start(self) -> SandboxServer:
        args = [
            sys.executable,
            "-m",
            "devtools.sandbox",
            "--port",
            str(self.port),
            "--rate",
            str(self.rate),
        ]
        if self.known_file is not None:
            args += ["--known", str(self.known_file)]
        env = dict(os.environ, EDGEMATCH_SANDBOX_KEY=self.key)
        self.proc = subprocess.Popen(
            [*args, *self.extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self

    def close(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def read_procfile(path: Path | None = None) -> dict[str, str]:
    """Process type → command, from the Procfile."""
    procs: dict[str, str] = {}
    for raw in (path or ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        procs[name.strip()] = command.strip()
    return procs


class Processes:
    """The Procfile's process types, run as real processes with one environment."""

    def __init__(
        self, env: Mapping[str, str], *, log_dir: Path, procfile: Path | None = None
    ) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.commands = read_procfile(procfile)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(
        self,
        name: str,
        *,
        extra_args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        command = shlex.split(self.commands[name]) + (extra_args or [])
        binary = Path(sys.executable).parent / command[0]
        if binary.exists():
            command[0] = str(binary)
        log_file = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log_file)
        proc = subprocess.Popen(
            command,
            env={**self.env, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout_s: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            _stop(proc, timeout_s)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group of ``name`` (a prefork worker and its children)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def aws_env(moto_url: str) -> dict[str, str]:
    """boto3's own variables pointing at moto, with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "edgematch-local",
        "AWS_SECRET_ACCESS_KEY": "edgematch-local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
