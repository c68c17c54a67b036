"""``--metrics-port``: the option every process type takes, and serving it."""

from __future__ import annotations

import click

from edgematch.config.settings import Settings


def _port(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 65535:
        raise click.BadParameter(f"expected a TCP port (0 for none), got {value}")
    return value


metrics_port = click.option(
    "--metrics-port",
    type=int,
    callback=_port,
    metavar="PORT",
    help="Serve Prometheus metrics on this port (default: EDGEMATCH_METRICS_PORT; none).",
)


def serve_metrics(port: int | None, settings: Settings) -> None:
    """Serve /metrics on ``port`` or EDGEMATCH_METRICS_PORT, if either is set."""
    port = port or settings.metrics_port
    if not port:
        return
    # Imported here: a worker sets PROMETHEUS_MULTIPROC_DIR first, and prometheus_client
    # reads it when it is imported (edgematch.runtime imports it too).
    from edgematch.infra import scrape  # noqa: PLC0415
    from edgematch.runtime import runtime  # noqa: PLC0415

    scrape.serve(port, runtime_factory=runtime)
