"""``edgematch dlq``: list, show, count, replay and purge dead letters.

Exit status: 0 done; 1 an entry named was not found, or a replay could not be enqueued;
2 bad usage or configuration; 130 interrupted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edgematch.ops.support import dumps, duration, moment, printable, rate, tool_runtime
from edgematch.ops.timespec import format_moment

if TYPE_CHECKING:
    from edgematch.ops.progress import Progress
    from edgematch.pipeline.backpressure import Backlog
    from edgematch.recovery.deadletters import DeadLetter, DeadLetters, Stats
    from edgematch.recovery.replay import Replayer
    from edgematch.runtime import Runtime

# The states of an entry (deadletters.FAILED, deadletters.REPLAYING), for --state.
STATES = ("failed", "replaying")

DESCRIPTION = """\
Dead letters are the work edgematch gave up on: items the API refused or that ran out of
attempts, hash files refused at ingest, malformed SQS messages, tasks that crashed or
killed their worker (poison), quarantine or reporting that could not complete. Each is
kept with its reason until a replay succeeds or it is purged.

  edgematch dlq stats                          counts by reason and queue, and the bound
  edgematch dlq list --reason retries_exhausted --since 6h
  edgematch dlq show ID
  edgematch dlq replay --reason retries_exhausted --dry-run
  edgematch dlq replay --all --rate 20
  edgematch dlq purge --older-than 30d --yes

Replaying is safe to repeat: an entry whose replay is under way is not scanned twice.
See deploy/runbooks/ for when to do what.
"""

TIMES_HELP = "a date (2024-05-01, 2024-05-01T12:30Z) or a duration back from now (6h, 7d)"


def add_commands(sub: Any) -> None:
    """Add ``dlq`` and its actions to the ``edgematch`` parser's subcommands."""
    p = sub.add_parser(
        "dlq",
        help="list, show, replay and purge dead letters",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)

    q = actions.add_parser(
        "list",
        help="list dead letters, newest failure first",
        description="List dead letters, newest failure first, as a table or JSON.",
    )
    _filters(q)
    q.add_argument("--state", choices=STATES, help="only entries in this state")
    q.add_argument(
        "--limit",
        type=int,
        default=100,
        help="at most this many, 0 for all (default: %(default)s)",
    )
    q.add_argument("--json", action="store_true", help="print a JSON array of full entries")
    q.set_defaults(run=_list)

    q = actions.add_parser(
        "show", help="print one dead letter", description="Print one dead letter as JSON."
    )
    q.add_argument("entry_id", metavar="ID")
    q.set_defaults(run=_show)

    q = actions.add_parser(
        "stats",
        help="counts by reason and by queue, and the store's bound",
        description="Count dead letters by reason and by queue; show the store's bound and "
        "how many failures it refused since it filled.",
    )
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(run=_stats)

    q = actions.add_parser(
        "replay",
        help="enqueue the original tasks again",
        description="Enqueue each selected entry's original task again with its original "
        "arguments and replayed_from=ID (an item the API gave up on is ingested and scanned "
        "again). The entry is removed when the replayed task succeeds and updated if it "
        "fails. Replaying an entry twice is harmless. Replays wait while the backlog is at "
        "the high-water mark, like intake.",
    )
    q.add_argument("ids", nargs="*", metavar="ID", help="entries to replay")
    q.add_argument("--all", action="store_true", help="replay every entry")
    _filters(q)
    q.add_argument("--dry-run", action="store_true", help="list what would be replayed, do nothing")
    q.add_argument("--rate", type=rate, help="at most this many enqueues per second")
    q.set_defaults(run=_replay)

    q = actions.add_parser(
        "purge",
        help="delete dead letters for good",
        description="Delete dead letters for good: the ones named, or those whose last failure "
        "is older than a duration (narrowed by --reason and --queue). Asks first unless --yes.",
    )
    q.add_argument("ids", nargs="*", metavar="ID", help="entries to delete")
    q.add_argument(
        "--older-than", type=duration, metavar="D", help="last failure older than D (7d, 12h)"
    )
    q.add_argument("--reason", help="with --older-than: only this reason")
    q.add_argument("--queue", help="with --older-than: only this queue or step")
    q.add_argument("--yes", action="store_true", help="do not ask")
    q.set_defaults(run=_purge)


