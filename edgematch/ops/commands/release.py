"""``edgematch release``: put back the content of a report a reviewer rejected.

Exit status: 0 released (or already), 1 no such report, or the run stopped (run it again)
or the evidence could not be discarded (the content is released), 2 refused as asked
(the report is not rejected, the key has a newer upload …) or bad configuration.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import click

from edgematch.downstream.protection import Protection
from edgematch.downstream.release import (
    EvidenceKept,
    NotReleasable,
    Release,
    UnknownReport,
)
from edgematch.errors import ConfigurationError, EdgematchError
from edgematch.ops.support import CONTEXT, Refused, dumps, printable
from edgematch.ops.tool import tool_runtime


@click.command(context_settings=CONTEXT)
@click.argument("report_id", metavar="ID")
@click.option(
    "--operator",
    metavar="NAME",
    help="Who releases (kept in the report's history; default: $USER).",
)
@click.option(
    "--discard-evidence",
    is_flag=True,
    help="Also delete the evidence copy: lifts its legal hold (s3:PutObjectLegalHold) and "
    "passes GOVERNANCE retention (s3:BypassGovernanceRetention). Refused, it stays held.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as one JSON document.")
def release(report_id: str, operator: str | None, discard_evidence: bool, as_json: bool) -> int:
    """Put back the content of report ID, which a reviewer rejected: in move mode a new
    version of the same key, byte-identical, with the original's metadata, content type
    and tags, verified, tagged edgematch-status=released; in tag and off modes the scanned
    version retagged released. Then the report is marked released. Safe to run again: a
    run that was stopped or killed is finished by the same command.

    \b
      edgematch release rpt-2e96b382ead4e34658ccb0b3db2fd9ec --operator ana
    """
    who = (operator or _login_name()).strip()
    if not who:
        raise Refused("--operator NAME is required: no login name to default to")
    rt = tool_runtime()
    releaser = Release(
        settings=rt.settings,
        evidence=rt.downstream.evidence,
        protection=Protection(rt.s3),
        objects=rt.store,
        client=rt.redis,
        reports=rt.downstream.reports,
    )
    try:
        outcome = releaser.run(report_id, operator=who, discard_evidence=discard_evidence)
    except NotReleasable as exc:
        raise Refused(printable(str(exc))) from None
    except UnknownReport as exc:
        click.echo(f"edgematch release: {printable(str(exc))}", err=True)
        return 1
    except EvidenceKept as exc:
        click.echo(f"released {report_id}; {printable(str(exc))}", err=True)
        return 1
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        click.echo(
            f"edgematch release: stopped: {printable(str(exc))}\n"
            "run the same command again: it finishes what is left",
            err=True,
        )
        return 1
    if as_json:
        doc = {"report_id": outcome.report_id, "already": outcome.already, **outcome.release}
        click.echo(dumps({**doc, "evidence": outcome.evidence}, sort_keys=True))
        return 0
    where = outcome.release
    head = "already released" if outcome.already else "released"
    location = f"s3://{where.get('bucket')}/{where.get('key')}" if where.get("bucket") else "-"
    click.echo(
        printable(
            f"{head} {outcome.report_id}: {where.get('state')} {location} "
            f"version {where.get('version_id') or '-'} ({where.get('detail')}); "
            f"{outcome.evidence}"
        )
    )
    _echo_candidates(where)
    return 0


def _echo_candidates(release: Mapping[str, Any]) -> None:
    """The other candidate versions an ambiguous report's release put back."""
    for other in release.get("candidates") or []:
        click.echo(
            printable(
                f"  and candidate version {other.get('version_id') or '-'}: "
                f"{other.get('state')} ({other.get('detail')})"
            )
        )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry (a container's random uid)
        return ""
