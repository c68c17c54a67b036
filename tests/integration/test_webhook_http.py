"""`edgematch webhook` as a real process over real HTTP, with a private redis-server.

No worker runs here: what the webhook accepts stays in the ingest queue, where these tests
look for it. The whole pipeline behind it is in tests/e2e/test_webhook_intake.py.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from devtools.devstack import RedisServer, free_port, wait_for_port
from devtools.localstack import wait_until as _wait
from devtools.senders import minio_notification
from edgematch.infra.keys import Keys
from edgematch.pipeline.webhook.enqueuer import BACKLOG_TTL_S

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "notifications"
TOKEN = "f3a9c2d17e6b4a5c8d9e0f1a2b3c4d5e"
KEYS = Keys("edgematch")
MIB = 1024 * 1024


@dataclass
class Webhook:
    url: str
    port: int
    log: Path
    env: dict[str, str]
    redis: redis.Redis

    def post(self, body: bytes | dict[str, Any], token: str | None = TOKEN) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.url, content=content, headers=headers, timeout=30)

    def queued(self) -> int:
        return int(self.redis.llen(KEYS.queue("ingest")))

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """One webhook process for the module, its token read from a file, on its own Redis."""
    server = RedisServer().start()
    tmp = tmp_path_factory.mktemp("webhook")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEMATCH_", "AWS_"))},
        "EDGEMATCH_REDIS_URL": server.url,
        "EDGEMATCH_WEBHOOK_TOKEN_FILE": str(token_file),
        "EDGEMATCH_WEBHOOK_HOST": "127.0.0.1",
        "EDGEMATCH_WEBHOOK_PORT": str(port),
        "EDGEMATCH_HEARTBEAT_DIR": str(tmp),
    }
    log = tmp / "webhook.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgematch.ops.cli", "webhook"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = redis.Redis.from_url(server.url)
    try:
        wait_for_port(port)
        # Ready once its publishing thread has reached Redis (up to a tick after start), as
        # an orchestrator's readiness probe waits for it before sending traffic.
        _wait(lambda: _ready(port), 10, "the webhook's /readyz")
        yield Webhook(f"http://127.0.0.1:{port}/", port, log, env, client)
    finally:
        proc.terminate()
        proc.wait(20)
        client.close()
        server.close()


def _ready(port: int) -> bool:
    return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200


@pytest.fixture
def hook(webhook: Webhook) -> Iterator[Webhook]:
    """The module's webhook, its Redis emptied after each test."""
    yield webhook
    webhook.redis.flushdb()


def notification(n: int) -> dict[str, Any]:
    return minio_notification(
        "uploads", f"photos/p{n}.jpg.bin", version_id=f"v{n}", etag="e", size=924
    )


def test_missing_or_wrong_token_is_401_and_enqueues_nothing(hook: Webhook) -> None:
    """No header, a wrong token, another scheme: 401 with WWW-Authenticate, nothing queued."""
    basic = base64.b64encode(b"ceph:wrong-token-0123456789").decode()
    answers = [
        hook.post(notification(1), token=None),
        hook.post(notification(2), token="wrong-token-0123456789abcdef"),
        httpx.post(hook.url, json=notification(3), headers={"Authorization": f"Basic {basic}"}),
        httpx.post(hook.url, json=notification(4), headers={"Authorization": f"Token {TOKEN}"}),
        httpx.post(hook.url + f"?token={TOKEN}", json=notification(5)),
    ]
    assert [a.status_code for a in answers] == [401] * 5
    assert all(a.headers["www-authenticate"].startswith("Bearer") for a in answers)
    # The event waited on: a good notification after them is the only thing queued.
    good = base64.b64encode(f"ceph:{TOKEN}".encode()).decode()
    ok = httpx.post(hook.url, json=notification(6), headers={"Authorization": f"Basic {good}"})
    assert ok.status_code == 200 and ok.json() == {"accepted": 1, "skipped": 0}
    assert hook.queued() == 1
    (task,) = hook.redis.lrange(KEYS.queue("ingest"), 0, -1)
    message = json.loads(task)
    assert message["headers"]["task"] == "edgematch.ingest"
    # The keys are in the body only: the task's kwargsrepr names the arguments.
    body = base64.b64decode(message["body"])
    assert b"photos/p6.jpg.bin" in body and b"photos/p1.jpg.bin" not in body
    assert b"photos/p6.jpg.bin" not in task
    assert hook.redis.hlen("edgematch:dlq:entries") == 0
    assert TOKEN not in hook.log_text()


def _raw_post(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head.encode())
    return sock


