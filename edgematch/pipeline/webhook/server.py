"""Run the webhook: the publishing thread, the app, and uvicorn serving it.

uvicorn (with httptools and uvloop where installed) parses HTTP, applies
``EDGEMATCH_WEBHOOK_MAX_CONNECTIONS`` (503 past it), serves TLS when a certificate is
configured, and on SIGTERM or SIGINT stops accepting, lets the requests in progress finish
for up to ``EDGEMATCH_SHUTDOWN_GRACE_S`` and returns; then the publishing thread stops. Its
access log stays off: our own lines say what happened without paths or headers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import uvicorn
from prometheus_client import REGISTRY, generate_latest

from edgematch.infra import scrape
from edgematch.infra.heartbeat import Heartbeat
from edgematch.infra.logs import get_logger
from edgematch.pipeline import backpressure
from edgematch.pipeline.webhook.app import WebhookApp
from edgematch.pipeline.webhook.door import Door
from edgematch.pipeline.webhook.enqueuer import Enqueuer, Work
from edgematch.runtime import Runtime

log = get_logger(__name__)

#: Seconds an idle keep-alive connection stays open (senders reuse theirs).
KEEP_ALIVE_S = 30
#: Seconds a thread may hold the GIL while another waits for it (CPython's default: 0.005).
#: The publishing thread wakes from a Redis reply several times a round; waiting 5 ms for
#: the event loop to let go each time made a request's answer wait most of its 10 ms.
GIL_SWITCH_S = 0.0005


def build(rt: Runtime, enqueue: Callable[[Work], None]) -> tuple[WebhookApp, Enqueuer]:
    """The app and its (not yet started) publishing thread, from ``rt``'s settings."""
    s = rt.settings
    token = s.require_webhook_token()
    enqueuer = Enqueuer(
        enqueue=enqueue,
        read_backlog=lambda: backpressure.backlog(rt).of("live"),
        high_water=backpressure.high_water_for("live", s.intake_high_water),
    )
    app = WebhookApp(
        Door(s, enqueuer, rt.dead_letters),
        enqueuer,
        token=token.reveal().encode("utf-8"),
        max_body_bytes=s.webhook_max_body_bytes,
        retry_after_s=s.webhook_retry_after_s,
        metrics_text=lambda: generate_latest(REGISTRY),
    )
    return app, enqueuer


def run(rt: Runtime, enqueue: Callable[[Work], None], *, levels_served: bool = False) -> int:
    """Serve until SIGTERM/SIGINT. Exit status 0, or 1 when the server could not start.

    ``levels_served``: the Redis levels are already registered (a metrics port is served
    too); otherwise they are added here, so ``/metrics`` shows them.
    """
    s = rt.settings
    sys.setswitchinterval(GIL_SWITCH_S)
    app, enqueuer = build(rt, enqueue)
    if not levels_served:
        REGISTRY.register(scrape.RedisLevels(lambda: rt))
    config = uvicorn.Config(
        app,
        host=s.webhook_host,
        port=s.webhook_port,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        # Forwarded headers are not read: the remote address only ever reaches a log line.
        proxy_headers=False,
        limit_concurrency=s.webhook_max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=int(s.shutdown_grace_s),
        ssl_certfile=s.webhook_tls_certfile,
        ssl_keyfile=s.webhook_tls_keyfile,
    )
    server = uvicorn.Server(config)
    heartbeat = Heartbeat(rt.redis, s.namespace, "webhook").start()
    enqueuer.start()
    log.info(
        "webhook_started",
        host=s.webhook_host,
        port=s.webhook_port,
        tls=bool(s.webhook_tls_certfile),
        high_water=enqueuer.high_water,
        max_body_bytes=s.webhook_max_body_bytes,
    )
    try:
        server.run()
    finally:
        enqueuer.stop()
        heartbeat.stop()
        log.info("webhook_stopped")
    return 0 if server.started else 1
