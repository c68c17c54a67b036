"""What ``edgematch dlq replay`` runs: the selection, the replayer wired to Celery, the
dry run and the summary. The decisions (what a replay re-enqueues, and what it forgets)
are :mod:`edgematch.recovery.replay`'s.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import click

from edgematch.ops.progress import Progress
from edgematch.ops.support import printable
from edgematch.pipeline.backpressure import Backlog, Gate, backlog
from edgematch.recovery.deadletters import DeadLetter, DeadLetters, Filter
from edgematch.recovery.publishing import names_only
from edgematch.recovery.replay import NotReplayable, Replayer, ReplayReport
from edgematch.runtime import Runtime


def where_of(entry: DeadLetter) -> str:
    """The object a dead letter is about, ``s3://bucket/key version V``, or ``-``."""
    if not entry.bucket:
        return "-"
    version = f" version {entry.version_id}" if entry.version_id else ""
    return f"s3://{entry.bucket}/{entry.key or ''}{version}"


def usage_problem(ids: Sequence[str], every: bool, filtered: bool) -> str | None:
    """Why a replay selection is not one, or None. Pure."""
    if ids and (every or filtered):
        return "name entries or select them (--all, --reason, --since, --queue), not both"
    if every and filtered:
        return "--all replays every entry; drop it to select by --reason/--since/--queue"
    if not (ids or every or filtered):
        return "say what to replay: ID…, --all, --reason R or --since T"
    return None


def select(
    store: DeadLetters, ids: Sequence[str], where: Filter
) -> tuple[list[DeadLetter], list[str]]:
    """The entries to replay, and the named ones that do not exist."""
    if not ids:
        # Oldest first, the order things broke in. The set is fixed before anything is
        # replayed, so an entry that fails again meanwhile is not picked up twice.
        return list(store.iter(where, newest_first=False)), []
    entries: list[DeadLetter] = []
    missing: list[str] = []
    for entry_id in dict.fromkeys(ids):
        found = store.get(entry_id)
        if found is None:
            missing.append(entry_id)
        else:
            entries.append(found)
    return entries, missing


def replayer(rt: Runtime, rate_per_s: float | None, progress: Progress | None) -> Replayer:
    """A replayer that enqueues through Celery, journaled, behind intake's backpressure."""
    # Imported here: importing edgematch.tasks configures Celery, which only a replay
    # needs (`dlq list` and the rest of the module must not).
    from edgematch.tasks import app  # noqa: PLC0415

    def enqueue(name: str, kwargs: dict[str, Any], task_id: str) -> None:
        # Journaled first: a replay lost with a killed worker is sent again.
        rt.publisher.journal(name, kwargs, task_id)
        app.send_task(
            name, kwargs=kwargs, task_id=task_id, argsrepr="()", kwargsrepr=names_only(kwargs)
        )

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


def dry_run(plan: Replayer, entries: list[DeadLetter]) -> None:
    """Print what a replay of ``entries`` would do; change nothing."""
    would = 0
    for entry in entries:
        try:
            planned = plan.check(entry)
        except NotReplayable as exc:
            click.echo(f"skip    {entry.id}: {printable(str(exc))}")
            continue
        would += 1
        under_way = entry.state == "replaying"
        again = " (a replay is under way: re-enqueued, not rescanned)" if under_way else ""
        rescan = f", forgetting {len(planned.forget)} idempotency key(s)" if planned.forget else ""
        click.echo(
            f"replay  {entry.id} as {planned.task} [{entry.reason}] "
            f"{printable(where_of(entry))}{rescan}{again}"
        )
    click.echo(f"dry run: {would} of {len(entries)} would be replayed; nothing was changed")


def summary(report: ReplayReport) -> None:
    """Print what a replay did: counts, then each entry skipped and why."""
    click.echo(
        f"replayed {len(report.replayed)}"
        + (f", {len(report.again)} again (a replay was under way)" if report.again else "")
        + (f", {len(report.skipped)} not replayable" if report.skipped else "")
        + (f", {len(report.missing)} resolved meanwhile" if report.missing else "")
    )
    for entry_id, why in report.skipped.items():
        click.echo(f"  skipped {entry_id}: {printable(why)}")
