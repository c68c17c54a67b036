"""The match-step benchmark reads its results from the results queue's kombu messages."""

from __future__ import annotations

import base64
import json
from typing import Any

from bench.stack import results_in
from edgematch.names import TASK_FLUSH_VERDICTS, TASK_RECORD_RESULT, TASK_RECORD_RESULTS


def _message(task: str, kwargs: dict[str, Any]) -> bytes:
    """A task message as kombu's Redis transport stores it (body base64 JSON)."""
    body = base64.b64encode(json.dumps([[], kwargs, {}]).encode()).decode()
    return json.dumps({"body": body, "headers": {"task": task}}).encode()


def test_results_of_both_tasks_are_read_and_the_beats_flush_is_passed_over() -> None:
    """record_result carries one result, record_results those of one request; the beat's
    flush_verdicts, on the same queue, carries none (it once failed the run: 'result')."""
    messages = [
        _message(TASK_RECORD_RESULT, {"result": {"key": "a.bin"}, "correlation_id": "c"}),
        _message(TASK_FLUSH_VERDICTS, {}),
        _message(TASK_RECORD_RESULTS, {"results": [{"key": "b.bin"}, {"key": "c.bin"}]}),
    ]
    assert sorted(results_in(messages)) == ["a.bin", "b.bin", "c.bin"]
