"""/metrics of the real processes against what the docs, the alerts and the dashboard name.

``tests/deploy/test_metric_names.py`` checks the names against the code; this scrapes the
Procfile's intake, webhook and worker (prefork pool, ``--metrics-port``) after the pipeline has done
every kind of work, and checks that each name is exported and that the values follow what
happened: dead letters by reason after forced dead letters, ``redis_up`` 1 with Redis up,
0 with it stopped (the scrape still answering), 1 again once it is back.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.devstack import ROOT, wait_for_port
from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import discard
from tests.support.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: Everything that tells operators a metric's name.
DOCUMENTS = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "deploy" / "README.md",
    ROOT / "deploy" / "grafana" / "edgematch.json",
    *sorted((ROOT / "deploy" / "k8s").glob("*.yaml")),
    *sorted((ROOT / "deploy" / "runbooks").glob("*.md")),
)
_NAME = re.compile(r"\bedgematch_[a-z0-9_]+\b")
#: EDGEMATCH_MAX_HASH_BYTES's default (docs/configuration.md): one byte more is refused.
MAX_HASH_BYTES = 4096

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _documented() -> set[str]:
    names = {m for doc in DOCUMENTS for m in _NAME.findall(doc.read_text(encoding="utf-8"))}
    assert {"edgematch_dead_letters", "edgematch_buffer_items"} <= names  # the parse works
    return names


class Scrape:
    """One /metrics answer: the names it exports and its samples."""

    def __init__(self, text: str) -> None:
        self.names: set[str] = set()
        self.samples: Samples = {}
        for family in text_string_to_metric_families(text):
            self.names.add(family.name)  # counters without _total, histograms' base name
            for sample in family.samples:
                self.names.add(sample.name)
                self.samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples carrying ``labels`` (0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.samples)


def _scrape(port: int, timeout_s: float = 15.0) -> tuple[Scrape, float]:
    started = time.monotonic()
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s)
    reply.raise_for_status()
    return Scrape(reply.text), time.monotonic() - started


@pytest.fixture
def pipe(tmp_path: Path) -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(rate=10.0, settings={"EDGEMATCH_HEARTBEAT_DIR": str(tmp_path)})
    pipeline.start()
    yield pipeline
    discard(pipeline)


def test_every_documented_metric_is_served_and_follows_the_pipeline(
    pipe: LocalPipeline,
) -> None:
    """After a clean scan, a match (quarantined, reported), a retry and two forced dead
    letters, intake's and the worker pool's /metrics together export every metric name the
    README, deploy/ and the dashboard use, with the pipeline's figures; with Redis stopped
    both still answer, saying redis_up 0, and say 1 again once it is back."""
    assert pipe.processes is not None
    intake_port, worker_port = free_port(), free_port()
    pipe.processes.start("intake", extra_args=["--metrics-port", str(intake_port)])
    # The other door, beside intake: its /metrics is on its own port, beside the
    # notifications it receives.
    pipe.processes.start("webhook")
    wait_for_port(pipe.webhook_port)
    pipe.start_processes(
        "worker", "beat", worker_args=["--concurrency", "2", "--metrics-port", str(worker_port)]
    )
    hit, clean, retried = os.urandom(HASH), os.urandom(HASH), os.urandom(HASH)
    pipe.add_known([hit])
    uploads = {
        "metrics/hit.jpg.bin": hit,
        "metrics/clean.jpg.bin": clean,
        # Refused before download: a bad_input dead letter from ingest.
        "metrics/oversized.jpg.bin": os.urandom(MAX_HASH_BYTES + 1),
        # Not an edge hash: the API refuses it (3002), an item_rejected dead letter.
        "metrics/garbage.jpg.bin": b"not an edge hash",
    }
    for key, data in uploads.items():
        pipe.upload(key, data, content=b"an image")
    assert len(pipe.wait_for_results(uploads, timeout_s=90)) == len(uploads)
    # One more upload answered 3004 until the worker has retried it once.
    pipe.sandbox_faults(item_3004_rate=1.0)
    try:
        pipe.upload("metrics/retried.jpg.bin", retried, content=b"an image")
        _wait(lambda: _scrape(worker_port)[0].value("edgematch_retries_total") >= 1, 60, "a retry")
    finally:
        pipe.sandbox_faults(item_3004_rate=0.0)
    assert pipe.wait_for_results(["metrics/retried.jpg.bin"], timeout_s=60)
    _wait(lambda: len(pipe.reports()) == 1, 60, "the report of the match")
    _wait(
        lambda: _scrape(worker_port)[0].value("edgematch_hashes_scanned_total") >= 5,
        30,
        "five results counted",
    )

    # A sender with the wrong token: refused, and counted by its answer's code.
    refused = httpx.post(
        pipe.webhook_url, content=b"{}", headers={"Authorization": "Bearer not-the-token-0000"}
    )
    assert refused.status_code == 401
    intake, _ = _scrape(intake_port)
    worker, _ = _scrape(worker_port)
    webhook, _ = _scrape(pipe.webhook_port)
    assert webhook.value("edgematch_webhook_requests_total", code="401") == 1

    missing = _documented() - (intake.names | worker.names | webhook.names)
    assert not missing, f"documented but not exported: {sorted(missing)}"
    for scrape in (intake, worker):
        assert scrape.value("edgematch_redis_up") == 1
        assert scrape.value("edgematch_dead_letters", reason="bad_input") == 1
        assert scrape.value("edgematch_dead_letters", reason="item_rejected") == 1
        assert scrape.value("edgematch_metrics_collect_errors_total") == 0
    assert worker.value("edgematch_dead_lettered_total", reason="bad_input") == 1
    assert worker.value("edgematch_dead_lettered_total", reason="item_rejected") == 1
    assert worker.value("edgematch_hashes_scanned_total", verdict="match") == 1
    assert worker.value("edgematch_hashes_scanned_total", verdict="clean") == 2
    assert worker.value("edgematch_hashes_scanned_total", verdict="unscannable") == 2
    assert worker.value("edgematch_matches_total") == 1
    assert worker.value("edgematch_quarantine_total", outcome="tagged") == 1
    assert worker.value("edgematch_reports_total", outcome="pending") == 1
    assert worker.value("edgematch_ingest_total", outcome="refused") == 1
    assert intake.value("edgematch_objects_enqueued_total", lane="live") == len(uploads) + 1
    assert intake.value("edgematch_events_skipped_total", reason="test_event") >= 1

    # Redis stopped: both still answer, promptly, with redis_up 0 and no levels.
    pipe.redis.stop()
    try:
        for port in (intake_port, worker_port):
            down, took_s = _scrape(port)
            assert down.value("edgematch_redis_up") == 0 and down.has("edgematch_redis_up")
            assert not down.has("edgematch_dead_letters") and not down.has("edgematch_queue_depth")
            assert took_s < 10, took_s  # within Prometheus' default scrape timeout
        assert down.value("edgematch_matches_total") == 1  # the process's own counters stay
        assert down.value("edgematch_metrics_collect_errors_total") == 0
    finally:
        pipe.redis.start()
    _wait(lambda: _scrape(worker_port)[0].value("edgematch_redis_up") == 1, 30, "redis_up 1")
