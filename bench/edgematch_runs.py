"""edgematch as built: the Procfile's intake, worker and beat on the shared stack.

For each worker count the processes are started once and warmed up, then:

* light load first (on an idle pipeline): one upload every 500 ms; latency is from the
  end of the hash file's upload to ``recorded_at``, set by the results consumer when it
  records the result;
* then saturated: intake is stopped, ``hashes`` uploads (content object + hash file) are made,
  so their events wait in SQS; CPU counters and Redis's command count are read; intake is
  started again and the run lasts until every result is recorded (or the time cap).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import MachineLoad, TreeCPU
from bench.stack import HASH_BYTES, Stack


@dataclass
class SaturatedRun:
    scanned_at: list[float]
    hashes_fed: int
    capped: bool
    sandbox: dict[str, Any]
    cpu_ms: dict[str, float]
    redis_commands: int
    redis_by_command: dict[str, int]
    machine: dict[str, float] = field(default_factory=dict)
    #: Results answered from the match or result cache (no API call).
    from_cache: int = 0
    #: Hashes fed that are byte-identical to one scanned before the run.
    repeats: int = 0
    #: Each accepted API request of the run: (time of its answer, hashes it carried), from
    #: the results' ``tracking_id`` and ``scanned_at``.
    requests_at: list[tuple[float, int]] = field(default_factory=list)
    #: CPU ms of the test doubles (moto, sandbox, redis-server) over the same run.
    doubles_cpu_ms: dict[str, float] = field(default_factory=dict)
    #: moto's requests by operation over the run (``s3:GetObject`` …), counted by moto.
    moto_requests: dict[str, int] = field(default_factory=dict)


@dataclass
class LightRun:
    latencies_s: list[float]
    uploads: int
    sandbox: dict[str, Any]


def _log_count(stack: Stack, process: str, event: str) -> int:
    needle = f'"event": "{event}"'
    return sum(needle in line for line in stack.pipe.log_lines(process))


def _requests(results: Any) -> list[tuple[float, int]]:
    """The API requests behind ``results`` (by ``tracking_id``): (first ``scanned_at``,
    hashes), in time order; results without a tracking id (cache answers) are left out."""
    by_request: dict[str, list[float]] = {}
    for doc in results:
        if doc.get("tracking_id") and not doc.get("from_cache"):
            by_request.setdefault(str(doc["tracking_id"]), []).append(float(doc["scanned_at"]))
    return sorted((min(times), len(times)) for times in by_request.values())


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


class EdgematchProcesses:
    """The three process types for one configuration, started and warmed up."""

    def __init__(
        self,
        stack: Stack,
        *,
        workers: int,
        env: dict[str, str],
        tag: str,
        profile_dir: Path | None = None,
        match_only: bool = False,
    ) -> None:
        self.stack = stack
        self.match_only = match_only
        self.profile_dir = profile_dir
        self.workers = workers
        self.env = env
        self.tag = tag
        self._procs = stack.pipe.processes
        assert self._procs is not None

    def start(self) -> EdgematchProcesses:
        for name in ("worker", "beat"):
            self._start(name)
        keys = [f"{self.tag}/warm/{i}.jpg.bin" for i in range(5)]
        if self.match_only:
            self._fill_buffer(keys)
        else:
            self._start_intake()
            self.stack.upload_many(keys)
        deadline = time.monotonic() + 90
        got = self._results(keys)
        while len(got) < len(keys) and time.monotonic() < deadline:
            time.sleep(0.1)
            got = self._results(keys)
        if len(got) != len(keys):
            raise RuntimeError(f"edgematch did not warm up: {len(got)}/5 results")
        return self

    def _start(self, name: str) -> None:
        assert self._procs is not None
        args = None
        if name == "worker":
            args = ["--concurrency", str(self.workers)]
            if self.match_only:
                # Results stay in their queue: the benchmark reads them there.
                args = ["--queues", "match", *args]
        self._procs.start(name, extra_args=args, env=self.env)

    def _results(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        if self.match_only:
            wanted = set(keys)
            return {k: v for k, v in self.stack.queued_results().items() if k in wanted}
        return self.stack.results(keys)

    def _fill_buffer(self, keys: list[str]) -> None:
        """Put an item for each key straight into the batch buffer, as ingest would."""
        env = {**self.stack.pipe.env(), **self.env}
        self.stack.push_items(keys, bucket=self.stack.pipe.bucket, env=env)

    def _start_intake(self) -> TreeCPU:
        """Start intake and return its CPU counter, started once it has finished booting."""
        before = _log_count(self.stack, "intake", "intake_started")
        self._start("intake")
        _wait_for(lambda: _log_count(self.stack, "intake", "intake_started") > before, 60, "intake")
        cpu = TreeCPU(self.pid("intake"))
        cpu.start()
        return cpu

    def pid(self, name: str) -> int:
        assert self._procs is not None
        return self._procs.procs[name].pid

    def stop(self) -> None:
        assert self._procs is not None
        for name in ("intake", "beat", "worker"):
            if name in self._procs.procs:
                self._procs.stop(name)

    # -- phases --------------------------------------------------------------------------
    def _seed(self, count: int) -> list[bytes]:
        """Scan ``count`` random hashes (not measured) and return their bytes."""
        seeds = [os.urandom(HASH_BYTES) for _ in range(count)]
        keys = [f"{self.tag}/seed/{i}.jpg.bin" for i in range(count)]
        self.stack.upload_many(keys, data=lambda key: seeds[int(key.rsplit("/", 1)[1][:-8])])
        found = self.stack.wait_results(keys, deadline=time.monotonic() + 120)
        if len(found) != count:
            raise RuntimeError(f"seeding the repeats: {len(found)}/{count} results")
        return seeds

    def saturated(self, hashes: int, *, cap_s: float, repeats: float = 0.0) -> SaturatedRun:
        """The whole pipeline through a backlog of ``hashes`` uploads waiting in SQS, or —
        with ``match_only`` — the match step alone through as many items put straight into
        the batch buffer (no S3, no intake, no ingest: only the limiter can hold it back).

        ``repeats``: the share of the uploads that are byte-identical copies of hashes
        scanned (clean) before the run, spread evenly through it — re-uploads."""
        stack = self.stack
        assert self._procs is not None
        keys = [f"{self.tag}/sat/{i}.jpg.bin" for i in range(hashes)]
        copies: dict[str, bytes] = {}
        if repeats > 0:
            seeds = self._seed(max(1, int(hashes * repeats)))
            every = 1.0 / repeats
            for n, seed in enumerate(seeds):
                copies[keys[min(hashes - 1, int(n * every))]] = seed
        if not self.match_only:
            self._procs.stop("intake")
            stack.upload_many(keys, data=copies.get)
        stack.sandbox_reset()
        cpus = {name: TreeCPU(self.pid(name)) for name in ("worker", "beat")}
        doubles = {name: TreeCPU(pid) for name, pid in stack.double_pids().items()}
        for cpu in [*cpus.values(), *doubles.values()]:
            cpu.start()
        stack.moto_requests(reset=True)
        own_before = stack.redis.commands
        total_before = stack.redis.total_commands()
        by_command_before = stack.redis.commandstats()
        load = MachineLoad()
        load.start()
        if self.match_only:
            self._fill_buffer(keys)
        else:
            cpus["intake"] = self._start_intake()
        profilers = self._profile(cap_s)

        found: dict[str, dict[str, Any]] = {}
        pending = list(keys)
        deadline = time.monotonic() + cap_s + 60.0
        first_seen: float | None = None
        capped = False
        while pending:
            if time.monotonic() >= deadline:
                capped = True
                break
            found.update(self._results(pending))
            pending = [k for k in pending if k not in found]
            if found and first_seen is None:
                first_seen = time.monotonic()
                deadline = first_seen + cap_s
            for cpu in [*cpus.values(), *doubles.values()]:
                cpu.poll()
            load.poll()
            time.sleep(0.25)

        cpu_ms = {name: cpu.used_ms() for name, cpu in cpus.items()}
        doubles_cpu_ms = {name: cpu.used_ms() for name, cpu in doubles.items()}
        moto_requests = stack.moto_requests()
        machine = load.result()
        for proc in profilers:
            proc.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
        for proc in profilers:
            proc.wait(30)
        total_after = stack.redis.total_commands()
        by_command_after = stack.redis.commandstats()
        own = stack.redis.commands - own_before
        sandbox = stack.sandbox_stats()
        return SaturatedRun(
            scanned_at=sorted(float(doc["scanned_at"]) for doc in found.values()),
            hashes_fed=hashes,
            capped=capped,
            sandbox=sandbox,
            cpu_ms=cpu_ms,
            redis_commands=total_after - total_before - own,
            redis_by_command={
                name: calls - by_command_before.get(name, 0)
                for name, calls in by_command_after.items()
                if calls - by_command_before.get(name, 0) > 0
            },
            machine=machine,
            from_cache=sum(bool(doc.get("from_cache")) for doc in found.values()),
            repeats=len(copies),
            requests_at=_requests(found.values()),
            doubles_cpu_ms=doubles_cpu_ms,
            moto_requests=moto_requests,
        )

    def _profile(self, duration_s: float) -> list[subprocess.Popen[bytes]]:
        """py-spy on every edgematch process tree for the saturated phase (``--profile``)."""
        if self.profile_dir is None:
            return []
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        assert self._procs is not None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--subprocesses",
                    # Only the thread holding the GIL (on CPU, in Python), sampled without
                    # pausing the process: a CPU profile that leaves the run's pace alone.
                    "--gil",
                    "--nonblocking",
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--duration",
                    str(int(duration_s + 60)),
                    "--output",
                    str(self.profile_dir / f"{self.tag}-{name}.txt"),
                    "--pid",
                    str(self.pid(name)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name in ("worker", "intake", "beat")
            if name in self._procs.procs
        ]

    def light(self, uploads: int, *, every_s: float = 0.5) -> LightRun:
        stack = self.stack
        stack.sandbox_reset()
        s3 = stack.pipe.s3()
        uploaded: dict[str, float] = {}
        start = time.monotonic()
        for i in range(uploads):
            key = f"{self.tag}/light/{i}.jpg.bin"
            due = start + i * every_s
            time.sleep(max(0.0, due - time.monotonic()))
            stack.upload(s3, key)
            uploaded[key] = time.time()
        found = stack.wait_results(list(uploaded), deadline=time.monotonic() + 30)
        return LightRun(
            latencies_s=[
                float(found[k]["recorded_at"]) - t for k, t in uploaded.items() if k in found
            ],
            uploads=uploads,
            sandbox=stack.sandbox_stats(),
        )
