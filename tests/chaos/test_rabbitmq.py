"""Chaos on RabbitMQ: the node restarts under load; a task that kills its worker.

The Procfile's real processes with ``EDGEMATCH_BROKER_URL`` on a virtual host of the
session's private RabbitMQ node (tests/conftest.py), default settings otherwise. What
RabbitMQ alone guarantees is checked here; what both brokers share runs on both
(tests/chaos/test_crashes.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from devtools.localstack import wait_until as _wait
from devtools.rabbitserver import serving
from tests.chaos.test_crashes import (
    QUARANTINE,
    _check_effects,
    _hashes,
    _wait_all,
    uploader,  # noqa: F401 - the fixture
)
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, cli, dead_letters, results_count

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

RecordLedger = Callable[..., dict[str, Any]]


# Not alone: 100 uploads at 20 requests a second leave the two minutes' wait a wide margin
# (36 s alone, 39 s beside two other pipelines, node restart included).
def test_rabbitmq_restarted_mid_run(
    make_pipeline: MakePipeline,
    record_ledger: RecordLedger,
    uploader: Callable[..., threading.Thread],  # noqa: F811
) -> None:
    """RabbitMQ stops mid-run (its orderly shutdown) and starts again: quorum queues keep
    every task they confirmed, every process reconnects on its own, nothing is lost or done
    twice."""
    pipe = make_pipeline(rate=20.0, quarantine_bucket=QUARANTINE, broker="rabbitmq")
    assert pipe.broker_url is not None
    node = serving(pipe.broker_url)
    hashes, known = _hashes("rabbit-restart", 100)
    pipe.add_known(hashes[k] for k in known)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    uploading = uploader(pipe, hashes)
    keys = list(hashes)
    _wait(lambda: results_count(pipe, keys) >= 20, 60, "the first results")

    stopped = time.monotonic()
    node.restart()
    down_s = time.monotonic() - stopped
    fault_end = time.time()
    uploading.join(120)
    _wait_all(pipe, keys, len(known), timeout_s=120)

    ledger = record_ledger(
        pipe,
        "broker stopped and restarted mid-run",
        keys,
        fault_end=fault_end,
        matches=known,
        notes=f"RabbitMQ stopped and started again ({down_s:.0f} s), quorum queues",
    )
    assert not ledger["dead_letters"], ledger["dead_letter_samples"]
    _check_effects(ledger, len(known))
    for name in ("intake", "worker", "beat"):
        assert pipe.processes.procs[name].poll() is None, f"{name} exited"


def test_a_task_that_kills_its_worker_is_dead_lettered_after_the_delivery_limit(
    make_pipeline: MakePipeline,
) -> None:
    """A task whose every delivery dies with its worker is delivered EDGEMATCH_MAX_DELIVERIES
    (3) times, then RabbitMQ dead-letters it and the sweep files it as a ``poison`` dead
    letter with its arguments, where ``edgematch dlq`` finds it; nothing runs it again until
    ``edgematch dlq replay`` does.

    Each delivery goes to a worker that is frozen (SIGSTOP: it takes the message and does
    nothing more, as a worker wedged in a crash) and is then SIGKILLed: what RabbitMQ sees
    of a task that kills its worker, a delivery whose consumer died unacknowledged. The
    next worker is consuming, and frozen, before the one holding the task is killed, so
    the requeued task can only go to it.
    """
    pipe = make_pipeline(rate=20.0, broker="rabbitmq")
    url = pipe.broker_url
    assert url is not None and pipe.processes is not None
    node = serving(url)
    ingest = f"{pipe.keys.ns}.ingest"
    pipe.start_processes("intake")

    def frozen_worker(consumers: int) -> subprocess.Popen[bytes]:
        worker = pipe.processes.start("worker", extra_args=["--concurrency", "1"])  # type: ignore[union-attr]
        _wait(lambda: node.consumers(url, ingest) == consumers, 60, "a consumer")
        os.killpg(worker.pid, signal.SIGSTOP)
        return worker

    holder = frozen_worker(1)
    key = "poison/img.jpg.bin"
    pipe.upload(key, os.urandom(HASH), content=b"image bytes")
    _wait(lambda: node.queue_counts(url).get(ingest) == (0, 1), 60, "delivery 1 held", poll_s=0.5)
    for delivery in (2, 3):
        successor = frozen_worker(2)
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        _wait(lambda: node.consumers(url, ingest) == 1, 30, "the holder gone")
        _wait(
            lambda: node.queue_counts(url).get(ingest) == (0, 1),
            30,
            f"delivery {delivery}",
            poll_s=0.5,
        )
        holder = successor
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait(10)
    del pipe.processes.procs["worker"]

    # Past the limit: not in ingest any more; a worker's sweep files it.
    _wait(
        lambda: node.queue_counts(url).get(ingest) == (0, 0),
        30,
        "the task dead-lettered",
        poll_s=0.5,
    )
    pipe.start_processes("worker", "beat", worker_args=["--concurrency", "1"])
    try:
        _wait(lambda: bool(dead_letters(pipe)), 60, "the poison dead letter")
    except AssertionError as exc:
        said = [line for line in pipe.log_lines("worker") if "warn" in line or "rror" in line]
        beat = pipe.log_lines("beat")[-5:]
        raise AssertionError(f"{exc}: {said[-10:]} {beat} {node.queue_counts(url)}") from None
    (entry,) = dead_letters(pipe)
    assert entry["reason"] == "poison", entry
    assert entry["attempts"] == 3, entry
    assert key in json.dumps(entry["args"]), entry
    _wait(
        lambda: node.queue_counts(url).get(f"{pipe.keys.ns}.dead") == (0, 0),
        30,
        "drained",
        poll_s=0.5,
    )
    assert node.queue_counts(url).get(ingest) == (0, 0)
    assert pipe.result(key) is None  # never run
    listed = cli(pipe, "dlq", "list", "--json")
    assert listed.returncode == 0 and "poison" in listed.stdout, listed

    # Whatever killed its workers fixed, on-call replays it: it runs once, and its entry goes.
    replayed = cli(pipe, "dlq", "replay", entry["id"])
    assert replayed.returncode == 0, replayed
    assert pipe.wait_for_results([key], timeout_s=60), "the replayed upload has no verdict"
    _wait(lambda: not dead_letters(pipe), 30, "the replayed entry resolved")
