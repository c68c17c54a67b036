"""An API that answers one item twice, with opposite verdicts, on the real processes.

The sandbox's documented fault switch ``conflict_rate`` gives each item a second result
under its own ContentId, the opposite verdict first (issue 12's answer: before, the first
result won and a known hit was tagged clean). The Procfile's intake, worker and beat run
with every setting at its default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import discard, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

#: EDGEMATCH_MAX_ATTEMPTS's default (docs/configuration.md).
DEFAULT_MAX_ATTEMPTS = 8


@pytest.fixture(scope="module")
def pipe() -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(rate=10.0).start()
    pipeline.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    yield pipeline
    discard(pipeline)


def _recorded(pipe: LocalPipeline, key: str) -> list[str]:
    """Every verdict the results consumer recorded for ``key``, from the worker's log."""
    verdicts = []
    for line in pipe.log_lines("worker"):
        if line.startswith("{") and '"result_recorded"' in line:
            doc = json.loads(line)
            if doc.get("event") == "result_recorded" and doc.get("key") == key:
                verdicts.append(doc["verdict"])
    return verdicts


def _dead_letters(pipe: LocalPipeline, reason: str) -> list[dict[str, Any]]:
    """``edgematch dlq list --reason R --json``, as on-call runs it."""
    listed = subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", "dlq", "list", "--reason", reason, "--json"],
        env=pipe.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    letters: list[dict[str, Any]] = json.loads(listed.stdout)
    return letters


def _status_tag(pipe: LocalPipeline, key: str) -> str:
    # A result is recorded before its content is tagged: read once the tasks are done.
    wait_settled(pipe)
    content_key = key.removesuffix(".bin")
    tags = pipe.s3().get_object_tagging(Bucket=pipe.bucket, Key=content_key)["TagSet"]
    return str({t["Key"]: t["Value"] for t in tags}["edgematch-status"])


def _conflicts(pipe: LocalPipeline) -> int:
    return int(pipe.sandbox_stats()["conflicts_total"])


def test_a_match_signal_outlives_a_later_clean_answer(pipe: LocalPipeline) -> None:
    """An upload whose first answer holds a (made-up) match under its id beside its clean is
    retried; when the API then answers clean, it ends unscannable with a match_signalled
    dead letter — never clean."""
    key = "conflict/signalled-then-clean.jpg.bin"
    before = _conflicts(pipe)
    pipe.sandbox_faults(conflict_rate=1.0)
    try:
        pipe.upload(key, os.urandom(HASH), content=b"an image")
        _wait(lambda: _conflicts(pipe) > before, 60, "the conflicting answer")
    finally:
        pipe.sandbox_faults(conflict_rate=0.0)

    doc = pipe.wait_for_results([key], timeout_s=60)[key]

    assert doc["verdict"] == "unscannable" and not doc["is_match"] and doc["match_ids"] == []
    assert doc["reason"].startswith("match_signalled: a match was signalled (attempt 1")
    assert "answered clean" in doc["reason"]
    (letter,) = [e for e in _dead_letters(pipe, "match_signalled") if e["key"] == key]
    assert "two different results for one ContentId" in letter["message"]
    assert _status_tag(pipe, key) == "unscannable"
    assert _recorded(pipe, key) == ["unscannable"]


def test_a_known_hit_answered_with_a_conflicting_duplicate_never_ends_clean(
    pipe: LocalPipeline,
) -> None:
    """A known hit the API keeps answering clean-then-match under one ContentId: every
    attempt is retried with the default backoff, and after the default eight it ends
    unscannable with a match_signalled dead letter; never clean, never a match whose
    details could be another answer's."""
    key = "conflict/known-hit.jpg.bin"
    data = os.urandom(HASH)
    pipe.add_known([data])
    before = _conflicts(pipe)
    pipe.sandbox_faults(conflict_rate=1.0)
    try:
        pipe.upload(key, data, content=b"an image")
        # Eight attempts with the default backoff (1 s doubling, half jittered): 64-127 s.
        doc = pipe.wait_for_results([key], timeout_s=300)[key]
    finally:
        pipe.sandbox_faults(conflict_rate=0.0)

    assert _conflicts(pipe) - before == DEFAULT_MAX_ATTEMPTS
    assert doc["verdict"] == "unscannable" and doc["attempts"] == DEFAULT_MAX_ATTEMPTS
    assert doc["match_ids"] == [] and not doc["is_match"]
    assert doc["reason"].startswith("match_signalled: ")
    (letter,) = [e for e in _dead_letters(pipe, "match_signalled") if e["key"] == key]
    assert letter["attempts"] == DEFAULT_MAX_ATTEMPTS
    assert "never confirmed; retries_exhausted" in letter["message"]
    assert _status_tag(pipe, key) == "unscannable"
    assert _recorded(pipe, key) == ["unscannable"]
    assert pipe.reports() == []  # nothing in this module matched