def _answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _closed(sock: socket.socket, timeout_s: float = 10.0) -> bool:
    """Whether the server closed the connection (reading the rest of the answer first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return True
        if not chunk:
            return True
    return False


def test_ten_megabyte_body_is_refused_before_it_is_sent(hook: Webhook) -> None:
    """Content-Length of 10 MiB: 413 after 64 KiB of it, and the connection closed."""
    sock = _raw_post(
        hook.port,
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {10 * MIB}\r\n\r\n",
    )
    with sock:
        sock.sendall(b"{" + b" " * (64 * 1024))
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"connection: close" in answer.lower()
        assert _closed(sock)
    assert hook.queued() == 0


def test_ten_megabyte_chunked_body_is_cut_off_at_the_limit(hook: Webhook) -> None:
    """Without a length: read until past the limit (256 KiB), then 413, the rest unread."""
    sock = _raw_post(
        hook.port,
        f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    chunk = b" " * (64 * 1024)
    sent = 0
    with sock:
        sock.settimeout(2.0)
        while sent < 10 * MIB:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (TimeoutError, BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading
            sent += len(chunk)
        sock.settimeout(10.0)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # The socket buffers of both ends hold a few MiB at most; 10 MiB never went through.
    assert sent < 8 * MIB, sent


def test_a_large_body_without_the_token_is_refused_before_its_size(hook: Webhook) -> None:
    """401 comes first: an anonymous client learns nothing and sends nothing more."""
    sock = _raw_post(hook.port, f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * MIB}\r\n\r\n")
    with sock:
        assert _answer(sock).startswith(b"HTTP/1.1 401")
        assert _closed(sock)


def test_not_a_notification_is_400_and_one_dead_letter(hook: Webhook) -> None:
    """Not JSON, or JSON of another kind: 400 (never 5xx), one dead letter per distinct body."""
    marker = "not-a-notification-7f3a9c"
    first = hook.post(marker.encode())
    again = hook.post(marker.encode())  # as MinIO would send it again
    other = hook.post({"hello": marker})
    assert [first.status_code, again.status_code, other.status_code] == [400, 400, 400]
    assert "not JSON" in first.json()["detail"]
    entries = [json.loads(v) for v in hook.redis.hvals("edgematch:dlq:entries")]
    assert len(entries) == 2
    assert {e["task"] for e in entries} == {"edgematch.webhook"}
    assert {e["reason"] for e in entries} == {"malformed_event"}
    assert any(marker in e["args"]["body_excerpt"] for e in entries)
    assert hook.queued() == 0
    assert marker not in hook.log_text()  # the log names the body's digest, never the body


def test_a_bad_record_beside_a_good_one_is_set_aside_and_the_good_one_goes_on(
    hook: Webhook,
) -> None:
    """The readable record is enqueued (200); the unreadable one becomes a dead letter."""
    body = notification(7)
    bad = json.loads(json.dumps(body["Records"][0]))
    del bad["s3"]["bucket"]
    body["Records"].append(bad)
    answer = hook.post(body)
    assert answer.status_code == 200 and answer.json() == {"accepted": 1, "skipped": 1}
    assert hook.queued() == 1
    (entry,) = [json.loads(v) for v in hook.redis.hvals("edgematch:dlq:entries")]
    assert "record 1" in entry["message"]


@pytest.mark.parametrize(
    "sample", ["minio-source-put-tagging.json", "ceph-source-delete.json", "minio-docs-put.json"]
)
def test_notifications_of_nothing_to_scan_are_200(hook: Webhook, sample: str) -> None:
    """Other events and other keys are answered 200 (or the sender retries forever)."""
    answer = hook.post((SAMPLES / sample).read_bytes())
    assert answer.status_code == 200 and answer.json()["accepted"] == 0
    assert hook.queued() == 0


def test_at_the_high_water_mark_the_answer_is_503_with_retry_after(hook: Webhook) -> None:
    """A backlog of 1000 live ingest tasks (10,000 hash files, the default mark): 503."""
    ingest = KEYS.queue("ingest")
    hook.redis.lpush(ingest, *[b"placeholder"] * 1000)
    # A backlog reading is reused for BACKLOG_TTL_S by design (enqueuer.py): this backlog
    # was made behind the webhook's back, so it is seen from the next reading on.
    time.sleep(2 * BACKLOG_TTL_S)
    refused = hook.post(notification(8))
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    assert refused.json()["reason"] == "high_water"
    assert hook.queued() == 1000
    hook.redis.rpop(ingest)  # one task's room (seen at once: at the mark, each request reads)
    assert hook.post(notification(8)).status_code == 200
    assert hook.queued() == 1000
    assert hook.post(notification(9)).status_code == 503


def test_health_readiness_and_metrics(hook: Webhook) -> None:
    """/healthz, /readyz, /metrics answer without a token; the heartbeat file is fresh."""
    base = hook.url.rstrip("/")
    assert httpx.get(base + "/healthz").json() == {"alive": True}
    assert httpx.get(base + "/readyz").json() == {"ready": True}
    hook.post(b"{}", token=None)
    text = httpx.get(base + "/metrics").text
    assert 'edgematch_webhook_requests_total{code="401"}' in text
    assert "edgematch_webhook_request_duration_seconds_bucket" in text
    assert "edgematch_redis_up 1.0" in text
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgematch.ops.cli",
            "health",
            "--readiness",
            "--process",
            "webhook",
        ],
        env=hook.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    wrong = [httpx.get(hook.url), httpx.post(base + "/healthz")]
    assert [(a.status_code, a.headers["allow"]) for a in wrong] == [(405, "POST"), (405, "GET")]


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (None, "EDGEMATCH_WEBHOOK_TOKEN or EDGEMATCH_WEBHOOK_TOKEN_FILE is required"),
        ("short-token", "at least 16 characters"),
    ],
)
def test_no_webhook_without_a_strong_token(token: str | None, why: str) -> None:
    """Secure by default: no token, or a short one, and the process refuses to start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMATCH_")}
    if token:
        env["EDGEMATCH_WEBHOOK_TOKEN"] = token
    done = subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", "webhook"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and why in done.stderr
