"""Chaos: one 429 asking for an hour does not stop the pool for an hour.

The Procfile's real processes on the default settings; the sandbox answers the pool's
first request 429 with ``Retry-After: 3600`` (``throttle_next``). The pool waits
EDGEMATCH_MAX_COOLDOWN_S (60 s), sends one probe, and scans everything, about a minute
after the 429 rather than an hour; ``edgematch status`` names the capped cooldown meanwhile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

ASKED_S = 3600
RecordLedger = Callable[..., dict[str, Any]]


def _status(pipe: LocalPipeline) -> dict[str, Any]:
    """``edgematch status --json`` as on-call runs it, with the pipeline's environment."""
    command = [str(Path(sys.executable).parent / "edgematch"), "status", "--json"]
    done = subprocess.run(
        command, env=pipe.env(), capture_output=True, text=True, timeout=60, check=False
    )
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def test_an_hour_long_retry_after_costs_the_ceiling_and_one_probe(
    make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """One 429 with Retry-After: 3600 on the defaults: every upload is scanned within the
    ceiling (60 s) and a little after the 429, with one 429 in all and each hash sent once;
    meanwhile ``edgematch status`` says what the server asked and that the wait is capped."""
    pipe = make_pipeline(rate=10.0)
    pipe.sandbox_faults(throttle_next=1, throttle_retry_after_s=ASKED_S)
    pipe.start_processes("intake", "worker", "beat")
    hashes = {f"long-429/img-{i:03d}.jpg.bin": os.urandom(HASH) for i in range(20)}
    for key, data in hashes.items():
        pipe.upload(key, data)
    _wait(lambda: pipe.sandbox_stats()["by_http_status"].get("429") == 1, 60, "the 429")
    refused_at = time.time()

    status = _status(pipe)
    assert status["healthy"] is False
    assert status["cooldown_asked_s"] == ASKED_S
    assert 0 < status["cooldown_s"] <= 60
    assert any(f"asking for {ASKED_S} s" in p["what"] for p in status["problems"]), status

    found = pipe.wait_for_results(hashes, timeout_s=120)
    last = max(float(doc["recorded_at"]) for doc in found.values())
    ledger = record_ledger(
        pipe, "one 429 with Retry-After: 3600, defaults", hashes, fault_end=refused_at
    )
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, ledger
    assert ledger["dead_letters"] == {}, ledger
    ceiling_s = 60.0  # EDGEMATCH_MAX_COOLDOWN_S's default
    assert last - refused_at <= ceiling_s + 20, f"scanned {last - refused_at:.1f} s after the 429"
    stats = pipe.sandbox_stats()
    assert stats["by_http_status"].get("429") == 1
    assert stats["items_total"] == len(hashes)  # each hash answered once
    assert _status(pipe)["cooldown_asked_s"] == 0.0  # the probe was accepted
