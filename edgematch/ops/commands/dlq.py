"""``edgematch dlq``: list, show, count, replay and purge dead letters.

Exit status: 0 done; 1 an entry named was not found, or a replay could not be enqueued;
2 bad usage or configuration; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import click

from edgematch.ops import replaying
from edgematch.ops.commands.params import DURATION, MOMENT, RATE, TIMES_HELP
from edgematch.ops.progress import Progress
from edgematch.ops.support import Group, Refused, dumps, printable
from edgematch.ops.timespec import format_moment
from edgematch.ops.tool import tool_runtime
from edgematch.recovery.deadletters import DeadLetter, Filter, Stats

# The states of an entry (deadletters.FAILED, deadletters.REPLAYING), for --state.
STATES = ("failed", "replaying")


@click.group(cls=Group)
def dlq() -> None:
    """Dead letters are the work edgematch gave up on: items the API refused or that ran
    out of attempts, hash files refused at ingest, malformed SQS messages, tasks that
    crashed or killed their worker (poison), quarantine or reporting that could not
    complete. Each is kept with its reason until a replay succeeds or it is purged.

    \b
      edgematch dlq stats                          counts by reason and queue, and the bound
      edgematch dlq list --reason retries_exhausted --since 6h
      edgematch dlq show ID
      edgematch dlq replay --reason retries_exhausted --dry-run
      edgematch dlq replay --all --rate 20
      edgematch dlq purge --older-than 30d --yes

    Replaying is safe to repeat: an entry whose replay is under way is not scanned twice.
    See deploy/runbooks/ for when to do what.
    """


def filters(command: Callable[..., Any]) -> Callable[..., Any]:
    """--queue, --reason and --since: the selection `list` and `replay` share."""
    for option in (
        click.option(
            "--since", type=MOMENT, metavar="T", help=f"Last failure since T: {TIMES_HELP}."
        ),
        click.option(
            "--reason", metavar="R", help="Only this reason (retries_exhausted, poison …)."
        ),
        click.option(
            "--queue", metavar="Q", help="Only this queue or step (ingest, match, sqs …)."
        ),
    ):
        command = option(command)
    return command


# --- list, show, stats -----------------------------------------------------------------


@dlq.command("list", short_help="list dead letters, newest failure first")
@filters
@click.option("--state", type=click.Choice(STATES), help="Only entries in this state.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    metavar="N",
    default=100,
    show_default=True,
    help="At most this many, 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of full entries.")
def list_entries(
    *,
    queue: str | None,
    reason: str | None,
    since: float | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> int:
    """List dead letters, newest failure first, as a table or JSON.

    \b
      edgematch dlq list --reason retries_exhausted --since 6h
      edgematch dlq list --queue sqs --json | jq -r '.[].id'
    """
    store = tool_runtime().dead_letters
    where = Filter(queue=queue, reason=reason, since=since, state=state)
    entries = _limited(store.iter(where), limit)
    if as_json:
        _print_json_array(entry.to_dict() for entry in entries)
        return 0
    shown = 0
    click.echo(f"{'LAST FAILURE':<20}  {'REASON':<18}  {'QUEUE':<18}  ATT  {'STATE':<9}  ID")
    for entry in entries:
        shown += 1
        click.echo(
            f"{format_moment(entry.last_failed_at):<20}  {entry.reason:<18}  "
            f"{entry.queue:<18}  {entry.attempts:>3}  {entry.state:<9}  {entry.id}"
        )
        click.echo(
            f"{'':<20}  {printable(replaying.where_of(entry))}  {printable(entry.message[:100])}"
        )
    total = store.count()
    filtered = " (filtered)" if where != Filter() else ""
    click.echo(f"{shown} shown of {total} dead letters{filtered}")
    return 0


def _limited(entries: Iterable[DeadLetter], limit: int) -> Iterable[DeadLetter]:
    for n, entry in enumerate(entries):
        if limit and n >= limit:
            return
        yield entry


def _print_json_array(docs: Iterable[dict[str, Any]]) -> None:
    # Streamed, so that listing every entry of a full store holds one at a time.
    sys.stdout.write("[")
    for n, doc in enumerate(docs):
        sys.stdout.write(("," if n else "") + "\n" + dumps(doc, sort_keys=True))
    sys.stdout.write("\n]\n")


@dlq.command("show", short_help="print one dead letter")
@click.argument("entry_id", metavar="ID")
def show(entry_id: str) -> int:
    """Print the dead letter ID (as `dlq list` shows it) as JSON, its times readable.
    Exit 1 if there is none."""
    entry = tool_runtime().dead_letters.get(entry_id)
    if entry is None:
        click.echo(f"edgematch dlq: no dead letter {entry_id!r}", err=True)
        return 1
    doc = entry.to_dict()
    for name in ("first_failed_at", "last_failed_at", "replayed_at"):
        doc[name.removesuffix("_at")] = format_moment(doc[name]) if doc[name] else None
    click.echo(dumps(doc, indent=2, sort_keys=True))
    return 0


@dlq.command("stats", short_help="counts by reason and by queue, and the store's bound")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(as_json: bool) -> int:
    """Count dead letters by reason and by queue; show the store's bound and how many
    failures it refused since it filled."""
    counts = tool_runtime().dead_letters.stats()
    if as_json:
        click.echo(json.dumps(counts.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(render_stats(counts))
    return 0


def render_stats(stats: Stats) -> str:
    """The human ``dlq stats`` text. Pure."""
    lines = [f"dead letters   {stats.total} of at most {stats.limit} (EDGEMATCH_DEAD_LETTER_LIMIT)"]
    if stats.full:
        lines.append("  FULL: new failures stay in their queues and retry until entries are purged")
    if stats.refused:
        lines.append(
            f"  refused {stats.refused} while full, last at {format_moment(stats.last_refused_at)}"
        )
    for title, counts in (("by reason", stats.by_reason), ("by queue", stats.by_queue)):
        lines.append(title)
        lines += [f"  {name:<28} {count:>7}" for name, count in counts.items()] or ["  -"]
    lines.append(f"replaying      {stats.replaying}")
    lines.append(
        f"failures       oldest {format_moment(stats.oldest_failed_at)}, "
        f"newest {format_moment(stats.newest_failed_at)}"
    )
    return "\n".join(lines)


# --- replay ------------------------------------------------------------------------------


@dlq.command("replay", short_help="enqueue the original tasks again")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "every", is_flag=True, help="Replay every entry.")
@filters
@click.option("--dry-run", is_flag=True, help="List what would be replayed, do nothing.")
@click.option("--rate", type=RATE, metavar="N", help="At most this many enqueues per second.")
def replay(
    *,
    ids: tuple[str, ...],
    every: bool,
    queue: str | None,
    reason: str | None,
    since: float | None,
    dry_run: bool,
    rate: float | None,
) -> int:
    """Enqueue each selected entry's original task again with its original arguments and
    replayed_from=ID (an item the API gave up on is ingested and scanned again): the
    entries named (ID…), --all, or those matching --reason, --since and --queue. The entry
    is removed when the replayed task succeeds and updated if it fails. Replaying an entry
    twice is harmless. Replays wait while the backlog is at the high-water mark, like
    intake. Exit 1 if a named entry does not exist or an enqueue failed.

    \b
      edgematch dlq replay --reason retries_exhausted --dry-run
      edgematch dlq replay --all --rate 20
      edgematch dlq replay ID ID
    """
    filtered = bool(reason or since is not None or queue)
    problem = replaying.usage_problem(ids, every, filtered)
    if problem:
        raise Refused(problem)
    rt = tool_runtime()
    where = Filter(queue=queue, reason=reason, since=since)
    entries, missing = replaying.select(rt.dead_letters, ids, where)
    for entry_id in missing:
        click.echo(f"edgematch dlq: no dead letter {entry_id!r}", err=True)
    if dry_run:
        replaying.dry_run(replaying.replayer(rt, None, None), entries)
        return 1 if missing else 0
    progress = Progress("replay", len(entries))
    try:
        report = replaying.replayer(rt, rate, progress).replay(entries)
    except KeyboardInterrupt:
        click.echo("\nedgematch dlq: interrupted; entries not reached are untouched", err=True)
        return 130
    finally:
        progress.finish()
    replaying.summary(report)
    if report.error:
        click.echo(f"edgematch dlq: stopped: {report.error}", err=True)
        return 1
    return 1 if missing else 0


# --- purge -------------------------------------------------------------------------------


@dlq.command("purge", short_help="delete dead letters for good")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option(
    "--older-than", type=DURATION, metavar="D", help="Last failure older than D (7d, 12h)."
)
@click.option("--reason", metavar="R", help="With --older-than: only this reason.")
@click.option("--queue", metavar="Q", help="With --older-than: only this queue or step.")
@click.option("--yes", is_flag=True, help="Do not ask.")
def purge(
    ids: tuple[str, ...], older_than: float | None, reason: str | None, queue: str | None, yes: bool
) -> int:
    """Delete dead letters for good: the ones named (ID…), or those whose last failure is
    older than a duration (narrowed by --reason and --queue). Asks first unless --yes;
    refuses (exit 2) when it cannot ask. Exit 1 if a named entry did not exist.

    \b
      edgematch dlq purge --older-than 30d --reason malformed_event --yes
      edgematch dlq purge ID ID
    """
    if bool(ids) == (older_than is not None):
        raise Refused("purge takes entry IDs or --older-than D, one of the two")
    if ids and (reason or queue):
        raise Refused("--reason and --queue narrow --older-than; name entries without them")
    store = tool_runtime().dead_letters
    before = None if older_than is None else time.time() - older_than
    where = Filter(reason=reason, queue=queue, before=before)
    named = list(dict.fromkeys(ids))
    count = len(named) if named else sum(1 for _ in store.iter(where))
    if count == 0:
        click.echo("nothing to purge")
        return 0
    if not yes and not sys.stdin.isatty():
        raise Refused(f"purge deletes {count} entries for good: add --yes to confirm")
    if not yes and not _confirm(f"Delete {count} dead letter(s) for good? [y/N] "):
        click.echo("nothing purged")
        return 0
    removed = store.remove_many(named) if named else store.purge(where)
    click.echo(f"purged {removed}")
    if named and removed < len(named):
        missing = len(named) - removed
        click.echo(f"edgematch dlq: {missing} of the named entries did not exist", err=True)
        return 1
    return 0


def _confirm(question: str) -> bool:
    return input(question).strip().lower() in ("y", "yes")
