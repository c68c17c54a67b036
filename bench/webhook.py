"""``python -m bench.webhook``: how many notifications a second ``edgematch webhook`` takes.

On this machine, to 127.0.0.1 only, bounded in count and time:

1. a **baseline** in the same run: uvicorn with the same HTTP parser and event loop serving
   a do-nothing ASGI app (it reads the body and answers 200), so the figures can be read
   against what the HTTP stack and this load generator allow on this machine, now;
2. ``edgematch webhook`` itself, started as the Procfile starts it, on a private
   redis-server, on the defaults (token required, INFO logs as JSON lines to a file).

Each is offered the same MinIO-shaped notifications (one per request, a distinct key each)
at a fixed rate (open loop: latency counts from the moment a request was due, so a slow
answer is not hidden by the requests it delays), then as fast as ``--connections``
connections can send them (closed loop: the ceiling). No worker runs: a drain in this
process takes the ingest tasks out of the broker as a pool that keeps up would, counting
the hash files in them, so the high-water mark is never reached and every accepted
notification is checked to be in a task. Prints a table and writes
``bench/results/webhook.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from devtools.devstack import RedisServer, free_port, wait_for_port
from devtools.senders import minio_notification
from edgematch.infra.keys import Keys
from edgematch.infra.redisclient import redis_client

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-token-0123456789abcdef0123"
KEYS = Keys("edgematch")


# -- the baseline server ---------------------------------------------------------------------
async def baseline_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Read the body, answer 200 ``{}``: the HTTP stack's own cost and nothing else."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


# -- the load generator ------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection, written by hand to cost the generator little."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.writer.close()
            self.writer = self.reader = None
        return status


def requests(count: int, port: int, tag: str) -> list[bytes]:
    """``count`` distinct MinIO notifications as raw HTTP requests."""
    out = []
    for n in range(count):
        body = json.dumps(
            minio_notification(
                "uploads", f"bench/{tag}/{n:07d}.jpg.bin", version_id=None, etag="e", size=924
            )
        ).encode()
        out.append(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (port, TOKEN.encode(), len(body), body)
        )
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _load(
    port: int, reqs: list[bytes], connections: int, rate: float | None
) -> dict[str, Any]:
    """Send every request of ``reqs``; at ``rate`` a second (open loop) or flat out."""
    start = time.perf_counter() + 0.05
    latencies: list[float] = []
    codes: dict[str, int] = {}
    index = 0

    async def worker() -> None:
        nonlocal index
        conn = Connection(port)
        while index < len(reqs):
            n = index
            index += 1
            due = start + n / rate if rate else time.perf_counter()
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                status = await conn.post(reqs[n])
            except (OSError, asyncio.IncompleteReadError):
                conn = Connection(port)
                status = 0
            latencies.append(time.perf_counter() - due)
            codes[str(status)] = codes.get(str(status), 0) + 1

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    ok = codes.get("200", 0)
    return {
        "requests": len(reqs),
        "connections": connections,
        "offered_per_s": rate,
        "elapsed_s": round(elapsed, 3),
        "accepted_per_s": round(ok / elapsed, 1),
        "codes": codes,
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
    }


def load(port: int, reqs: list[bytes], connections: int, rate: float | None) -> dict[str, Any]:
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - the generator's loop, as fast as the server's

        return uvloop.run(_load(port, reqs, connections, rate))
    return asyncio.run(_load(port, reqs, connections, rate))


# -- the drain -----------------------------------------------------------------------------------
class Drain:
    """Takes ingest tasks out of the broker as a pool that keeps up would; counts their files."""

    def __init__(self, url: str) -> None:
        self.client = redis_client(url)
        self.objects = 0
        self.tasks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Drain:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._take()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._take()

    def _take(self) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(KEYS.queue("ingest"), 0, -1)
        pipe.delete(KEYS.queue("ingest"))
        # The tasks' journal entries (no worker will end them): kept from growing.
        pipe.delete("edgematch:journal", "edgematch:journal:at")
        taken = pipe.execute()[0]
        for raw in taken:
            _args, kwargs, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
            self.tasks += 1
            self.objects += len(kwargs["events"]) if "events" in kwargs else 1


# -- the servers -------------------------------------------------------------------------------
def _spawn(argv: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_for_port(port, 30)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phases(port: int, tag: str, args: argparse.Namespace, pid: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    phases = (
        ("steady", int(args.rate * args.seconds), args.rate),
        ("ceiling", args.ceiling_requests, None),
    )
    for phase, count, rate in phases:
        reqs = requests(count, port, f"{tag}-{phase}")
        before = _cpu_s(pid)
        out[phase] = load(port, reqs, args.connections, rate)
        # The server's own CPU per request: what the machine's other load changes least.
        out[phase]["server_cpu_ms_per_request"] = round((_cpu_s(pid) - before) * 1000 / count, 3)
    return out


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "AWS_"))}
    results: dict[str, Any] = {}

    port = free_port()
    base = _spawn(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.webhook:baseline_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        {**env, "PYTHONPATH": str(ROOT)},
        tmp / "baseline.log",
        port,
    )
    try:
        load(port, requests(200, port, "warm-b"), args.connections, None)
        results["baseline"] = _phases(port, "baseline", args, base.pid)
    finally:
        _stop(base)

    server = RedisServer(appendonly=True).start()
    drain = Drain(server.url).start()
    port = free_port()
    hook = _spawn(
        [sys.executable, "-m", "edgematch.ops.cli", "webhook"],
        {
            **env,
            "EDGEMATCH_REDIS_URL": server.url,
            "EDGEMATCH_WEBHOOK_TOKEN": TOKEN,
            "EDGEMATCH_WEBHOOK_HOST": "127.0.0.1",
            "EDGEMATCH_WEBHOOK_PORT": str(port),
        },
        tmp / "webhook.log",
        port,
    )
    try:
        load(port, requests(200, port, "warm-w"), args.connections, None)
        results["webhook"] = _phases(port, "webhook", args, hook.pid)
    finally:
        _stop(hook)
        drain.stop()
        server.close()
    accepted = 200 + sum(p["codes"].get("200", 0) for p in results["webhook"].values())
    results["enqueued"] = {
        "accepted": accepted,
        "objects_in_tasks": drain.objects,
        "tasks": drain.tasks,
    }
    return results


def _table(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"edgematch webhook benchmark: {os.cpu_count()} cores, 127.0.0.1, "
        f"{args.connections} connections, MinIO-shaped notifications (one per request)",
        "",
        f"{'':10} {'phase':8} {'offered/s':>9} {'accepted/s':>10} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'cpu ms/req':>10}  codes",
    ]
    for system in ("baseline", "webhook"):
        for phase, r in results[system].items():
            offered = f"{r['offered_per_s']:.0f}" if r["offered_per_s"] else "max"
            lines.append(
                f"{system:10} {phase:8} {offered:>9} {r['accepted_per_s']:>10.1f} "
                f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.1f} "
                f"{r['server_cpu_ms_per_request']:>10.3f}  {r['codes']}"
            )
    w, b = results["webhook"], results["baseline"]
    ratio = w["ceiling"]["accepted_per_s"] / b["ceiling"]["accepted_per_s"]
    e = results["enqueued"]
    load = results["load_average"]
    lines += [
        "",
        f"load average (1 min) before / after: {load['before'][0]:.1f} / {load['after'][0]:.1f} "
        f"on {os.cpu_count()} cores (others' work on this shared machine)",
        f"ceiling, webhook / baseline: {ratio:.2f}",
        f"enqueued: {e['objects_in_tasks']} hash files in {e['tasks']} tasks "
        f"for {e['accepted']} accepted notifications",
        f"target (issue 16): >= 500 notifications/s with p99 < 50 ms at {args.rate:.0f}/s "
        f"offered: {'met' if results['met'] else 'NOT met'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=600.0, help="offered notifications/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the steady phase")
    parser.add_argument("--connections", type=int, default=16, help="client connections")
    parser.add_argument(
        "--ceiling-requests",
        type=int,
        default=6000,
        help="notifications sent flat out for the ceiling",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "webhook.json")
    args = parser.parse_args(argv)
    import tempfile  # noqa: PLC0415

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgematch-bench-webhook-") as tmp:
        results = run(args, Path(tmp))
    # The machine is shared: what else ran meanwhile, to read the figures with.
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    steady = results["webhook"]["steady"]
    results["met"] = bool(
        steady["accepted_per_s"] >= 500
        and steady["p99_ms"] < 50
        and set(steady["codes"]) == {"200"}
        and results["enqueued"]["objects_in_tasks"] == results["enqueued"]["accepted"]
    )
    results["settings"] = vars(args) | {"out": str(args.out)}
    results["date"] = datetime.date.today().isoformat()
    results["machine"] = {"cores": os.cpu_count(), "python": platform.python_version()}
    table = _table(results, args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if results["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
