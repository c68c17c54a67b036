"""``edgematch health`` and ``edgematch config``: a process's probes, and the settings.

Kubernetes runs ``health`` every few seconds in every pod, so this module imports only the
heartbeat files' reader and the settings, not the clients the other commands need.
"""

from __future__ import annotations

import json

import click

from edgematch.config.settings import Settings
from edgematch.infra import health as probes
from edgematch.ops.support import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--liveness", is_flag=True, help="Is the process's working loop alive?")
@click.option(
    "--readiness",
    is_flag=True,
    help="Alive, and does Redis answer (and RabbitMQ, when it is the broker)?",
)
@click.option(
    "--process",
    type=click.Choice(probes.PROCESS_TYPES),
    default="worker",
    show_default=True,
    help="Which process type on this host.",
)
@click.option(
    "--max-age",
    type=float,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Oldest heartbeat still counted alive.",
)
def health(liveness: bool, readiness: bool, process: str, max_age: float) -> int:
    """Check a process's heartbeat file (touched by its working loop); --readiness also
    needs Redis to answer, and RabbitMQ when EDGEMATCH_BROKER_URL names it. Exit 0 when
    healthy, 1 when not. One of --liveness and --readiness is required.

    \b
      edgematch health --liveness --process intake
      edgematch health --readiness --process worker
    """
    if liveness == readiness:
        raise click.UsageError(
            "give one of --liveness and --readiness", click.get_current_context()
        )
    if liveness:
        check = probes.liveness(process, max_age_s=max_age)
    else:
        settings = Settings.from_env()
        check = probes.readiness(
            process,
            settings.redis_url,
            broker_url=settings.broker_url,
            max_age_s=max_age,
            sentinel_master=settings.sentinel_master,
        )
    click.echo(("ok: " if check.ok else "unhealthy: ") + check.detail)
    return 0 if check.ok else 1


@click.command(context_settings=CONTEXT)
def config() -> int:
    """Print the effective settings as JSON, secrets masked, after checking them: a bad
    setting exits 2 naming its variable (docs/configuration.md)."""
    settings = Settings.from_env()
    doc = {k: (str(v) if k == "subscription_key" else v) for k, v in settings.__dict__.items()}
    click.echo(json.dumps(doc, indent=2, default=str))
    return 0
