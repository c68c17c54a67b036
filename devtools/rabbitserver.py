"""A private RabbitMQ node for the tests and the benchmarks: never the machine's own.

Started from the distribution's ``rabbitmq-server`` (scripts/bootstrap installs it when it
is missing) as the current user, with everything a node keeps in a temporary directory
(its database, logs, configuration, enabled plugins, the Erlang cookie in ``HOME``) and
every port its own: AMQP on a free port of 127.0.0.1, the distribution port, and a
private ``epmd`` (Erlang's port mapper, which a node registers with) on a third, so it
neither sees nor disturbs a RabbitMQ the machine runs on the default ports.

A node takes seconds to start, so one serves many pipelines: each :meth:`vhost_url` is
a virtual host of its own (a pool of them is created at boot from a definitions file), so
two pipelines' queues never meet. :meth:`restart` stops the node and starts it again on
the same ports and data: quorum queues keep what they had confirmed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp.exceptions
import kombu

from devtools.devstack import free_port, wait_for_port

#: Virtual hosts created at boot; :meth:`RabbitServer.vhost_url` hands them out in turn.
VHOSTS = 16
USER, PASSWORD = "edgematch", "edgematch-local"
#: Where the distribution's packages put the node's own scripts (the ones on PATH switch
#: to the ``rabbitmq`` user, which cannot write our temporary directory).
SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def installed() -> bool:
    return (SCRIPTS / "rabbitmq-server").exists() or shutil.which("rabbitmq-server") is not None


def _script(name: str) -> str:
    path = SCRIPTS / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def _epmd() -> str:
    found = shutil.which("epmd")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")):
        return str(candidate)
    raise RuntimeError("epmd (Erlang) is not installed: run scripts/bootstrap")


#: Every node started by this process, by AMQP port (:func:`serving`).
_NODES: dict[int, RabbitServer] = {}


def serving(url: str) -> RabbitServer:
    """The node of this process serving ``url`` (a :meth:`RabbitServer.vhost_url`)."""
    return _NODES[int(urlsplit(url).port or 0)]


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + pw))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class RabbitServer:
    """A private RabbitMQ node on free ports, in its own directory."""

    def __init__(self, *, vhosts: int = VHOSTS, tls: tuple[Path, Path, Path] | None = None) -> None:
        """``tls``: (CA, certificate, key) PEM files: the node then also listens for
        ``amqps://`` on ``tls_port`` with that certificate."""
        if not installed():
            raise RuntimeError("rabbitmq-server is not installed: run scripts/bootstrap")
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.dir = Path(tempfile.mkdtemp(prefix="edgematch-rabbit-"))
        self.nodename = f"edgematch{self.port}@localhost"
        self.vhosts = [f"v{i}" for i in range(vhosts)]
        self._next = itertools.count()
        self._lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self._write_files()
        _NODES[self.port] = self

    @property
    def url(self) -> str:
        """The first virtual host's URL."""
        return self.url_of(self.vhosts[0])

    def url_of(self, vhost: str) -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{vhost}"

    def vhost_url(self) -> str:
        """A virtual host no one was given before (a pipeline's own queues)."""
        with self._lock:
            index = next(self._next)
        if index >= len(self.vhosts):
            raise RuntimeError(f"all {len(self.vhosts)} virtual hosts are given out")
        return self.url_of(self.vhosts[index])

    def env(self) -> dict[str, str]:
        d = self.dir
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(d),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
        }

    def _write_files(self) -> None:
        d = self.dir
        (d / "enabled_plugins").write_text("[].\n", encoding="utf-8")
        cookie = d / ".erlang.cookie"
        cookie.write_text(base64.b32encode(os.urandom(15)).decode(), encoding="utf-8")
        cookie.chmod(0o400)
        definitions: dict[str, Any] = {
            "users": [
                {
                    "name": USER,
                    "password_hash": password_hash(PASSWORD),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["administrator"],
                }
            ],
            "vhosts": [{"name": v} for v in self.vhosts],
            "permissions": [
                {"user": USER, "vhost": v, "configure": ".*", "write": ".*", "read": ".*"}
                for v in self.vhosts
            ],
        }
        (d / "definitions.json").write_text(json.dumps(definitions), encoding="utf-8")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"load_definitions = {d / 'definitions.json'}\n"
            # A test machine's disk may be nearly full; the node must not block publishers.
            "disk_free_limit.absolute = 1MB\n" + self._tls_conf(),
            encoding="utf-8",
        )

    def _tls_conf(self) -> str:
        if self.tls is None:
            return ""
        ca, cert, key = self.tls
        return (
            f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {ca}\n"
            f"ssl_options.certfile = {cert}\n"
            f"ssl_options.keyfile = {key}\n"
            "ssl_options.verify = verify_none\n"
            "ssl_options.fail_if_no_peer_cert = false\n"
        )

    def tls_url(self, host: str = "127.0.0.1") -> str:
        """The first virtual host over TLS, by ``host`` (the certificate's names)."""
        return f"amqps://{USER}:{PASSWORD}@{host}:{self.tls_port}/{self.vhosts[0]}"

    def start(self, timeout_s: float = 90.0) -> RabbitServer:
        env = self.env()
        if self.epmd is None or self.epmd.poll() is not None:
            self.epmd = subprocess.Popen(
                [_epmd(), "-port", str(self.epmd_port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [_script("rabbitmq-server")],
            env=env,
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout_s)
            if self.tls_port is not None:
                wait_for_port(self.tls_port, timeout_s)
        except TimeoutError:
            self.stop()
            tail = (self.dir / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"rabbitmq-server did not start: {tail}") from None
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the node (SIGTERM: RabbitMQ's orderly shutdown), its whole process group."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def queue_counts(self, url: str) -> dict[str, tuple[int, int]]:
        """Every quorum queue of ``url``'s virtual host: ``(ready, unacknowledged)`` messages
        now, asked of each queue's Raft leader (``rabbitmqctl eval``). Not ``list_queues``:
        its counts of a quorum queue are metrics a few seconds old, and a wait on them
        could take a queue for empty that a task has just entered."""
        return self._list(url)

    def consumers(self, url: str, queue: str) -> int:
        """The consumers of ``queue`` in ``url``'s virtual host now."""
        return self.declared(url, queue)[1]

    def ready(self, url: str, queue: str) -> int:
        """The messages ready for delivery in ``queue`` (not those consumers hold)."""
        return self.declared(url, queue)[0]

    def declared(self, url: str, queue: str) -> tuple[int, int]:
        """``(ready messages, consumers)`` of ``queue`` now: a passive declare over AMQP,
        cheap, unlike ``rabbitmqctl``, which starts an Erlang VM; ``(0, 0)`` when the queue
        does not exist yet."""
        with kombu.Connection(url, connect_timeout=5) as conn:
            channel: Any = conn.channel()
            try:
                ok = channel.queue_declare(queue=queue, passive=True)
            except amqp.exceptions.NotFound:
                return 0, 0
            return int(ok.message_count), int(ok.consumer_count)

    def _list(self, url: str) -> dict[str, tuple[int, int]]:
        vhost = unquote(urlsplit(url).path.lstrip("/")) or "/"
        expression = (
            "[begin {resource, _, queue, N} = amqqueue:get_name(Q), P = amqqueue:get_pid(Q), "
            "{ok, {_, R}, _} = ra:local_query(P, fun rabbit_fifo:query_messages_ready/1), "
            "{ok, {_, C}, _} = ra:local_query(P, fun rabbit_fifo:query_messages_checked_out/1), "
            f'{{N, R, C}} end || Q <- rabbit_amqqueue:list(<<"{vhost}">>), '
            "amqqueue:get_type(Q) =:= rabbit_quorum_queue]."
        )
        done = subprocess.run(
            [_script("rabbitmqctl"), "-n", self.nodename, "eval", expression],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return {
            name: (int(ready), int(held))
            for name, ready, held in re.findall(r'\{<<"([^"]+)">>,(\d+),(\d+)\}', done.stdout)
        }

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.epmd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.epmd.pid, signal.SIGKILL)
            self.epmd.wait(5)
            self.epmd = None
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:  # pragma: no cover - a manual check: start one, print its URL, stop it
    server = RabbitServer().start()
    try:
        print(server.url, flush=True)
        input("RabbitMQ is running; press Enter to stop it. ")
    finally:
        server.close()


if __name__ == "__main__":  # pragma: no cover
    main()
