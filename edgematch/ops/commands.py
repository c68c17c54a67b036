"""``edgematch status`` and ``edgematch backfill``: the pipeline at a glance, and old objects.

Exit status of ``status``: 0 healthy, 1 something needs attention (each problem is named,
with its runbook) or Redis cannot be read. Of ``backfill``: 0 the listing was done, 1 a
failure (the checkpoint keeps the progress: run it again), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edgematch.errors import (
    ConfigurationError,
    EdgematchError,
    ObjectMissing,
    TransientError,
)
from edgematch.ops.support import moment, positive_int, tool_runtime
from edgematch.ops.timespec import format_moment
from edgematch.pipeline.events import ObjectCreated, parse_s3_uri

if TYPE_CHECKING:
    from edgematch.ops.backfill import Checkpoint, Checkpoints
    from edgematch.ops.listing import Listed
    from edgematch.pipeline.backpressure import Backlog
    from edgematch.runtime import Runtime

MAX_PAGE = 1000  # ListObjectsV2 returns at most 1000 keys a call (listing.MAX_PAGE)


STATUS_DESCRIPTION = """\
One screen: queue depths per step, hashes waiting in the batch buffer (per lane), batches
in flight, requests used against the rate limit, cooldown and circuit breaker, dead
letters by reason, live processes (worker, intake, beat) with the age of their last
heartbeat, and backfills. Exits 0 when healthy, 1 when something needs attention: each
problem is named with the runbook to follow (deploy/runbooks/).
"""

BACKFILL_DESCRIPTION = """\
Scan hash files already in a bucket: uploaded before edgematch existed, or while it was
down. The prefix is listed a page at a time (never held in memory); each hash file
becomes an ingest task on the backfill lane, which live uploads overtake. A checkpoint
in Redis records the last key enqueued: run the same command again after a crash or
Ctrl-C and it resumes there. Enqueueing pauses while the backlog is at the high-water
mark. Objects already scanned are skipped without an API call unless --rescan.

Needs s3:ListBucket on the bucket (statement TellGoneFromDenied, deploy/iam-policy.json).

  edgematch backfill s3://uploads/photos/
  edgematch backfill s3://uploads/photos/ --since 2024-05-01T00:00Z
  edgematch backfill s3://uploads/photos/ --since 6h --rescan
