"""``edgematch backfill``: scan hash files already in a bucket, resumably.

Exit status: 0 the listing was done, 1 a failure (the checkpoint keeps the progress: run
it again), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence

import click

from edgematch.errors import ConfigurationError, EdgematchError, ObjectMissing
from edgematch.ops.backfill import (
    Backfill,
    Checkpoint,
    Checkpoints,
    count_wanted,
    event_for,
    resume_problem,
)
from edgematch.ops.commands.params import MOMENT, S3_URI
from edgematch.ops.listing import MAX_PAGE, Listed, list_pages
from edgematch.ops.progress import Progress
from edgematch.ops.support import CONTEXT, Refused
from edgematch.ops.timespec import format_moment
from edgematch.ops.tool import tool_runtime
from edgematch.pipeline.backpressure import Backlog, Gate, backlog
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.ingest import event_to_args
from edgematch.recovery.replay import identities
from edgematch.runtime import Runtime


@click.command(context_settings=CONTEXT)
@click.argument("uri", type=S3_URI, metavar="s3://BUCKET/PREFIX")
@click.option(
    "--since",
    type=MOMENT,
    metavar="DATE",
    help="Only objects last modified at or after DATE (2024-05-01, 2024-05-01T12:30Z, 6h).",
)
@click.option("--rescan", is_flag=True, help="Scan objects again even if already scanned.")
@click.option("--restart", is_flag=True, help="Discard the checkpoint and start from the top.")
@click.option("--no-count", is_flag=True, help="Skip the counting pass (then no total or ETA).")
@click.option(
    "--page-size",
    type=click.IntRange(1, MAX_PAGE),
    metavar="N",
    default=MAX_PAGE,
    show_default=True,
    help=f"Keys per listing call, at most {MAX_PAGE}.",
)
def backfill(
    *,
    uri: tuple[str, str],
    since: float | None,
    rescan: bool,
    restart: bool,
    no_count: bool,
    page_size: int,
) -> int:
    """Scan hash files already in a bucket: uploaded before edgematch existed, or while it
    was down. s3://BUCKET/PREFIX is where to look (the prefix may be empty). The prefix is
    listed a page at a time (never held in memory); each hash file becomes an ingest task
    on the backfill lane, which live uploads overtake. A checkpoint in Redis records the
    last key enqueued: run the same command again after a crash or Ctrl-C and it resumes
    there. Enqueueing pauses while the backlog is at the high-water mark. Objects already
    scanned are skipped without an API call unless --rescan.

    \b
    Needs s3:ListBucket on the bucket: statement TellGoneFromDenied
    of deploy/iam-policy.json.

    \b
      edgematch backfill s3://uploads/photos/
      edgematch backfill s3://uploads/photos/ --since 2024-05-01T00:00Z
      edgematch backfill s3://uploads/photos/ --since 6h --rescan
    """
    rt = tool_runtime()
    bucket, prefix = uri
    if rt.settings.allowed_buckets and bucket not in rt.settings.allowed_buckets:
        raise Refused(f"bucket {bucket!r} is not in EDGEMATCH_ALLOWED_BUCKETS")
    checkpoints = Checkpoints(rt.redis, rt.settings.namespace)
    cp = _checkpoint(checkpoints, bucket, prefix, since=since, rescan=rescan, restart=restart)
    if cp.finished_at:
        click.echo(
            f"backfill of s3://{bucket}/{prefix} finished at {format_moment(cp.finished_at)}"
            f" ({cp.enqueued} enqueued); pass --restart to run it again"
        )
        return 0
    try:
        return _run(rt, cp, checkpoints, count=not no_count, page_size=page_size)
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        click.echo(
            f"\nedgematch backfill: stopped: {exc}\nthe checkpoint keeps the progress "
            f"({cp.enqueued} enqueued, after {cp.after!r}): run the same command to resume",
            err=True,
        )
        return 1


def _checkpoint(
    checkpoints: Checkpoints,
    bucket: str,
    prefix: str,
    *,
    since: float | None,
    rescan: bool,
    restart: bool,
) -> Checkpoint:
    """The checkpoint to go on from, or a new one. Raises Refused when the options differ
    from the ones the checkpoint was started with."""
    cp = None if restart else checkpoints.load(bucket, prefix)
    if cp is None:
        return Checkpoint(bucket=bucket, prefix=prefix, since=since, rescan=rescan)
    problem = resume_problem(cp, since=since, rescan=rescan)
    if problem:
        raise Refused(problem)
    if not cp.finished_at:
        click.echo(f"resuming after {cp.after!r}: {cp.enqueued} enqueued so far", err=True)
    return cp


def _run(
    rt: Runtime, cp: Checkpoint, checkpoints: Checkpoints, *, count: bool, page_size: int
) -> int:
    s = rt.settings
    s3 = rt.s3

    def pages(after: str | None) -> Iterator[Sequence[Listed]]:
        return list_pages(s3, cp.bucket, cp.prefix, start_after=after, page_size=page_size)

    if cp.total is None and count:
        click.echo(f"counting hash files under s3://{cp.bucket}/{cp.prefix} …", err=True)
        cp.total = cp.enqueued + count_wanted(pages(cp.after), suffix=s.hash_suffix, since=cp.since)
    checkpoints.save(cp)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    progress = Progress("backfill", cp.total, done=cp.enqueued)

    def paused(current: Backlog, mark: int) -> None:
        progress.set_note(f"paused: backlog {current.total} at mark {mark}")

    gate = Gate(
        lambda: backlog(rt), lane="backfill", high_water=s.intake_high_water, stop=stop,
        on_pause=paused,
    )  # fmt: skip
    run = Backfill(
        cp,
        checkpoints=checkpoints,
        pages=pages,
        enqueue=_enqueuer(),
        suffix=s.hash_suffix,
        gate=gate,
        rescan=_rescanner(rt, cp.bucket) if cp.rescan else None,
        progress=progress,
        stop=stop,
    )
    try:
        run.run()
    finally:
        progress.finish()
    state = "done" if cp.finished_at else "interrupted: run the same command to resume"
    click.echo(
        f"backfill of s3://{cp.bucket}/{cp.prefix}: {cp.enqueued} enqueued, {cp.skipped} "
        f"skipped, {cp.listed} listed; {state}"
    )
    return 0 if cp.finished_at else 130


def _enqueuer() -> Callable[[ObjectCreated, str], None]:
    # Imported here: importing edgematch.tasks configures Celery, which a backfill needs
    # only once its arguments and checkpoint are checked.
    from edgematch.tasks.enqueue import enqueue_events  # noqa: PLC0415

    def enqueue(obj: ObjectCreated, correlation_id: str) -> None:
        # Raises TransientError when the broker cannot take it.
        enqueue_events([(event_to_args(obj), correlation_id)], "backfill")

    return enqueue


def _rescanner(rt: Runtime, bucket: str) -> Callable[[Listed], ObjectCreated | None]:
    def rescan(obj: Listed) -> ObjectCreated | None:
        # Pin the version as it is now and forget every spelling ingest remembered it by.
        try:
            info = rt.store.head(bucket, obj.key)
        except ObjectMissing:
            return None
        for identity in identities(bucket, obj.key, info.version_id, info.etag or obj.etag):
            rt.buffer.forget(identity)
        for identity in identities(bucket, obj.key, None, obj.etag):
            rt.buffer.forget(identity)
        return event_for(bucket, obj, version_id=info.version_id)

    return rescan