def _filters(q: argparse.ArgumentParser) -> None:
    q.add_argument("--queue", help="only this queue or step (ingest, match, sqs …)")
    q.add_argument("--reason", help="only this reason (retries_exhausted, poison …)")
    q.add_argument("--since", type=moment, metavar="T", help=f"last failure since T: {TIMES_HELP}")


def _usage(message: str) -> int:
    print(f"edgematch dlq: error: {message}", file=sys.stderr)
    return 2


# --- list, show, stats -----------------------------------------------------------------


def _list(args: argparse.Namespace, rest: list[str]) -> int:
    if args.limit < 0:
        return _usage("--limit must be 0 (all) or more")
    from edgematch.recovery.deadletters import Filter

    store = tool_runtime().dead_letters
    where = Filter(queue=args.queue, reason=args.reason, since=args.since, state=args.state)
    entries = _limited(store.iter(where), args.limit)
    if args.json:
        _print_json_array(entry.to_dict() for entry in entries)
        return 0
    shown = 0
    print(f"{'LAST FAILURE':<20}  {'REASON':<18}  {'QUEUE':<18}  ATT  {'STATE':<9}  ID")
    for entry in entries:
        shown += 1
        print(
            f"{format_moment(entry.last_failed_at):<20}  {entry.reason:<18}  "
            f"{entry.queue:<18}  {entry.attempts:>3}  {entry.state:<9}  {entry.id}"
        )
        print(f"{'':<20}  {printable(_where(entry))}  {printable(entry.message[:100])}")
    total = store.count()
    print(f"{shown} shown of {total} dead letters" + (" (filtered)" if where != Filter() else ""))
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


def _where(entry: DeadLetter) -> str:
    if not entry.bucket:
        return "-"
    version = f" version {entry.version_id}" if entry.version_id else ""
    return f"s3://{entry.bucket}/{entry.key or ''}{version}"


def _show(args: argparse.Namespace, rest: list[str]) -> int:
    entry = tool_runtime().dead_letters.get(args.entry_id)
    if entry is None:
        print(f"edgematch dlq: no dead letter {args.entry_id!r}", file=sys.stderr)
        return 1
    doc = entry.to_dict()
    for name in ("first_failed_at", "last_failed_at", "replayed_at"):
        doc[name.removesuffix("_at")] = format_moment(doc[name]) if doc[name] else None
    print(dumps(doc, indent=2, sort_keys=True))
    return 0


def _stats(args: argparse.Namespace, rest: list[str]) -> int:
    stats = tool_runtime().dead_letters.stats()
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2, sort_keys=True))
        return 0
    print(render_stats(stats))
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


def _replay(args: argparse.Namespace, rest: list[str]) -> int:
    problem = _replay_usage(args)
    if problem:
        return _usage(problem)
    from edgematch.ops.progress import Progress

    rt = tool_runtime()
    entries, missing = _select(rt.dead_letters, args)
    for entry_id in missing:
        print(f"edgematch dlq: no dead letter {entry_id!r}", file=sys.stderr)
    if args.dry_run:
        _dry_run(_replayer(rt, None, None), entries)
        return 1 if missing else 0
    progress = Progress("replay", len(entries))
    replayer = _replayer(rt, args.rate, progress)
    try:
        report = replayer.replay(entries)
    except KeyboardInterrupt:
        print("\nedgematch dlq: interrupted; entries not reached are untouched", file=sys.stderr)
        return 130
    finally:
        progress.finish()
    print(
        f"replayed {len(report.replayed)}"
        + (f", {len(report.again)} again (a replay was under way)" if report.again else "")
        + (f", {len(report.skipped)} not replayable" if report.skipped else "")
        + (f", {len(report.missing)} resolved meanwhile" if report.missing else "")
    )
    for entry_id, why in report.skipped.items():
        print(f"  skipped {entry_id}: {printable(why)}")
    if report.error:
        print(f"edgematch dlq: stopped: {report.error}", file=sys.stderr)
        return 1
    return 1 if missing else 0


def _replay_usage(args: argparse.Namespace) -> str | None:
    filtered = args.reason or args.since is not None or args.queue
    if args.ids and (args.all or filtered):
        return "name entries or select them (--all, --reason, --since, --queue), not both"
    if args.all and filtered:
        return "--all replays every entry; drop it to select by --reason/--since/--queue"
    if not (args.ids or args.all or filtered):
        return "say what to replay: ID…, --all, --reason R or --since T"
    return None


