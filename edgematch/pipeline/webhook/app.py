"""The ASGI application of ``edgematch webhook``: routes, the token, the size limit.

``POST`` (any path but the ones below) is a notification. Before a byte of its body is read
the ``Authorization`` header must present the token (401 otherwise) and a declared
``Content-Length`` must be within ``EDGEMATCH_WEBHOOK_MAX_BODY_BYTES`` (413); a body sent
without one is read only until it passes the limit (413). Every answer given before the
body was read to its end closes the connection, so the rest of it is never read.
``GET /healthz`` (the publishing thread is alive), ``GET /readyz`` (its last reading of the
backlog was answered too: Redis, and RabbitMQ when it is the broker) and ``GET /metrics``
(Prometheus) need no token.

Each answer is counted in ``edgematch_webhook_requests_total{code}`` and timed in
``edgematch_webhook_request_duration_seconds``. Nothing here logs a body or a header.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from edgematch.infra import metrics
from edgematch.infra.logs import get_logger
from edgematch.pipeline.webhook import auth
from edgematch.pipeline.webhook.door import Door, Reply
from edgematch.pipeline.webhook.enqueuer import Enqueuer

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")


class _Disconnected(Exception):
    """The client went away before its body arrived."""


class WebhookApp:
    """An ASGI 3 application (HTTP only; run with ``lifespan="off"``)."""

    def __init__(
        self,
        door: Door,
        enqueuer: Enqueuer,
        *,
        token: bytes,
        max_body_bytes: int,
        retry_after_s: int,
        metrics_text: Callable[[], bytes],
    ) -> None:
        self.door = door
        self.enqueuer = enqueuer
        self._token = token
        self.max_body_bytes = max_body_bytes
        self._retry_after = str(retry_after_s).encode()
        self._metrics_text = metrics_text

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in ("/healthz", "/readyz", "/metrics"):
            await self._operational(path, method, send)
            return
        started = time.perf_counter()
        if method != "POST":
            reply, read = Reply(405, {"error": "POST a bucket notification"}), False
        else:
            try:
                reply, read = await self._notification(scope, receive)
            except _Disconnected:
                metrics.WEBHOOK_REQUESTS.labels("499").inc()
                return
        await self._send(send, reply, close=not read)
        metrics.WEBHOOK_REQUESTS.labels(str(reply.status)).inc()
        metrics.WEBHOOK_LATENCY.observe(time.perf_counter() - started)

    async def _notification(self, scope: Scope, receive: Receive) -> tuple[Reply, bool]:
        """The reply, and whether the body was read to its end."""
        headers = dict(scope["headers"])
        remote = _remote(scope)
        if not auth.authorized(headers.get(b"authorization"), self._token):
            log.warning("webhook_unauthorized", remote=remote)
            return Reply(401, {"error": "the Authorization header does not carry the token"}), False
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return Reply(400, {"error": "malformed Content-Length"}), False
            if int(declared) > self.max_body_bytes:
                return self._too_large(remote, int(declared)), False
        body = await self._read(receive)
        if body is None:
            return self._too_large(remote, None), False
        return await self.door.handle(body, remote=remote), True

    def _too_large(self, remote: str, declared: int | None) -> Reply:
        log.warning("webhook_body_too_large", remote=remote, declared_bytes=declared)
        return Reply(413, {"error": f"bodies are at most {self.max_body_bytes} bytes"})

    async def _read(self, receive: Receive) -> bytes | None:
        """The body, or None as soon as it passes the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _operational(self, path: str, method: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await self._send(send, Reply(405, {"error": "GET only"}), close=False, allow=b"GET")
        elif path == "/metrics":
            text = await asyncio.to_thread(self._metrics_text)
            await _respond(send, 200, text, [(b"content-type", b"text/plain; version=0.0.4")])
        elif path == "/healthz":
            ok = self.enqueuer.alive()
            await self._send(send, Reply(200 if ok else 503, {"alive": ok}), close=False)
        else:
            ready = self.enqueuer.alive() and self.enqueuer.backends_ok
            await self._send(send, Reply(200 if ready else 503, {"ready": ready}), close=False)

    async def _send(self, send: Send, reply: Reply, *, close: bool, allow: bytes = b"POST") -> None:
        headers = [_JSON]
        if reply.retry_later:
            headers.append((b"retry-after", self._retry_after))
        if reply.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="edgematch"'))
        if reply.status == 405:
            headers.append((b"allow", allow))
        if close:
            headers.append(_CLOSE)
        await _respond(send, reply.status, json.dumps(reply.doc).encode(), headers)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _remote(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "-"
