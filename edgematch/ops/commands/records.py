"""``edgematch result``, ``verdicts``, ``migrate-results`` and ``reports``: what edgematch
recorded for an object, the verdict log counted, and the reports of matched content.

Exit status: 0 an answer, 1 nothing found or the log (or Redis) could not be read,
2 bad usage or configuration.
"""

from __future__ import annotations

import datetime as dt
import time

import click

from edgematch.downstream.reports import STATUSES
from edgematch.errors import ConfigurationError, EdgematchError
from edgematch.ops.commands.params import DAY, MOMENT, S3_URI, TIMES_HELP
from edgematch.ops.history import DEFAULT_SPAN_S, log_objects, lookup, summarise
from edgematch.ops.migrate import migrate
from edgematch.ops.progress import Progress
from edgematch.ops.support import CONTEXT, Group, dumps, printable
from edgematch.ops.tally import render
from edgematch.ops.tool import tool_runtime
from edgematch.runtime import runtime

REPORT_STATES = STATUSES


@click.command(context_settings=CONTEXT)
@click.argument("uri", type=S3_URI)
@click.option(
    "--since",
    type=MOMENT,
    metavar="TIME",
    help=f"Look in the verdict log for results scanned at or after TIME: {TIMES_HELP} "
    "(default: a little before the object's upload).",
)
@click.option(
    "--until",
    type=MOMENT,
    metavar="TIME",
    help="... and before TIME (default: a day after the upload, or now).",
)
def result(uri: tuple[str, str], since: float | None, until: float | None) -> int:
    """Print the recorded result of a hash file, or of the content object it was computed
    from, as JSON, with where it was found (`lookup`): the content's verdict tag and
    Redis's hot window (the last EDGEMATCH_RESULT_TTL_S) at once, else the verdict log in
    the object store, read from the object's upload for a day, or over the range given
    (the latest result there). URI is s3://bucket/key of either. Exit 1 when nothing is
    known of it.

    \b
      edgematch result s3://uploads/photos/cat.jpg.bin
      edgematch result s3://uploads/photos/cat.jpg --since 2026-01-01 --until 2026-02-01
    """
    bucket, key = uri
    rt = tool_runtime()
    try:
        doc = lookup(rt, bucket, key, since=since, until=until)
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        click.echo(f"edgematch result: cannot read the verdict log: {exc}", err=True)
        return 1
    if doc is None:
        click.echo(
            f"edgematch: no result recorded for s3://{bucket}/{printable(key)} "
            "(nor a verdict tag on its content)",
            err=True,
        )
        return 1
    click.echo(dumps(doc, indent=2, sort_keys=True))
    return 0


@click.command(context_settings=CONTEXT)
@click.option(
    "--since",
    type=MOMENT,
    metavar="TIME",
    help=f"Results scanned at or after TIME: {TIMES_HELP} (default: a day before --until).",
)
@click.option(
    "--until", type=MOMENT, metavar="TIME", help="Results scanned before TIME (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON document.")
def verdicts(since: float | None, until: float | None, as_json: bool) -> int:
    """Count the results in the verdict log (every result edgematch recorded, kept in the
    object store) scanned in a range: by verdict, lane, bucket and day, each result once.
    Reads every object of the range a partition at a time, with progress on stderr; for
    months of a busy pipeline, query the log with DuckDB or Athena (docs/operations.md).

    \b
      edgematch verdicts
      edgematch verdicts --since 2026-11-01 --until 2026-12-01 --json
      edgematch verdicts --since 7d
    """
    hi = until if until is not None else time.time()
    lo = since if since is not None else hi - DEFAULT_SPAN_S
    if lo >= hi:
        raise click.BadParameter("must be before --until", param_hint="--since")
    rt = tool_runtime()
    try:
        tally = summarise(log_objects(rt), lo, hi)
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        click.echo(f"edgematch verdicts: cannot read the verdict log: {exc}", err=True)
        return 1
    click.echo(dumps(tally.to_dict(), indent=2) if as_json else render(tally))
    return 0


@click.command("migrate-results", context_settings=CONTEXT)
@click.option("--dry-run", is_flag=True, help="Count what would be moved; change nothing.")
def migrate_results(dry_run: bool) -> int:
    """Once, after upgrading from a release that kept results in Redis for 90 days: write
    each of those results to the verdict log and delete it (and its content pointer), delete
    the old idempotency keys, and give the old markers and quarantine and report memories
    the new windows. Run it when every worker runs this release. Safe to run again: what
    was moved is gone from Redis, and a result written twice is counted once.

    \b
      edgematch migrate-results --dry-run
      edgematch migrate-results
    """
    rt = tool_runtime()
    objects = None if dry_run else log_objects(rt)
    progress = Progress("scanning results")
    try:
        done = migrate(rt, objects, progress=progress)
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        click.echo(
            f"\nedgematch migrate-results: stopped: {exc}\nwhat was moved is gone from "
            "Redis; run the same command again to move the rest",
            err=True,
        )
        return 1
    finally:
        progress.finish()
    click.echo(done.line(dry=dry_run))
    return 0


@click.group(cls=Group)
def reports() -> None:
    """Find the reports of matched content: one report record per matched content object,
    kept in EDGEMATCH_REPORTS_BUCKET (docs/quarantine-and-reports.md).

    \b
      edgematch reports list --status failed
      edgematch reports show ID
    """


@reports.command("list", short_help="list reports, oldest first")
@click.option("--status", type=click.Choice(REPORT_STATES), help="Only reports in this state.")
@click.option(
    "--since",
    type=DAY,
    metavar="YYYY-MM-DD",
    help="Only reports of scans on or after this date.",
)
@click.option(
    "--limit", type=int, metavar="N", default=100, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON documents, one a line.")
def list_reports(status: str | None, since: dt.date | None, limit: int, as_json: bool) -> int:
    """List reports, oldest first: id, state, when, the content object and its evidence."""
    for doc in runtime().downstream.reports.list(since=since, status=status, limit=limit):
        if as_json:
            click.echo(dumps(doc, sort_keys=True))
            continue
        evidence = doc.get("evidence") or {}
        where = f"s3://{evidence['bucket']}/{evidence['key']}" if evidence.get("bucket") else "-"
        content = doc.get("content") or {}
        click.echo(
            f"{doc['report_id']}  {doc['status']:<9}  {doc['created_at']}  "
            + printable(
                f"s3://{content.get('bucket')}/{content.get('key')}  "
                f"evidence {evidence.get('state')} {where}"
            )
        )
    return 0


@reports.command("show", short_help="print one report document")
@click.argument("report_id", metavar="ID")
def show_report(report_id: str) -> int:
    """Print the report ID (as `reports list` shows it) as JSON. Exit 1 if there is none."""
    doc = runtime().downstream.reports.find(report_id)
    if doc is None:
        click.echo(f"edgematch: no report {printable(report_id)}", err=True)
        return 1
    click.echo(dumps(doc, indent=2, sort_keys=True))
    return 0