"""


def add_commands(sub: Any) -> None:
    """Add ``status`` and ``backfill`` to the ``edgematch`` parser's subcommands."""
    p = sub.add_parser(
        "status",
        help="is the pipeline healthy, and where is it stuck (exit 1 if not)",
        description=STATUS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the whole snapshot as JSON")
    p.set_defaults(run=_status)

    p = sub.add_parser(
        "backfill",
        help="scan hash files already in a bucket, resumably",
        description=BACKFILL_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("uri", metavar="s3://BUCKET/PREFIX", help="where to look (prefix may be empty)")
    p.add_argument(
        "--since",
        type=moment,
        metavar="DATE",
        help="only objects last modified at or after DATE (2024-05-01, 2024-05-01T12:30Z, 6h)",
    )
    p.add_argument(
        "--rescan",
        action="store_true",
        help="scan objects again even if already scanned",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the checkpoint and start from the top",
    )
    p.add_argument(
        "--no-count",
        action="store_true",
        help="skip the counting pass (then no total or ETA)",
    )
    p.add_argument(
        "--page-size",
        type=positive_int,
        default=MAX_PAGE,
        help="keys per listing call, at most 1000 (default: %(default)s)",
    )
    p.set_defaults(run=_backfill)


# --- status ----------------------------------------------------------------------------


def _status(args: argparse.Namespace, rest: list[str]) -> int:
    from edgematch.ops.status import Problem, assess, collect, render

    rt = tool_runtime()
    try:
        snap = collect(rt)
    except TransientError as exc:
        problem = Problem(f"cannot read Redis at EDGEMATCH_REDIS_URL: {exc}", "redis-lost.md")
        if args.json:
            print(json.dumps({"healthy": False, "problems": [asdict(problem)]}, indent=2))
        else:
            print("edgematch status: NEEDS ATTENTION")
            print(f"  ! {problem.what}  [deploy/runbooks/{problem.runbook}]")
        return 1
    problems = assess(snap)
    if args.json:
        doc = {
            "healthy": not problems,
            "problems": [asdict(p) for p in problems],
            **snap.to_dict(),
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print(render(snap, problems))
    return 1 if problems else 0


# --- backfill --------------------------------------------------------------------------


def _usage(message: str) -> int:
    print(f"edgematch backfill: error: {message}", file=sys.stderr)
    return 2


def _target(args: argparse.Namespace, allowed_buckets: tuple[str, ...]) -> tuple[str, str]:
    """(bucket, prefix) to backfill. Raises ValueError with a usage message."""
    bucket, prefix = parse_s3_uri(args.uri)
    if args.page_size > MAX_PAGE:
        raise ValueError(f"--page-size is at most {MAX_PAGE} (S3 lists no more a call)")
    if allowed_buckets and bucket not in allowed_buckets:
        raise ValueError(f"bucket {bucket!r} is not in EDGEMATCH_ALLOWED_BUCKETS")
    return bucket, prefix


def _backfill(args: argparse.Namespace, rest: list[str]) -> int:
    from edgematch.ops.backfill import Checkpoint, Checkpoints, resume_problem

    rt = tool_runtime()
    s = rt.settings
    try:
        bucket, prefix = _target(args, s.allowed_buckets)
    except ValueError as exc:
        return _usage(str(exc))
    checkpoints = Checkpoints(rt.redis, s.namespace)
    cp = None if args.restart else checkpoints.load(bucket, prefix)
    if cp is not None:
        problem = resume_problem(cp, since=args.since, rescan=args.rescan)
        if problem:
            return _usage(problem)
        if cp.finished_at:
            print(
                f"backfill of s3://{bucket}/{prefix} finished at {format_moment(cp.finished_at)}"
                f" ({cp.enqueued} enqueued); pass --restart to run it again"
            )
            return 0
        print(
            f"resuming after {cp.after!r}: {cp.enqueued} enqueued so far",
            file=sys.stderr,
        )
    else:
        cp = Checkpoint(bucket=bucket, prefix=prefix, since=args.since, rescan=args.rescan)
    try:
        return _run_backfill(rt, cp, checkpoints, args)
    except ConfigurationError:
        raise
    except EdgematchError as exc:
        print(
            f"\nedgematch backfill: stopped: {exc}\nthe checkpoint keeps the progress "
            f"({cp.enqueued} enqueued, after {cp.after!r}): run the same command to resume",
            file=sys.stderr,
        )
        return 1


def _run_backfill(
    rt: Runtime, cp: Checkpoint, checkpoints: Checkpoints, args: argparse.Namespace
) -> int:
    from edgematch.infra.storage import make_s3_client
    from edgematch.ops.backfill import Backfill, count_wanted
    from edgematch.ops.listing import list_pages
    from edgematch.ops.progress import Progress
    from edgematch.pipeline.backpressure import Gate, backlog

    s = rt.settings
    s3 = make_s3_client(s)

    def pages(after: str | None) -> Any:
        return list_pages(s3, cp.bucket, cp.prefix, start_after=after, page_size=args.page_size)

    if cp.total is None and not args.no_count:
        print(f"counting hash files under s3://{cp.bucket}/{cp.prefix} …", file=sys.stderr)
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
    print(
        f"backfill of s3://{cp.bucket}/{cp.prefix}: {cp.enqueued} enqueued, {cp.skipped} "
        f"skipped, {cp.listed} listed; {state}"
    )
    return 0 if cp.finished_at else 130


def _enqueuer() -> Any:

    from edgematch.pipeline.ingest import event_to_args
    from edgematch.tasks.steps import enqueue_events

    def enqueue(obj: ObjectCreated, correlation_id: str) -> None:
        # Raises TransientError when the broker cannot take it.
        enqueue_events([(event_to_args(obj), correlation_id)], "backfill")

    return enqueue


def _rescanner(rt: Runtime, bucket: str) -> Any:
    from edgematch.ops.backfill import event_for
    from edgematch.recovery.replay import identities

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
