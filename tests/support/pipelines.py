"""What the end-to-end and chaos tests ask of a running LocalPipeline.

Each reads what the pipeline left behind (its logs, Redis, moto), never what it says about
itself. ``wait_settled`` is what a negative check waits for: "nothing else happened" can
only be asserted once nothing is left that could still happen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from devtools.localstack import LocalPipeline, wait_until
from devtools.rabbitserver import serving
from edgematch.infra.redisclient import redis_client
from edgematch.names import QUEUE_STEPS, unacked_key

#: The ``make_pipeline`` fixture: LocalPipeline's keyword arguments in, a started one out.
MakePipeline = Callable[..., LocalPipeline]


def log_events(pipe: LocalPipeline, name: str, process: str = "worker") -> list[dict[str, Any]]:
    """Every ``name`` event in ``process``'s JSON log, in order (a line a SIGKILL cut short
    is skipped)."""
    found: list[dict[str, Any]] = []
    for line in pipe.log_lines(process):
        if f'"{name}"' not in line or not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == name:
            found.append(doc)
    return found


def next_second() -> None:
    """Wait for the clock to turn to its next whole second: S3 (and moto) keep
    LastModified to the second, so what is written next is dated after all that was
    written before. A wait on the clock, at most a second."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.01)


def discard(pipe: LocalPipeline) -> None:
    """Close a pipeline whose test is over: SIGKILL its processes first, not SIGTERM.
    Graceful shutdown is not what teardown checks (tests/e2e/test_operations.py checks it,
    explicitly); SIGTERM would cost each test seconds of soft-shutdown grace."""
    if pipe.processes is not None:
        for name in list(pipe.processes.procs):
            pipe.processes.kill(name)
    # moto's server answers SIGTERM with sys.exit and then takes a second and a half to
    # wind down its interpreter; nothing in it is wanted any more.
    for server in (pipe.moto.proc, pipe.sandbox.proc):
        if server is not None and server.poll() is None:
            server.kill()
            server.wait(10)
    pipe.close()


def dead_letters(pipe: LocalPipeline) -> list[dict[str, Any]]:
    """Every dead-letter entry, as stored."""
    client = redis_client(pipe.redis.url)
    try:
        return [json.loads(raw) for raw in client.hvals(pipe.keys.dead_letters)]
    finally:
        client.close()


def results_count(pipe: LocalPipeline, keys: Iterable[str]) -> int:
    """How many of ``keys`` (hash files in ``pipe.bucket``) have a recorded result."""
    client = redis_client(pipe.redis.url)
    try:
        reply = client.pipeline(transaction=False)
        for key in keys:
            reply.exists(pipe.keys.result(pipe.bucket, key))
        return sum(int(n) for n in reply.execute())
    finally:
        client.close()


def content_tags(
    pipe: LocalPipeline, bucket: str, key: str, version: str | None = None
) -> dict[str, str]:
    """The tags of an object (of one version of it, when ``version`` is given)."""
    extra: dict[str, Any] = {"VersionId": version} if version else {}
    tag_set = pipe.s3().get_object_tagging(Bucket=bucket, Key=key, **extra)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def cli(
    pipe: LocalPipeline, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``edgematch ARGS`` as on-call runs it beside the pipeline: its environment, no
    terminal, UTF-8 output."""
    return subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", *args],
        env={**pipe.env(), "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout_s,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def in_flight(pipe: LocalPipeline) -> dict[str, int]:
    """Everything that could still make something happen, counted: event messages in SQS
    while intake runs (waiting or received and not yet deleted), tasks in each Celery queue,
    deliveries a worker holds (running, or waiting for their countdown), items in the batch
    buffer and batches being sent. SQS is read first: intake deletes a message only after
    its task is queued, so work that leaves SQS before the read is in Redis by then."""
    counts: dict[str, int] = {}
    if pipe.processes is not None and "intake" in pipe.processes.procs:
        attributes = pipe.sqs().get_queue_attributes(
            QueueUrl=pipe.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        counts["sqs"] = sum(int(n) for n in attributes.values())
    keys = pipe.keys
    if pipe.broker_url:
        # RabbitMQ's own counts, read first: a task it hands to Redis's buffer is seen there.
        queues = serving(pipe.broker_url).queue_counts(pipe.broker_url)
        for step in QUEUE_STEPS:
            counts[f"queue {step}"] = queues.get(keys.queue(step), (0, 0))[0]
        counts["held"] = sum(unacked for _, unacked in queues.values())
        counts["dead-lettered"] = sum(
            ready for name, (ready, _) in queues.items() if name.endswith(".dead")
        )
    client = redis_client(pipe.redis.url)
    try:
        reply = client.pipeline(transaction=True)  # one moment for every Redis count
        if not pipe.broker_url:
            for step in QUEUE_STEPS:
                reply.llen(keys.queue(step))
            reply.hlen(unacked_key(keys.ns))
        reply.hlen(keys.items)
        reply.zcard(keys.leases)
        values = [int(n) for n in reply.execute()]
    finally:
        client.close()
    names = [] if pipe.broker_url else [f"queue {step}" for step in QUEUE_STEPS] + ["held"]
    counts.update(zip([*names, "buffered", "sending"], values, strict=True))
    return counts


def wait_settled(pipe: LocalPipeline, timeout_s: float = 60.0) -> None:
    """Return once nothing is in flight (``in_flight`` all zero); AssertionError naming
    what still is after ``timeout_s``."""
    last: dict[str, int] = {}

    def settled() -> bool:
        last.clear()
        last.update({k: n for k, n in in_flight(pipe).items() if n})
        return not last

    # RabbitMQ's counts come from rabbitmqctl, which starts an Erlang VM each time: not
    # ten times a second.
    poll_s = 0.5 if pipe.broker_url else 0.1
    try:
        wait_until(settled, timeout_s, "the pipeline to settle", poll_s=poll_s)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still in flight {last}") from None


def redeliver(pipe: LocalPipeline, result: dict[str, Any], times: int = 1) -> None:
    """Put a recorded result on the results queue again ``times`` times, as a broker
    redelivery would."""
    code = (
        "import json, sys\n"
        "from edgematch.tasks import record_result\n"
        "doc = json.loads(sys.stdin.read())\n"
        f"for _ in range({times}):\n"
        "    record_result.apply_async(kwargs={'result': doc, "
        "'correlation_id': doc['correlation_id']})\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(result),
        env=pipe.env(),
        text=True,
        timeout=60,
        check=True,
    )
