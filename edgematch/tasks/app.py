"""The Celery application, configured from :class:`Settings` and wired to structlog."""

from __future__ import annotations

import os
from typing import Any

import click
import structlog
from celery import Celery, signals
from celery.bin.celery import celery as command

from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.infra import logs
from edgematch.infra.heartbeat import Heartbeat
from edgematch.runtime import runtime
from edgematch.tasks import lifecycle, shutdown, tasklines


def run_celery(celery: Celery, argv: list[str]) -> int:
    """Run ``celery ARGV`` for ``celery`` (as ``Celery.start`` does); its exit status.

    ``Celery.start`` and ``worker_main`` drop it (click returns it, they return nothing):
    a worker that stopped on an error (its consumer stalled, the broker refused for good)
    exited 0, and a supervisor that restarts on failure (systemd's ``Restart=on-failure``)
    left it stopped.
    """
    command.params[0].default = celery  # the --app option, as Celery.start sets it
    try:
        code = command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        command.params[0].default = None
    return code if isinstance(code, int) else 0


def create_app(settings: Settings) -> Celery:
    celery = Celery("edgematch", set_as_current=True)
    celery.conf.update(celery_config(settings))
    return celery


_settings = Settings.from_env()
app = create_app(_settings)
lifecycle.install(app)
shutdown.install(app, _settings.shutdown_grace_s)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Connecting here stops Celery from configuring the root logger its own way.
    process = os.environ.get("EDGEMATCH_PROCESS", "worker")
    logs.configure(_settings.log_level, _settings.log_format, process=process)
    tasklines.install(_settings.log_level)
    # The subscription key and the reporting credentials and webhook secret.
    for secret in _settings.secrets():
        logs.register_secret(secret.reveal())


@signals.worker_process_init.connect
def _warm_up(**_: Any) -> None:
    # Build the API and S3 clients (TLS contexts, connection pools) before the first task:
    # a first request that pays for them would reach the API late, after its slot.
    # Only a worker given the subscription key calls the API (ops/cli.py,
    # needs_subscription_key); the others have no key to build a client with.
    rt = runtime()
    parts = (rt.api, rt.store, rt.buffer) if rt.settings.subscription_key else (rt.store, rt.buffer)
    for part in parts:
        assert part is not None


_heartbeats: list[Heartbeat] = []


@signals.worker_process_init.connect
def _start_worker_heartbeat(**_: Any) -> None:
    # Each process that runs tasks says it is alive, for `edgematch status`.
    rt = runtime()
    queues = sorted(getattr(app.amqp.queues, "consume_from", None) or ())
    _heartbeats.append(Heartbeat(rt.redis, rt.settings.namespace, "worker", queues=queues).start())


@signals.worker_process_shutdown.connect
def _stop_worker_heartbeat(**_: Any) -> None:
    while _heartbeats:
        _heartbeats.pop().stop()


@signals.beat_init.connect
def _start_beat_heartbeat(**_: Any) -> None:
    rt = runtime()
    _heartbeats.append(Heartbeat(rt.redis, rt.settings.namespace, "beat").start())


@signals.task_prerun.connect
def _bind_task_context(
    task: Any = None, task_id: str | None = None, kwargs: Any = None, **_: Any
) -> None:
    structlog.contextvars.clear_contextvars()
    correlation_id = (kwargs or {}).get("correlation_id")
    structlog.contextvars.bind_contextvars(
        task_id=task_id,
        task=getattr(task, "name", None),
        retries=getattr(getattr(task, "request", None), "retries", 0),
        **({"correlation_id": correlation_id} if correlation_id else {}),
    )


@signals.task_postrun.connect
def _clear_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
