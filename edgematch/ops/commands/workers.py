"""``edgematch worker`` and ``edgematch beat``: the Celery processes.

Both import the Celery app (``edgematch.tasks``) only once they have checked what they
can check themselves: importing it configures Celery from the environment, and a worker
that would call the API must refuse to start without the key before that (exit 2).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection
from pathlib import Path

import click

from edgematch.config.settings import Settings
from edgematch.errors import ConfigurationError
from edgematch.infra.keys import Keys
from edgematch.names import QUEUE_STEPS
from edgematch.ops.commands.metrics import metrics_port, serve_metrics
from edgematch.ops.commands.params import STEPS
from edgematch.ops.support import CONTEXT

#: Options edgematch does not know, and what follows them, go to Celery as they are.
PASS_THROUGH = {**CONTEXT, "ignore_unknown_options": True}


def needs_subscription_key(steps: Collection[str], settings: Settings) -> bool:
    """Does a worker consuming ``steps`` call the PhotoDNA API, and so need the key?

    ``match`` calls MatchEdgeHash (its pumps; the sweep runs there too); ``reports`` calls the
    Report operation with the ``photodna`` reporter only. No other step calls the API.
    """
    return "match" in steps or ("reports" in steps and settings.reporter == "photodna")


@click.command(context_settings=PASS_THROUGH)
@click.option(
    "--queues",
    type=STEPS,
    default=",".join(QUEUE_STEPS),
    show_default=True,
    metavar="STEP,…",
    help="Comma-separated steps to consume, of: " + ", ".join(QUEUE_STEPS) + ".",
)
@metrics_port
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="[CELERY-ARGS]...")
def worker(queues: tuple[str, ...], metrics_port: int | None, celery_args: tuple[str, ...]) -> int:
    """Run a Celery worker that consumes the queues of the given steps.

    Arguments it does not know go to `celery worker` as they are (CELERY-ARGS: for
    example --concurrency 4 or --pool solo; `celery -A edgematch.tasks worker --help`
    lists them); EDGEMATCH_WORKER_CONCURRENCY applies unless they set -c/--concurrency.
    Only a worker that consumes match, or reports with EDGEMATCH_REPORTER=photodna, needs
    the subscription key: without it, it refuses to start (exit 2); one that consumes
    results needs a bucket for the verdict log (EDGEMATCH_REPORTS_BUCKET or
    EDGEMATCH_VERDICT_LOG_BUCKET) the same way.

    \b
      edgematch worker
      edgematch worker --queues match --concurrency 4
      edgematch worker --queues ingest,background,results,quarantine,reports --pool solo
    """
    settings = Settings.from_env()
    keys = Keys(settings.namespace)
    names = [keys.queue(step) for step in queues]
    if needs_subscription_key(queues, settings):
        try:
            settings.require_subscription_key()
        except ConfigurationError as exc:
            which = "match" if "match" in queues else "reports with EDGEMATCH_REPORTER=photodna"
            raise ConfigurationError(f"{exc} by a worker that consumes {which}") from None
    # Every recorded result goes to the verdict log: without a bucket for it, results
    # would pile up in Redis, so a worker that records them refuses to start.
    if "results" in queues and not settings.effective_verdict_log_bucket:
        raise ConfigurationError(
            "EDGEMATCH_VERDICT_LOG_BUCKET (or EDGEMATCH_REPORTS_BUCKET, which it defaults to) "
            "is required by a worker that consumes results: every result goes to the verdict log"
        )
    if metrics_port or settings.metrics_port:
        _prepare_multiprocess_metrics()
    from edgematch.config.celery import WORKER_ARGS  # noqa: PLC0415 (see the docstring)
    from edgematch.tasks import app, run_celery  # noqa: PLC0415

    argv = [
        "worker",
        "--queues",
        ",".join(names),
        "--loglevel",
        settings.log_level,
        *WORKER_ARGS,
        *celery_args,
    ]
    given = any(a.startswith(("-c", "--concurrency")) for a in celery_args)
    if settings.worker_concurrency and not given:
        argv += ["--concurrency", str(settings.worker_concurrency)]
    serve_metrics(metrics_port, settings)
    return run_celery(app, argv)


@click.command(context_settings=PASS_THROUGH)
@metrics_port
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="[CELERY-ARGS]...")
def beat(metrics_port: int | None, celery_args: tuple[str, ...]) -> int:
    """Run the periodic sweep that keeps the batch buffer drained: exactly one per
    deployment.

    Arguments it does not know go to `celery beat` as they are (CELERY-ARGS; `celery -A
    edgematch.tasks beat --help` lists them).
    """
    settings = Settings.from_env()
    os.environ["EDGEMATCH_PROCESS"] = "beat"  # read when the Celery app is configured
    from edgematch.tasks import app, run_celery  # noqa: PLC0415 (see the module's docstring)

    serve_metrics(metrics_port, settings)
    return run_celery(app, ["beat", "--loglevel", settings.log_level, *celery_args])


def _prepare_multiprocess_metrics() -> None:
    """Give the prefork pool a fresh directory to sum its children's metrics in.

    Must run before anything imports prometheus_client. Stale files from an earlier run
    would be added to this run's figures, so an operator-provided directory is emptied.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        for stale in Path(path).glob("*.db"):
            stale.unlink(missing_ok=True)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgematch-metrics-")
