"""The on-call commands as on-call runs them: `edgematch …` subprocesses on a private Redis."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from devtools.devstack import RedisServer
from edgematch.infra.heartbeat import Heartbeat
from edgematch.infra.keys import Keys
from edgematch.recovery.deadletters import DeadLetters

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NS = "clitest"
KEYS = Keys(NS)


def _cli(redis_server: RedisServer, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "AWS_"))}
    base.update(
        {
            "EDGEMATCH_REDIS_URL": redis_server.url,
            "EDGEMATCH_NAMESPACE": NS,
            "EDGEMATCH_SUBSCRIPTION_KEY": "cli-test-key-0123456789",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", *args],
        env=base,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _seed(client: redis.Redis) -> DeadLetters:
    store = DeadLetters(client, NS)
    store.add(
        task="edgematch.match", queue=f"{NS}.match", reason="retries_exhausted",
        message="HTTP 503", args={"bucket": "up", "key": "a.bin", "version_id": "v1",
                                  "etag": "e1"},
        attempts=3, correlation_id="corr-a", bucket="up", key="a.bin", dedupe_id="item:a",
    )  # fmt: skip
    store.add(
        task="edgematch.intake", queue="sqs", reason="malformed_event", message="not JSON",
        args={"message_id": "m1", "body_excerpt": "nope"}, dedupe_id="sqs:m1",
    )  # fmt: skip
    return store


def test_list_show_and_stats(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """list --json, show and stats --json print what the store holds."""
    _seed(redis_client)
    listed = _cli(redis_server, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    docs = json.loads(listed.stdout)
    assert {d["id"]: d["reason"] for d in docs} == {
        "item:a": "retries_exhausted",
        "sqs:m1": "malformed_event",
    }
    assert [d["id"] for d in json.loads(_cli(redis_server, "dlq", "list", "--json",
                                              "--queue", "sqs").stdout)] == ["sqs:m1"]  # fmt: skip
    table = _cli(redis_server, "dlq", "list", "--reason", "retries_exhausted")
    assert "item:a" in table.stdout and "s3://up/a.bin version v1" in table.stdout
    assert "sqs:m1" not in table.stdout and "1 shown of 2" in table.stdout

    shown = _cli(redis_server, "dlq", "show", "item:a")
    assert shown.returncode == 0
    doc = json.loads(shown.stdout)
    assert doc["correlation_id"] == "corr-a" and doc["last_failed"].endswith("Z")
    assert _cli(redis_server, "dlq", "show", "nope").returncode == 1

    stats = json.loads(_cli(redis_server, "dlq", "stats", "--json").stdout)
    assert stats["by_reason"] == {"retries_exhausted": 1, "malformed_event": 1}
    assert stats["limit"] == 100_000 and stats["full"] is False
    text = _cli(redis_server, "dlq", "stats").stdout
    assert "EDGEMATCH_DEAD_LETTER_LIMIT" in text and "malformed_event" in text


def test_full_store_is_reported(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """`dlq stats` says when the store is full and how many failures it refused."""
    store = _seed(redis_client)
    store.max_entries = 2
    with pytest.raises(Exception, match="full"):
        store.add(task="t", queue="q", reason="poison", message="m", args={})
    out = _cli(redis_server, "dlq", "stats", EDGEMATCH_DEAD_LETTER_LIMIT="2")
    assert "FULL" in out.stdout and "refused 1" in out.stdout


def _queued_kwargs(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        found.append(json.loads(body)[1])
    return found


def test_replay_enqueues_with_replayed_from(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """dry run changes nothing; replay enqueues an ingest with replayed_from, skips the SQS one."""
    store = _seed(redis_client)
    dry = _cli(redis_server, "dlq", "replay", "--all", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "replay  item:a as edgematch.ingest" in dry.stdout
    assert "skip    sqs:m1: a malformed SQS message" in dry.stdout
    assert store.get("item:a").state == "failed"  # type: ignore[union-attr]

    done = _cli(redis_server, "dlq", "replay", "--all")
    assert done.returncode == 0, done.stderr
    assert "replayed 1" in done.stdout and "1 not replayable" in done.stdout
    queued = _queued_kwargs(redis_client, KEYS.queue("background"))
    assert len(queued) == 1
    assert queued[0]["replayed_from"] == "item:a" and queued[0]["lane"] == "replay"
    assert queued[0]["event"]["version_id"] == "v1"
    assert store.get("item:a").state == "replaying"  # type: ignore[union-attr]

    again = _cli(redis_server, "dlq", "replay", "item:a")
    assert again.returncode == 0 and "1 again" in again.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("dlq", "replay"),
        ("dlq", "replay", "item:a", "--all"),
        ("dlq", "replay", "--all", "--reason", "poison"),
        ("dlq", "replay", "--all", "--rate", "0"),
        ("dlq", "list", "--since", "yesterday"),
        ("dlq", "purge"),
        ("dlq", "purge", "item:a", "--older-than", "7d"),
        ("dlq", "purge", "--older-than", "7"),
        ("backfill", "not-a-uri"),
        ("backfill", "s3://up/p", "--page-size", "5000"),
        ("backfill", "s3://up/p", "--since", "soon"),
    ],
)
def test_bad_usage_exits_2(redis_server: RedisServer, args: tuple[str, ...]) -> None:
    """Bad selections, times, rates and URIs exit 2 with a message and no traceback."""
    proc = _cli(redis_server, *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "error" in proc.stderr and "Traceback" not in proc.stderr


def test_purge_asks_unless_yes(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """Purge refuses without --yes when it cannot ask, and deletes with it."""
    store = _seed(redis_client)
    refused = _cli(redis_server, "dlq", "purge", "--older-than", "0s")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert store.count() == 2
    done = _cli(redis_server, "dlq", "purge", "--older-than", "0s", "--reason", "malformed_event",
                "--yes")  # fmt: skip
    assert done.returncode == 0 and "purged 1" in done.stdout
    assert [e.id for e in store.list()] == ["item:a"]
    missing = _cli(redis_server, "dlq", "purge", "item:a", "ghost", "--yes")
    assert missing.returncode == 1 and "purged 1" in missing.stdout
    assert store.count() == 0


def test_status_json_and_exit_code(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """status exits 1 naming what is wrong, and 0 once every process beats and nothing failed."""
    _seed(redis_client)
    sick = _cli(redis_server, "status", "--json")
    assert sick.returncode == 1, sick.stderr
    doc = json.loads(sick.stdout)
    assert doc["healthy"] is False
    whats = [p["what"] for p in doc["problems"]]
    assert any("no worker process" in w for w in whats)
    assert any("retries_exhausted 1" in w for w in whats)
    assert set(doc["queues"]) >= {"ingest", "match", "results"}
    assert doc["dead_letters"]["by_reason"]["malformed_event"] == 1

    DeadLetters(redis_client, NS).remove("item:a")
    beats = [
        Heartbeat(redis_client, NS, role, pid=n, queues=[KEYS.queue(s) for s in ("ingest",)])
        for n, role in enumerate(("worker", "intake", "beat"), start=1)
    ]
    for beat in beats:
        beat.beat_once()
    healthy = _cli(redis_server, "status")
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.startswith("edgematch status: healthy")
    assert "worker" in healthy.stdout and "malformed_event 1" in healthy.stdout


def test_status_without_redis_says_so(redis_server: RedisServer) -> None:
    """status against an unreachable Redis exits 1 and points at the Redis runbook."""
    proc = _cli(redis_server, "status", "--json", EDGEMATCH_REDIS_URL="redis://127.0.0.1:9/0")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["healthy"] is False and doc["problems"][0]["runbook"] == "redis-lost.md"
