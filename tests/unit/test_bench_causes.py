"""Unit tests for bench.causes: py-spy samples grouped into causes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bench.causes import OTHER, cause_of, read, table

_TAGS = "one (edgematch/tasks/base.py:1);VerdictTags.write (edgematch/pipeline/tagging.py:9)"
_LOG = _TAGS + ";BoundLogger.info (structlog/stdlib.py:3)"


def test_first_matching_cause_wins() -> None:
    """Logging inside an S3 tag call counts as logs; the tag call alone as S3 tags."""
    assert cause_of(_LOG) == "logs"
    assert cause_of(_TAGS) == "S3 tags GET/PUT + lock"
    assert cause_of("asynloop (celery/worker/loops.py:1)") == "Celery/kombu per task"
    assert cause_of("Condition.notify (threading.py:382)") == OTHER


def test_read_and_table_give_shares_and_ms_per_hash(tmp_path: Path) -> None:
    """Samples are summed by cause from a raw profile; shares and ms a hash follow."""
    profile = tmp_path / "st10x2-worker.txt"
    profile.write_text(f"{_TAGS} 3\n{_LOG} 1\n")
    counts = read(profile)
    assert counts == Counter({"S3 tags GET/PUT + lock": 3, "logs": 1})
    rows = table(counts, 8.0)
    assert rows[0] == {
        "cause": "S3 tags GET/PUT + lock",
        "samples": 3,
        "pct": 75.0,
        "ms_per_hash": 6.0,
    }
    assert rows[1]["ms_per_hash"] == 2.0
