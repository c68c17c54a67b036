"""Names that cross modules and processes: Celery task names, queue steps, dead-letter kinds
and id prefixes, kombu's bookkeeping keys.

Each is part of a protocol, not a label: a task name travels in every message waiting in a
queue, a step names a Redis list that KEDA and ``edgematch status`` read, a dead letter's
kind and id prefix are stored with every entry on-call may replay. Renaming one strands
what is already in Redis, so a rename keeps accepting the old name for as long as old
messages can exist (see ``LEGACY_TASK_PUMP``) and is written in CHANGELOG.md.

Pure constants and functions; imports nothing from edgematch.
"""

from __future__ import annotations

from typing import Final

# -- Celery task names ----------------------------------------------------------------------
TASK_INGEST: Final = "edgematch.ingest"
TASK_INGEST_MANY: Final = "edgematch.ingest_many"
#: Drain the batch buffer into the API for a while (the match step).
TASK_MATCH: Final = "edgematch.match"
#: The match task's former name: still consumed, so messages published by a worker of
#: the previous release during a rolling deploy are run, not dropped as unregistered.
LEGACY_TASK_PUMP: Final = "edgematch.pump"
TASK_SWEEP: Final = "edgematch.sweep"
TASK_RECORD_RESULT: Final = "edgematch.record_result"
TASK_RECORD_RESULTS: Final = "edgematch.record_results"
TASK_QUARANTINE: Final = "edgematch.quarantine"
TASK_REPORT: Final = "edgematch.report"
#: Submit a report a reviewer confirmed (``edgematch review confirm``).
TASK_SUBMIT_REPORT: Final = "edgematch.submit_report"
#: Write the results recorded meanwhile to the verdict log (the beat's, and overdue ones).
TASK_FLUSH_VERDICTS: Final = "edgematch.flush_verdicts"

# -- Queue steps: each is one Celery queue (a Redis list) ``<namespace>.<step>`` ---------------
STEP_INGEST: Final = "ingest"
#: Ingest and results of replays and backfills, so live uploads never wait behind them.
STEP_BACKGROUND: Final = "background"
STEP_MATCH: Final = "match"
STEP_RESULTS: Final = "results"
STEP_QUARANTINE: Final = "quarantine"
STEP_REPORTS: Final = "reports"
QUEUE_STEPS: Final = (
    STEP_INGEST,
    STEP_BACKGROUND,
    STEP_MATCH,
    STEP_RESULTS,
    STEP_QUARANTINE,
    STEP_REPORTS,
)

#: The step whose queue each task is routed to (live lane; ingest and results of other
#: lanes go to ``STEP_BACKGROUND``).
TASK_STEPS: Final = {
    TASK_INGEST: STEP_INGEST,
    TASK_INGEST_MANY: STEP_INGEST,
    TASK_MATCH: STEP_MATCH,
    LEGACY_TASK_PUMP: STEP_MATCH,
    TASK_SWEEP: STEP_MATCH,
    TASK_RECORD_RESULT: STEP_RESULTS,
    TASK_RECORD_RESULTS: STEP_RESULTS,
    TASK_FLUSH_VERDICTS: STEP_RESULTS,
    TASK_QUARANTINE: STEP_QUARANTINE,
    TASK_REPORT: STEP_REPORTS,
    TASK_SUBMIT_REPORT: STEP_REPORTS,
}


def queue_name(namespace: str, step: str) -> str:
    """The Celery queue (and Redis list) of one step: ``<namespace>.ingest`` … Pure.

    Raises ValueError for a step that has no queue.
    """
    if step not in QUEUE_STEPS:
        raise ValueError(f"unknown step {step!r}")
    return f"{namespace}.{step}"


# -- Dead letters ---------------------------------------------------------------------------
#: Kind (the ``task`` field) of a malformed SQS message set aside by intake; not a task.
DEAD_LETTER_INTAKE: Final = "edgematch.intake"
#: Kind of an item the match step gave up on (also the match task's name: one name).
DEAD_LETTER_MATCH: Final = TASK_MATCH
#: The queue named by intake's dead letters: the message came from SQS, not from Celery.
INTAKE_QUEUE: Final = "sqs"
#: Kind of a body POSTed to ``edgematch webhook`` that is not a notification; not a task.
DEAD_LETTER_WEBHOOK: Final = "edgematch.webhook"
#: The queue named by the webhook's dead letters: the body came over HTTP.
WEBHOOK_QUEUE: Final = "webhook"

#: Dead-letter id prefixes (``dedupe_id``): one entry per SQS message, webhook body, item, or
#: object version.
DEAD_LETTER_SQS_PREFIX: Final = "sqs:"
#: One entry per distinct webhook body (its SHA-256): a sender sending it again adds none.
DEAD_LETTER_WEBHOOK_PREFIX: Final = "webhook:"
DEAD_LETTER_ITEM_PREFIX: Final = "item:"
DEAD_LETTER_INGEST_PREFIX: Final = "ingest:"
#: Ids of failures recorded after the object version was accepted for scanning: replaying
#: one must forget the version's idempotency record first.
ACCEPTED_PREFIXES: Final = (DEAD_LETTER_ITEM_PREFIX, DEAD_LETTER_INGEST_PREFIX)


# -- kombu's bookkeeping keys, named in the broker options and read by recovery ---------------
def unacked_key(namespace: str) -> str:
    """kombu's hash of deliveries not acknowledged yet (set in the broker's options)."""
    return f"{namespace}:kombu:unacked"


def unacked_index_key(namespace: str) -> str:
    """kombu's sorted set of those deliveries by delivery time (seconds)."""
    return f"{namespace}:kombu:unacked_index"


def unacked_mutex_key(namespace: str) -> str:
    """kombu's lock around its own restore of deliveries older than the visibility timeout."""
    return f"{namespace}:kombu:unacked_mutex"
