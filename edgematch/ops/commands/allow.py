"""``edgematch allow``: the allowlist of match ids and hashes a reviewer found wrong.

Exit status: 0 done, 1 nothing to remove or S3/Redis could not be reached, 2 bad usage
or configuration.
"""

from __future__ import annotations

import datetime as dt

import click

from edgematch.ops.allowing import ADD, REMOVE, change, restore
from edgematch.ops.support import Group, Refused, dumps, printable
from edgematch.ops.tool import tool_runtime
from edgematch.pipeline.allowlist import MATCH_ID, SHA256, Entry, normalised

_WHO = click.option(
    "--reviewer", required=True, metavar="NAME", help="Who decides (kept in the record)."
)
_WHY = click.option(
    "--reason", required=True, metavar="TEXT", help="Why (kept in the record), e.g. the report id."
)
_MATCH_ID = click.option("--match-id", metavar="ID", help="A match id, as a report names it.")
_HASH = click.option(
    "--hash-sha256", metavar="HEX", help="The SHA-256 of one hash file (a result's hash_sha256)."
)


def _which(match_id: str | None, hash_sha256: str | None) -> tuple[str, str]:
    if (match_id is None) == (hash_sha256 is None):
        raise Refused("give exactly one of --match-id and --hash-sha256")
    kind, value = (MATCH_ID, match_id) if match_id is not None else (SHA256, hash_sha256)
    assert value is not None
    try:
        return kind, normalised(kind, value)
    except ValueError as exc:
        raise Refused(str(exc)) from None


def _text(name: str, value: str) -> str:
    if not value.strip():
        raise Refused(f"{name} must not be empty")
    return value.strip()


@click.group(cls=Group)
def allow() -> None:
    """The allowlist: a match whose every match id (or whose hash) is on it is recorded
    `allowlisted`, neither quarantined nor reported. Every change is recorded with who,
    why and when in EDGEMATCH_REPORTS_BUCKET under allowlist/ (runbook:
    deploy/runbooks/false-positive.md).

    \b
      edgematch allow add --match-id 2ad453d9a64a8e03 --reviewer ana --reason "rpt-… rejected"
      edgematch allow list
      edgematch allow remove --match-id 2ad453d9a64a8e03 --reviewer ana --reason "list fixed"
    """


@allow.command("add", short_help="put a match id or a hash on the allowlist")
@_MATCH_ID
@_HASH
@_WHO
@_WHY
def add(match_id: str | None, hash_sha256: str | None, reviewer: str, reason: str) -> int:
    """Put a match id (--match-id) or one hash file's SHA-256 (--hash-sha256) on the
    allowlist. Matches recorded from now on whose every match id is listed are
    `allowlisted`; content already quarantined stays so until `edgematch release`."""
    kind, value = _which(match_id, hash_sha256)
    entry = Entry(kind, value, _text("--reviewer", reviewer), _text("--reason", reason))
    key = change(tool_runtime(), ADD, entry)
    click.echo(f"allowlisted {kind} {printable(value)} (recorded at {printable(key)})")
    return 0


@allow.command("remove", short_help="take a match id or a hash off the allowlist")
@_MATCH_ID
@_HASH
@_WHO
@_WHY
def remove(match_id: str | None, hash_sha256: str | None, reviewer: str, reason: str) -> int:
    """Take a match id or a hash off the allowlist: its matches are quarantined and
    reported again from now on. Exit 1 when it is not on the list."""
    kind, value = _which(match_id, hash_sha256)
    rt = tool_runtime()
    if rt.allowlist.get(kind, value) is None:
        click.echo(f"edgematch allow remove: {kind} {printable(value)} is not listed", err=True)
        return 1
    entry = Entry(kind, value, _text("--reviewer", reviewer), _text("--reason", reason))
    key = change(rt, REMOVE, entry)
    click.echo(f"removed {kind} {printable(value)} (recorded at {printable(key)})")
    return 0


@allow.command("list", short_help="print the allowlist")
@click.option("--json", "as_json", is_flag=True, help="Print JSON documents, one a line.")
def list_entries(as_json: bool) -> int:
    """Print the allowlist, oldest entry first: what, who, when, why."""
    for entry in tool_runtime().allowlist.entries():
        if as_json:
            click.echo(dumps(entry.to_dict(), sort_keys=True))
            continue
        when = dt.datetime.fromtimestamp(entry.at, dt.UTC).isoformat(timespec="seconds")
        click.echo(
            printable(f"{entry.kind:<8}  {entry.value}  {when}  {entry.reviewer}: {entry.reason}")
        )
    return 0


@allow.command("restore", short_help="rebuild the allowlist in Redis from its records")
def restore_entries() -> int:
    """Rebuild the allowlist in Redis from the records of every change in the object
    store (after Redis lost it: a restore, a failover to a replica behind). Safe to run
    again."""
    records, entries = restore(tool_runtime())
    click.echo(f"allowlist rebuilt from {records} records: {entries} entries")
    return 0
