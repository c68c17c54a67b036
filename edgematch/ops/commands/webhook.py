"""``edgematch webhook``: the process that turns POSTed bucket notifications into ingest
tasks, the door for stores that cannot send to SQS (MinIO, Ceph RGW)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edgematch.infra import logs
from edgematch.ops.commands.metrics import metrics_port, serve_metrics
from edgematch.ops.support import CONTEXT
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.ingest import event_to_args
from edgematch.pipeline.webhook.server import run
from edgematch.runtime import runtime


@click.command(context_settings=CONTEXT)
@metrics_port
def webhook(metrics_port: int | None) -> int:
    """Serve POSTed bucket notifications (MinIO's webhook target, Ceph RGW's HTTP endpoint,
    S3-shaped bodies) on EDGEMATCH_WEBHOOK_HOST:EDGEMATCH_WEBHOOK_PORT, with /healthz,
    /readyz and /metrics, and enqueue one ingest task per hash file, as intake does for SQS.

    Needs EDGEMATCH_WEBHOOK_TOKEN (or EDGEMATCH_WEBHOOK_TOKEN_FILE), never the subscription
    key. Answers 2xx only once a notification's tasks are enqueued, 503 with Retry-After at
    EDGEMATCH_INTAKE_HIGH_WATER or while the broker is away; stops cleanly on SIGTERM.
    """
    rt = runtime()
    token = rt.settings.require_webhook_token()
    logs.configure(rt.settings.log_level, rt.settings.log_format, process="webhook")
    logs.register_secret(token.reveal())
    serve_metrics(metrics_port, rt.settings)
    # Imported here: importing edgematch.tasks configures Celery, which only a process that
    # enqueues needs, and only once its own settings are checked.
    from edgematch.tasks.enqueue import enqueue_events  # noqa: PLC0415

    def enqueue(work: Sequence[tuple[ObjectCreated, str]]) -> None:
        enqueue_events([(event_to_args(obj), cid) for obj, cid in work], "live")

    return run(rt, enqueue, levels_served=bool(metrics_port or rt.settings.metrics_port))
