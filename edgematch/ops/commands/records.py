"""``edgematch result`` and ``edgematch reports``: what edgematch recorded for an object."""

from __future__ import annotations

import datetime as dt

import click

from edgematch.ops.commands.params import DAY, S3_URI
from edgematch.ops.support import CONTEXT, Group, dumps, printable
from edgematch.runtime import runtime

REPORT_STATES = ("pending", "submitted", "failed", "shadow")


@click.command(context_settings=CONTEXT)
@click.argument("uri", type=S3_URI)
def result(uri: tuple[str, str]) -> int:
    """Print the recorded result of a hash file, or of the content object it was computed
    from, as JSON. URI is s3://bucket/key of either. Exit 1 when none is recorded.

    \b
      edgematch result s3://uploads/photos/cat.jpg.bin
      edgematch result s3://uploads/photos/cat.jpg
    """
    bucket, key = uri
    doc = runtime().results.get(bucket, key)
    if doc is None:
        click.echo(f"edgematch: no result recorded for s3://{bucket}/{printable(key)}", err=True)
        return 1
    click.echo(dumps(doc, indent=2, sort_keys=True))
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
