"""The publication gate (EDGEMATCH_GATE=on) on the real processes, judged by the shipped policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "bucket-policy-gate.json"
TAG = "edgematch-status"


def _denied_values() -> set[str]:
    """The tag values deploy/bucket-policy-gate.json denies reading for."""
    statement = json.loads(POLICY.read_text())["Statement"][0]
    assert statement["Effect"] == "Deny" and "s3:GetObject" in statement["Action"]
    return set(statement["Condition"]["StringEquals"][f"s3:ExistingObjectTag/{TAG}"])


def _readable(pipe: LocalPipeline, key: str) -> bool:
    tags = pipe.s3().get_object_tagging(Bucket=pipe.bucket, Key=key)["TagSet"]
    value = {t["Key"]: t["Value"] for t in tags}.get(TAG)
    return value not in _denied_values()


def _status(pipe: LocalPipeline, key: str) -> str | None:
    tags = pipe.s3().get_object_tagging(Bucket=pipe.bucket, Key=key)["TagSet"]
    return {t["Key"]: t["Value"] for t in tags}.get(TAG)


def test_content_is_unreadable_until_scanned_clean(make_pipeline: MakePipeline) -> None:
    """Pending before the scan; readable after clean; unreadable after a match or a failure."""
    pipe = make_pipeline(rate=10.0, settings={"EDGEMATCH_GATE": "on"})
    # Slow answers leave time to see the pending state from outside.
    pipe.sandbox_faults(slow_rate=1.0, slow_s=1.5)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    clean, match = os.urandom(HASH), os.urandom(HASH)
    pipe.add_known([match])
    pipe.upload("gate/clean.jpg.bin", clean, content=b"clean image")
    pipe.upload("gate/match.jpg.bin", match, content=b"matching image")
    pipe.upload("gate/broken.jpg.bin", b"\x00" * 100, content=b"image with a bad hash")

    for key in ("gate/clean.jpg", "gate/match.jpg", "gate/broken.jpg"):

        def held(k: str = key) -> bool:
            return _status(pipe, k) == "pending"

        _wait(held, 30, f"{key} to be held")
        assert not _readable(pipe, key)

    results = pipe.wait_for_results(
        ["gate/clean.jpg.bin", "gate/match.jpg.bin", "gate/broken.jpg.bin"], timeout_s=60
    )
    assert results["gate/clean.jpg.bin"]["verdict"] == "clean"
    assert results["gate/match.jpg.bin"]["verdict"] == "match"
    assert results["gate/broken.jpg.bin"]["verdict"] == "unscannable"
    _wait(lambda: _status(pipe, "gate/clean.jpg") == "clean", 30, "the clean verdict tag")
    assert _readable(pipe, "gate/clean.jpg")
    _wait(lambda: _status(pipe, "gate/broken.jpg") == "unscannable", 30, "unscannable tag")
    assert not _readable(pipe, "gate/broken.jpg")
    _wait(lambda: _status(pipe, "gate/match.jpg") in {"match", "quarantined"}, 30, "match tag")
    assert not _readable(pipe, "gate/match.jpg")
