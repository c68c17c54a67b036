"""``--metrics-port``: the option every process type takes, and serving it."""

from __future__ import annotations

import click

from edgematch.config.settings import Settings

metrics_port = click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
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
    from edgematch.infra import metrics  # noqa: PLC0415
    from edgematch.runtime import runtime  # noqa: PLC0415

    metrics.serve(port, runtime_factory=runtime)
