"""``edgematch intake``: the process that turns SQS event messages into ingest tasks."""

from __future__ import annotations

from collections.abc import Sequence

import click

from edgematch.infra import logs
from edgematch.infra.heartbeat import Heartbeat
from edgematch.infra.storage import make_sqs_client
from edgematch.ops.commands.metrics import metrics_port, serve_metrics
from edgematch.ops.support import CONTEXT
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.ingest import event_to_args
from edgematch.pipeline.intake import Intake
from edgematch.runtime import runtime


@click.command(context_settings=CONTEXT)
@metrics_port
def intake(metrics_port: int | None) -> int:
    """Long-poll the SQS queue of S3 event notifications and enqueue one ingest task per
    hash file; delete each message only once its tasks are enqueued.

    Needs EDGEMATCH_SQS_QUEUE_URL, never the subscription key. Pauses while the backlog is
    at EDGEMATCH_INTAKE_HIGH_WATER; stops cleanly on SIGTERM.
    """
    rt = runtime()
    rt.settings.require_sqs_queue_url()
    logs.configure(rt.settings.log_level, rt.settings.log_format, process="intake")
    serve_metrics(metrics_port, rt.settings)
    # Imported here: importing edgematch.tasks configures Celery, which only a process that
    # enqueues needs, and only once its own settings are checked.
    from edgematch.tasks.enqueue import enqueue_events  # noqa: PLC0415

    def enqueue(work: Sequence[tuple[ObjectCreated, str]]) -> None:
        enqueue_events([(event_to_args(obj), cid) for obj, cid in work], "live")

    door = Intake(rt, make_sqs_client(rt.settings), enqueue)
    door.install_signal_handlers()
    heartbeat = Heartbeat(rt.redis, rt.settings.namespace, "intake").start()
    try:
        door.run()
    finally:
        heartbeat.stop()
    return 0