def _select(store: DeadLetters, args: argparse.Namespace) -> tuple[list[DeadLetter], list[str]]:
    """The entries to replay, and the named ones that do not exist."""
    from edgematch.recovery.deadletters import Filter

    if not args.ids:
        # Oldest first, the order things broke in. The set is fixed before anything is
        # replayed, so an entry that fails again meanwhile is not picked up twice.
        where = Filter(queue=args.queue, reason=args.reason, since=args.since)
        return list(store.iter(where, newest_first=False)), []
    entries: list[DeadLetter] = []
    missing: list[str] = []
    for entry_id in dict.fromkeys(args.ids):
        found = store.get(entry_id)
        if found is None:
            missing.append(entry_id)
        else:
            entries.append(found)
    return entries, missing


def _replayer(rt: Runtime, rate_per_s: float | None, progress: Progress | None) -> Replayer:
    # Celery is configured only when a command needs it: `dlq list` must not.
    from edgematch.pipeline.backpressure import Gate, backlog
    from edgematch.recovery.replay import Replayer
    from edgematch.tasks import app
    from edgematch.tasks.steps import journal

    def enqueue(name: str, kwargs: dict[str, Any], task_id: str) -> None:
        journal(name, kwargs, task_id)  # a replay lost with a killed worker is sent again
        app.send_task(name, kwargs=kwargs, task_id=task_id)

    def accepts(name: str) -> bool:
        task = app.tasks.get(name)
        return task is not None and "replayed_from" in inspect.signature(task.run).parameters

    def paused(current: Backlog, mark: int) -> None:
        if progress is not None:
            progress.set_note(f"paused: backlog {current.total} at mark {mark}")

    gate = Gate(
        lambda: backlog(rt),
        lane="replay",
        high_water=rt.settings.intake_high_water,
        on_pause=paused,
    )
    return Replayer(
        rt.dead_letters,
        enqueue=enqueue,
        forget=rt.buffer.forget,
        accepts=accepts,
        gate=gate,
        rate_per_s=rate_per_s,
        progress=progress,
    )


def _dry_run(replayer: Replayer, entries: list[DeadLetter]) -> None:
    from edgematch.recovery.replay import NotReplayable

    would = 0
    for entry in entries:
        try:
            planned = replayer.check(entry)
        except NotReplayable as exc:
            print(f"skip    {entry.id}: {printable(str(exc))}")
            continue
        would += 1
        under_way = entry.state == "replaying"
        again = " (a replay is under way: re-enqueued, not rescanned)" if under_way else ""
        rescan = f", forgetting {len(planned.forget)} idempotency key(s)" if planned.forget else ""
        print(
            f"replay  {entry.id} as {planned.task} [{entry.reason}] "
            f"{printable(_where(entry))}{rescan}{again}"
        )
    print(f"dry run: {would} of {len(entries)} would be replayed; nothing was changed")


# --- purge -------------------------------------------------------------------------------


def _purge(args: argparse.Namespace, rest: list[str]) -> int:
    problem = _purge_usage(args)
    if problem:
        return _usage(problem)
    from edgematch.recovery.deadletters import Filter

    store = tool_runtime().dead_letters
    where = Filter(
        reason=args.reason,
        queue=args.queue,
        before=None if args.older_than is None else time.time() - args.older_than,
    )
    ids = list(dict.fromkeys(args.ids))
    count = len(ids) if ids else sum(1 for _ in store.iter(where))
    if count == 0:
        print("nothing to purge")
        return 0
    if not args.yes and not sys.stdin.isatty():
        return _usage(f"purge deletes {count} entries for good: add --yes to confirm")
    if not args.yes and not _confirm(f"Delete {count} dead letter(s) for good? [y/N] "):
        print("nothing purged")
        return 0
    removed = store.remove_many(ids) if ids else store.purge(where)
    print(f"purged {removed}")
    if ids and removed < len(ids):
        print(
            f"edgematch dlq: {len(ids) - removed} of the named entries did not exist",
            file=sys.stderr,
        )
        return 1
    return 0


def _purge_usage(args: argparse.Namespace) -> str | None:
    if bool(args.ids) == (args.older_than is not None):
        return "purge takes entry IDs or --older-than D, one of the two"
    if args.ids and (args.reason or args.queue):
        return "--reason and --queue narrow --older-than; name entries without them"
    return None


def _confirm(question: str) -> bool:
    return input(question).strip().lower() in ("y", "yes")
