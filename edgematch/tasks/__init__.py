"""The Celery app and task definitions: thin, each calls into the packages under ``edgematch``.

``celery -A edgematch.tasks worker`` works as well as ``edgematch worker``: the app is
configured from the environment at import, and refuses to start on a bad setting.
"""

from edgematch.tasks.app import app, run_celery
from edgematch.tasks.downstream import quarantine, report, submit_report
from edgematch.tasks.steps import (
    flush_verdicts,
    ingest,
    ingest_many,
    match,
    pump,
    record_result,
    record_results,
    sweep,
)

__all__ = [
    "app",
    "flush_verdicts",
    "ingest",
    "ingest_many",
    "match",
    "pump",
    "quarantine",
    "record_result",
    "record_results",
    "report",
    "run_celery",
    "submit_report",
    "sweep",
]
