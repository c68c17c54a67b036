"""The ``edgematch`` command: the process types an operator runs, and the tools around them.

Exit status: 0 success, 1 failure or not found, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

from edgematch import __version__
from edgematch.config.settings import Settings
from edgematch.errors import ConfigurationError
from edgematch.infra.keys import Keys
from edgematch.names import QUEUE_STEPS
from edgematch.ops.support import dumps, printable, safe_streams

EPILOG = """\
Configuration comes from EDGEMATCH_* environment variables (see README.md); S3 and SQS
endpoints from boto3's own AWS_ENDPOINT_URL* variables.

process types (see Procfile):
  edgematch intake     long-poll SQS, enqueue one ingest task per hash file
  edgematch worker     the Celery worker: ingest, match, results, quarantine, reports
  edgematch beat       the periodic sweep that keeps the batch buffer drained

on-call (see deploy/runbooks/):
  edgematch status     is the pipeline healthy, and where is it stuck (exit 1 if not)
  edgematch dlq        list, show, replay and purge dead letters
  edgematch backfill   scan hash files already in a bucket, resumably
  edgematch result     the result of one object: its tag, Redis's hot window, the verdict log
  edgematch verdicts   count the verdict log's results by verdict, lane, bucket and day
"""


def main(argv: Sequence[str] | None = None) -> int:
    safe_streams()
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("worker", "beat"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args, rest)
    except ConfigurationError as exc:
        print(f"edgematch: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgematch",
        description="Scan PhotoDNA edge hashes from object-storage uploads "
        "with PhotoDNA Cloud Service.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgematch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("intake", help="long-poll SQS and enqueue ingest tasks")
    _metrics_port_argument(p)
    p.set_defaults(run=_intake)

    p = sub.add_parser(
        "worker",
        help="run a Celery worker (extra arguments go to celery worker)",
        description="Run a Celery worker. Arguments after the known ones go to `celery worker` "
        "(for example --concurrency 4 or --pool solo). Only a worker that consumes match, or "
        "reports with EDGEMATCH_REPORTER=photodna, needs the subscription key.",
    )
    p.add_argument(
        "--queues",
        default=",".join(QUEUE_STEPS),
        help="comma-separated steps to consume: "
        + ", ".join(QUEUE_STEPS)
        + " (default: %(default)s)",
    )
    _metrics_port_argument(p)
    p.set_defaults(run=_worker)

    p = sub.add_parser("beat", help="run the periodic sweep (exactly one per deployment)")
    _metrics_port_argument(p)
    p.set_defaults(run=_beat)

    p = sub.add_parser(
        "health",
        help="liveness or readiness of a process on this host (exit 0 or 1), for probes",
        description="Check a process's heartbeat file (touched by its working loop); "
        "--readiness also needs Redis to answer. Exit 0 when healthy, 1 when not.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--liveness", action="store_true", help="is the process's loop alive?")
    which.add_argument("--readiness", action="store_true", help="alive, and Redis answers?")
    p.add_argument(
        "--process",
        choices=("worker", "intake", "beat"),
        default="worker",
        help="which process type (default: %(default)s)",
    )
    p.add_argument(
        "--max-age",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="oldest heartbeat still counted alive (default: %(default)s)",
    )
    p.set_defaults(run=_health)

    p = sub.add_parser("reports", help="find the reports of matched content")
    reports_sub = p.add_subparsers(dest="reports_command", metavar="ACTION", required=True)
    q = reports_sub.add_parser("list", help="list reports, oldest first")
    q.add_argument("--status", choices=("pending", "submitted", "failed", "shadow"))
    q.add_argument("--since", help="only reports of scans on or after this date (YYYY-MM-DD)")
    q.add_argument("--limit", type=int, default=100, help="at most this many (default: 100)")
    q.add_argument("--json", action="store_true", help="print JSON documents, one a line")
    q.set_defaults(run=_reports_list)
    q = reports_sub.add_parser("show", help="print one report document")
    q.add_argument("report_id", metavar="ID")
    q.set_defaults(run=_reports_show)

    p = sub.add_parser(
        "config", help="print the effective settings (secrets masked) and check them"
    )
    p.set_defaults(run=_config)

    from edgematch.ops.commands import add_commands as add_ops_commands
    from edgematch.ops.dlq import add_commands as add_dlq_commands
    from edgematch.ops.history import add_commands as add_history_commands
    from edgematch.ops.migrate import add_commands as add_migrate_commands

    add_ops_commands(sub)
    add_dlq_commands(sub)
    add_history_commands(sub)
    add_migrate_commands(sub)

    return parser


def _metrics_port_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (default: EDGEMATCH_METRICS_PORT; none)",
    )


def _serve_metrics(args: argparse.Namespace, settings: Settings) -> None:
    port = args.metrics_port or settings.metrics_port
    if not port:
        return
    from edgematch.infra import metrics
    from edgematch.runtime import runtime

    metrics.serve(port, runtime_factory=runtime)


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


def _health(args: argparse.Namespace, rest: list[str]) -> int:
    from edgematch.infra import health

    if args.liveness:
        check = health.liveness(args.process, max_age_s=args.max_age)
    else:
        settings = Settings.from_env()
        check = health.readiness(
            args.process,
            settings.redis_url,
            max_age_s=args.max_age,
            sentinel_master=settings.sentinel_master,
        )
    print(("ok: " if check.ok else "unhealthy: ") + check.detail)
    return 0 if check.ok else 1


def _intake(args: argparse.Namespace, rest: list[str]) -> int:
    from edgematch.infra import logs
    from edgematch.infra.heartbeat import Heartbeat
    from edgematch.infra.storage import make_sqs_client
    from edgematch.pipeline.events import ObjectCreated
    from edgematch.pipeline.ingest import event_to_args
    from edgematch.pipeline.intake import Intake
    from edgematch.runtime import runtime
    from edgematch.tasks.steps import enqueue_events

    rt = runtime()
    rt.settings.require_sqs_queue_url()
    logs.configure(rt.settings.log_level, rt.settings.log_format, process="intake")
    _serve_metrics(args, rt.settings)

    def enqueue(work: Sequence[tuple[ObjectCreated, str]]) -> None:
        enqueue_events([(event_to_args(obj), cid) for obj, cid in work], "live")

    intake = Intake(rt, make_sqs_client(rt.settings), enqueue)
    intake.install_signal_handlers()
    heartbeat = Heartbeat(rt.redis, rt.settings.namespace, "intake").start()
    try:
        intake.run()
    finally:
        heartbeat.stop()
    return 0


def needs_subscription_key(steps: Collection[str], settings: Settings) -> bool:
    """Does a worker consuming ``steps`` call the PhotoDNA API, and so need the key?

    ``match`` calls MatchEdgeHash (its pumps; the sweep runs there too); ``reports`` calls the
    Report operation with the ``photodna`` reporter only. No other step calls the API.
    """
    return "match" in steps or ("reports" in steps and settings.reporter == "photodna")


def _worker(args: argparse.Namespace, rest: list[str]) -> int:
    settings = Settings.from_env()
    keys = Keys(settings.namespace)
    steps = [s.strip() for s in args.queues.split(",") if s.strip()]
    try:
        queues = [keys.queue(step) for step in steps]
    except ValueError as exc:
        raise ConfigurationError(f"--queues: {exc}") from None
    # Before Celery starts: a worker that would call the API refuses to start without the key.
    if needs_subscription_key(steps, settings):
        try:
            settings.require_subscription_key()
        except ConfigurationError as exc:
            which = "match" if "match" in steps else "reports with EDGEMATCH_REPORTER=photodna"
            raise ConfigurationError(f"{exc} by a worker that consumes {which}") from None
    # Every recorded result goes to the verdict log: without a bucket for it, results
    # would pile up in Redis, so a worker that records them refuses to start.
    if "results" in steps and not settings.effective_verdict_log_bucket:
        raise ConfigurationError(
            "EDGEMATCH_VERDICT_LOG_BUCKET (or EDGEMATCH_REPORTS_BUCKET, which it defaults to) "
            "is required by a worker that consumes results: every result goes to the verdict log"
        )
    if args.metrics_port or settings.metrics_port:
        _prepare_multiprocess_metrics()
    from edgematch.config.celery import WORKER_ARGS
    from edgematch.tasks import app

    argv = [
        "worker",
        "--queues",
        ",".join(queues),
        "--loglevel",
        settings.log_level,
        *WORKER_ARGS,
        *rest,
    ]
    if settings.worker_concurrency and not any(a.startswith(("-c", "--concurrency")) for a in rest):
        argv += ["--concurrency", str(settings.worker_concurrency)]
    _serve_metrics(args, settings)
    app.worker_main(argv)  # does not return


def _beat(args: argparse.Namespace, rest: list[str]) -> int:
    settings = Settings.from_env()
    os.environ["EDGEMATCH_PROCESS"] = "beat"
    from edgematch.tasks import app

    _serve_metrics(args, settings)
    app.start(["beat", "--loglevel", settings.log_level, *rest])  # does not return


def _reports_list(args: argparse.Namespace, rest: list[str]) -> int:
    import datetime as dt

    from edgematch.downstream.filing import parts
    from edgematch.runtime import runtime

    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"edgematch: --since: expected YYYY-MM-DD, got {args.since!r}", file=sys.stderr)
        return 2
    docs = parts(runtime()).reports.list(since=since, status=args.status, limit=args.limit)
    for doc in docs:
        if args.json:
            print(dumps(doc, sort_keys=True))
            continue
        evidence = doc.get("evidence") or {}
        where = f"s3://{evidence['bucket']}/{evidence['key']}" if evidence.get("bucket") else "-"
        content = doc.get("content") or {}
        print(
            f"{doc['report_id']}  {doc['status']:<9}  {doc['created_at']}  "
            + printable(
                f"s3://{content.get('bucket')}/{content.get('key')}  "
                f"evidence {evidence.get('state')} {where}"
            )
        )
    return 0


def _reports_show(args: argparse.Namespace, rest: list[str]) -> int:
    from edgematch.downstream.filing import parts
    from edgematch.runtime import runtime

    doc = parts(runtime()).reports.find(args.report_id)
    if doc is None:
        print(f"edgematch: no report {printable(args.report_id)}", file=sys.stderr)
        return 1
    print(dumps(doc, indent=2, sort_keys=True))
    return 0


def _config(args: argparse.Namespace, rest: list[str]) -> int:
    settings = Settings.from_env()
    doc = {k: (str(v) if k == "subscription_key" else v) for k, v in settings.__dict__.items()}
    print(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
