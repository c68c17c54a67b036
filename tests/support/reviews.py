"""A reviewer's decision on a held report, as a reviewer makes it: `edgematch review`.

With the `record` reporter (the tests' default) reports are held for review only with
``EDGEMATCH_REVIEW=required``, which docs/quarantine-and-reports.md tells operators to set
to hold `record` reports too: the tests that need a decision set it (``HOLD``).
"""

from __future__ import annotations

from typing import Any

from devtools.localstack import LocalPipeline
from tests.support.pipelines import cli

#: The setting under which a `record` report waits for a reviewer (documented).
HOLD = {"EDGEMATCH_REVIEW": "required"}


def decide(
    pipe: LocalPipeline,
    report_id: str,
    decision: str,
    *,
    reviewer: str = "reviewer-e2e",
    note: str = "seen by a person",
) -> dict[str, Any]:
    """``edgematch review reject`` (``decision`` ``rejected``) or ``confirm``
    (``confirmed``) of report ``report_id`` by ``reviewer``; the report as it is then."""
    if decision == "rejected":
        done = cli(pipe, "review", "reject", report_id, "--reviewer", reviewer, "--reason", note)
    elif decision == "confirmed":
        done = cli(pipe, "review", "confirm", report_id, "--reviewer", reviewer, "--note", note)
    else:
        raise ValueError(f"a review decides rejected or confirmed, not {decision!r}")
    assert done.returncode == 0, done.stderr
    (doc,) = [d for d in pipe.reports() if d["report_id"] == report_id]
    return doc
