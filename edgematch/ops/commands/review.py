"""``edgematch review``: a person's decision between a match and its report.

Exit status: 0 done (or already so), 1 no such report, 2 a decision the report's state
refuses (rejecting a confirmed report, confirming a rejected one) or bad usage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from edgematch.downstream.reports import PENDING_REVIEW, STATUSES
from edgematch.downstream.review import Decision, DecisionRefused, Link, Review
from edgematch.ops.commands.params import MOMENT, TIMES_HELP
from edgematch.ops.support import Group, Refused, dumps, printable
from edgematch.ops.tool import tool_runtime

ANY = "any"
_REVIEWER_HELP = "Who you are: recorded in the report's history with the decision."


def _review() -> Review:
    rt = tool_runtime()

    def submit(key: str, doc: Mapping[str, Any]) -> None:
        # Imported here: importing edgematch.tasks configures Celery, which a command may do
        # only once its arguments and settings are checked.
        from edgematch.tasks import submit_report  # noqa: PLC0415

        content = doc.get("content") or {}
        rt.publisher.send(
            submit_report,
            {
                "report_id": doc["report_id"],
                "key": key,
                "correlation_id": doc.get("correlation_id"),
                "content": {"bucket": content.get("bucket"), "key": content.get("key")},
            },
        )

    return Review(rt.downstream, submit=submit)


def _name(value: str, option: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty", param_hint=option)
    return value.strip()


@click.group(cls=Group)
def review() -> None:
    """Review the reports held before submission: EDGEMATCH_REVIEW=required, or a match
    id the flood guard holds (docs/quarantine-and-reports.md). Look at the quarantined
    copy through a short-lived link, then confirm (the report is submitted, once) or
    reject (it never is).

    \b
      edgematch review list
      edgematch review show ID --reviewer alice
      edgematch review confirm ID --reviewer alice --note "seen: known material"
      edgematch review reject ID --reviewer alice --reason "innocent: a logo"
    """


@review.command("list", short_help="reports waiting for a decision, oldest first")
@click.option(
    "--status",
    type=click.Choice((*STATUSES, ANY)),
    default=PENDING_REVIEW,
    show_default=True,
    help=f"Only reports in this state ({ANY}: every state).",
)
@click.option(
    "--since", type=MOMENT, metavar="TIME", help=f"Only reports of scans since TIME: {TIMES_HELP}."
)
@click.option("--match-id", metavar="ID", help="Only reports naming this match id.")
@click.option(
    "--limit", type=int, metavar="N", default=100, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON documents, one a line.")
def list_held(
    status: str, since: float | None, match_id: str | None, limit: int, as_json: bool
) -> int:
    """List reports oldest first (by when they were filed): id, state, when, match ids,
    the content object and why it is held."""
    docs = _review().list(
        status=None if status == ANY else status, since=since, match_id=match_id, limit=limit
    )
    for doc in docs:
        if as_json:
            click.echo(dumps(doc, sort_keys=True))
            continue
        content = doc.get("content") or {}
        click.echo(
            f"{doc['report_id']}  {doc['status']:<14}  {doc['created_at']}  "
            + printable(
                f"{','.join(doc.get('match_ids') or ()) or '-'}  "
                f"s3://{content.get('bucket')}/{content.get('key')}  "
                f"{doc.get('status_reason') or ''}"
            ).rstrip()
        )
    return 0


@review.command("show", short_help="one report, and a short-lived link to its evidence")
@click.argument("report_id", metavar="ID")
@click.option("--reviewer", metavar="NAME", help=f"{_REVIEWER_HELP} Required for a link.")
@click.option("--no-link", is_flag=True, help="Show the report without issuing a link.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def show(report_id: str, reviewer: str | None, no_link: bool, as_json: bool) -> int:
    """Show the report ID: its state and history, the content object, the matches, where
    the evidence is, and a pre-signed link that lets your browser fetch the quarantined
    copy for EDGEMATCH_REVIEW_LINK_S (15 minutes by default). The image itself is never
    printed. Each link issued is recorded in the report's history with --reviewer.
    Exit 1 if there is no such report.

    \b
      edgematch review show rpt-0123… --reviewer alice
    """
    if reviewer is None and not no_link:
        raise Refused("--reviewer NAME is required to issue a link (or give --no-link)")
    rv = _review()
    link: Link | None = None
    try:
        if no_link:
            found = rv.find(report_id)
            if found is None:
                raise LookupError(report_id)
            doc = found[1]
        else:
            assert reviewer is not None
            doc, link = rv.issue_link(report_id, reviewer=_name(reviewer, "--reviewer"))
    except LookupError:
        click.echo(f"edgematch: no report {printable(report_id)}", err=True)
        return 1
    if as_json:
        click.echo(dumps({"report": doc, "link": link.to_dict() if link else None}, indent=2))
    else:
        click.echo(_render(doc, link, linked=not no_link))
    return 0


def _render(doc: Mapping[str, Any], link: Link | None, *, linked: bool) -> str:
    content, ev = doc.get("content") or {}, doc.get("evidence") or {}
    where = f"s3://{ev.get('bucket')}/{ev.get('key')}" if ev.get("bucket") else "-"
    hold = " legal hold" if ev.get("legal_hold") else ""
    lines = [
        f"report    {doc['report_id']}  {doc['status']}  filed {doc['created_at']}  "
        f"reporter {doc.get('reporter')}",
        f"content   s3://{content.get('bucket')}/{content.get('key')}  "
        f"version {content.get('version_id') or content.get('etag')}",
        f"matches   match ids {', '.join(doc.get('match_ids') or ()) or '-'}; sources "
        f"{', '.join(doc.get('sources') or ()) or '-'}; violations "
        f"{', '.join(doc.get('violations') or ()) or '-'}",
        f"evidence  {ev.get('state')} {where} version {ev.get('version_id')}{hold}",
    ]
    if ev.get("ambiguity"):
        # Which version was scanned is not known: every candidate was quarantined.
        lines.append(f"ambiguous {ev['ambiguity']}")
        for other in ev.get("candidates") or []:
            lines.append(f"  also    {other.get('state')} version {other.get('version_id')}")
    lines += [f"why       {doc.get('status_reason') or '-'}", "history"]
    for entry in doc.get("history", []):
        what = entry.get("event") or entry.get("status")
        who = f" by {entry['actor']}" if entry.get("actor") else ""
        said = entry.get("note") or entry.get("reason") or ""
        lines.append(f"  {entry.get('at')}  {what}{who}  {said}".rstrip())
    if link is not None:
        lines += [f"link      {link.url}", f"          valid until {link.expires_at}"]
    elif linked:
        lines.append("link      none: the report names no evidence to show")
    return "\n".join(printable(line) for line in lines)


@review.command("confirm", short_help="confirm a held report: it is submitted, once")
@click.argument("report_id", metavar="ID")
@click.option("--reviewer", metavar="NAME", required=True, help=_REVIEWER_HELP)
@click.option("--note", metavar="TEXT", help="What you saw, recorded with the decision.")
def confirm(report_id: str, reviewer: str, note: str | None) -> int:
    """Confirm the held report ID: it becomes `confirmed` and is submitted through the
    configured reporter (EDGEMATCH_REPORTER), with the workers' retries and dead letters.
    Confirming again submits nothing twice. Refused for a rejected report.
    """
    reviewer = _name(reviewer, "--reviewer")
    return _decide(report_id, lambda rv: rv.confirm(report_id, reviewer=reviewer, note=note))


@review.command("reject", short_help="reject a held report: it is never submitted")
@click.argument("report_id", metavar="ID")
@click.option("--reviewer", metavar="NAME", required=True, help=_REVIEWER_HELP)
@click.option("--reason", metavar="TEXT", required=True, help="Why: recorded with the decision.")
def reject(report_id: str, reviewer: str, reason: str) -> int:
    """Reject the held report ID (a false positive): it becomes `rejected` and is never
    submitted; the content stays quarantined until it is released. Refused for a
    confirmed or submitted report.
    """
    reviewer, reason = _name(reviewer, "--reviewer"), _name(reason, "--reason")
    return _decide(report_id, lambda rv: rv.reject(report_id, reviewer=reviewer, reason=reason))


def _decide(report_id: str, act: Callable[[Review], Decision]) -> int:
    rv = _review()
    try:
        decision = act(rv)
    except LookupError:
        click.echo(f"edgematch: no report {printable(report_id)}", err=True)
        return 1
    except DecisionRefused as exc:
        raise Refused(printable(str(exc))) from None
    click.echo(printable(decision.message))
    return 0
