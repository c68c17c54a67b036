"""The verdict log through the Procfile's real processes, on the default settings.

Uploads are scanned by intake, worker and beat against a private redis-server, moto's server
and the sandbox; then every result of the run must be in the log in the object store, and
counted once by ``edgematch verdicts``; Redis must hold per scanned hash only keys that end
with the idempotency window (so the steady state at R = 10 stays under 1 GB); and
``edgematch result`` must find a result after its hot entry has gone.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.localstack import PER_HASH_KEYS, PER_MATCH_KEYS, LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.config.settings import Settings
from edgematch.infra.keys import Keys
from edgematch.infra.redisclient import redis_client
from tests.support.pipelines import discard

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

HASH = 924
UPLOADS = 120
MakePipeline = Callable[..., LocalPipeline]
#: The defaults the processes run with (the tests set none of these).
DEFAULTS = Settings()
WINDOW_S = {
    "EDGEMATCH_IDEMPOTENCY_TTL_S": DEFAULTS.idempotency_ttl_s,
    "EDGEMATCH_RESULT_TTL_S": DEFAULTS.result_ttl_s,
    "EDGEMATCH_MATCH_CACHE_TTL_S": DEFAULTS.match_cache_ttl_s,
}
GB = 1_000_000_000


@pytest.fixture
def pipe() -> Iterator[LocalPipeline]:
    pipeline = LocalPipeline(rate=10.0).start()
    yield pipeline
    discard(pipeline)


def _cli(pipe: LocalPipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgematch.ops.cli", *args],
        env=pipe.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _dictionary_bytes_per_key(pipe: LocalPipeline, probes: int = 5000) -> float:
    """What a key with a TTL costs Redis beyond its MEMORY USAGE (its entries in the main
    and expiry dictionaries), measured on keys written to another database of the same
    private server for the purpose, and gone after."""
    client = redis_client(pipe.redis.url.rsplit("/", 1)[0] + "/15")
    try:
        before = int(client.info("memory")["used_memory"])
        pipeline = client.pipeline(transaction=False)
        for n in range(probes):
            pipeline.set(f"probe:{n:06d}", "1", ex=600)
        pipeline.execute()
        grown = int(client.info("memory")["used_memory"]) - before
        usage = sum(int(client.memory_usage(f"probe:{n:06d}") or 0) for n in range(probes))
        return max(0.0, (grown - usage) / probes)
    finally:
        client.flushdb()
        client.close()


def _logged_items(pipe: LocalPipeline) -> Counter[str]:
    return Counter(str(doc["item_id"]) for doc in pipe.verdict_log())


def test_a_run_on_the_defaults_is_all_in_the_log_and_redis_keeps_a_window(
    pipe: LocalPipeline,
) -> None:
    """Every result of the run is in the log once, `edgematch verdicts` counts the run, the
    log took a PUT per flush interval, and every key Redis keeps per scanned hash ends
    within its window: the steady state this implies at R = 10 — the keys' bytes and their
    dictionary entries, held for their windows — is under 1 GB."""
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    started = time.time()
    hashes = {f"run/p{i:03d}.jpg.bin": os.urandom(HASH) for i in range(UPLOADS)}
    known = {key for i, key in enumerate(hashes) if i % 10 == 0}
    pipe.add_known(hashes[k] for k in known)
    s3 = pipe.s3()
    for key, data in hashes.items():
        s3.put_object(Bucket=pipe.bucket, Key=key.removesuffix(".bin"), Body=b"image " + data[:8])
        s3.put_object(Bucket=pipe.bucket, Key=key, Body=data)

    results = pipe.wait_for_results(hashes, timeout_s=180)
    assert set(results) == set(hashes)
    last_recorded = max(float(doc["recorded_at"]) for doc in results.values())
    items = {doc["item_id"] for doc in results.values()}
    # Within a flush interval (and a flusher's write) every recorded result is in the log.
    _wait(lambda: items <= set(_logged_items(pipe)), 60, "every result in the verdict log")
    logged = _logged_items(pipe)
    assert set(logged) == items and max(logged.values()) == 1, "each result once"
    lines = {doc["item_id"]: doc for doc in pipe.verdict_log()}
    for key, doc in results.items():
        line = lines[doc["item_id"]]
        assert (line["key"], line["verdict"], line["current"]) == (key, doc["verdict"], True)
        assert line["_object"].startswith("verdicts/date=")

    # The log's PUTs: about one per flush interval, not one per result.
    objects = {doc["_object"] for doc in pipe.verdict_log()}
    span_s = last_recorded - started
    partitions = {o.rsplit("/", 1)[0] for o in objects}
    assert len(objects) <= math.ceil(span_s / DEFAULTS.verdict_log_flush_s) + 1 + len(partitions)
    assert len(objects) < len(items) / 5

    # The operator's count of the run, by the real command.
    counted = _cli(pipe, "verdicts", "--since", f"{int(time.time() - started) + 60}s", "--json")
    assert counted.returncode == 0, counted.stderr
    tally = json.loads(counted.stdout)
    assert tally["results"] == UPLOADS and tally["repeats_skipped"] == 0
    assert tally["by_verdict"] == {"clean": UPLOADS - len(known), "match": len(known)}
    assert tally["by_bucket"] == {pipe.bucket: UPLOADS}

    # What Redis keeps: per scanned hash, only keys that end with their window.
    footprint = pipe.redis_footprint()
    per_key = _dictionary_bytes_per_key(pipe)
    steady_bytes = 0.0
    for kind, setting in PER_HASH_KEYS.items():
        entry = footprint.get(kind)
        assert entry is not None, f"no {kind} keys at all"
        assert 0 < entry.max_ttl_s <= WINDOW_S[setting], (kind, entry.max_ttl_s)
        assert entry.max_ttl_s <= DEFAULTS.idempotency_ttl_s
        # At the ceiling of R = 10, 50 hashes a second, each kind held for its window.
        held = entry.bytes + per_key * entry.count
        steady_bytes += held / UPLOADS * 50 * WINDOW_S[setting]
    assert steady_bytes < GB, f"{steady_bytes / GB:.2f} GB at R = 10"
    for kind in PER_MATCH_KEYS:
        entry = footprint.get(kind)
        assert entry is None or entry.max_ttl_s > 0, kind
    # The rest is the pipeline's own state (queues, buffer, limiter, stats, heartbeats …):
    # it does not grow with the hashes scanned.
    assert footprint["other"].count < UPLOADS / 2, footprint["other"].names


def test_result_reads_the_log_once_the_hot_entry_is_gone(pipe: LocalPipeline) -> None:
    """With a result's Redis keys deleted (what the end of the hot window does),
    `edgematch result` finds it in the log by hash or content location, beside the tag."""
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    data = os.urandom(HASH)
    pipe.add_known([data])
    pipe.upload("old/hit.jpg.bin", data, content=b"image bytes")
    [doc] = pipe.wait_for_results(["old/hit.jpg.bin"], timeout_s=60).values()
    _wait(lambda: doc["item_id"] in _logged_items(pipe), 60, "the result in the log")
    keys = Keys(pipe.keys.ns)
    client = redis_client(pipe.redis.url)
    try:
        assert client.ttl(keys.result(pipe.bucket, "old/hit.jpg.bin")) <= DEFAULTS.result_ttl_s
        client.delete(
            keys.result(pipe.bucket, "old/hit.jpg.bin"),
            keys.content_result(pipe.bucket, "old/hit.jpg"),
        )
    finally:
        client.close()

    for uri in (f"s3://{pipe.bucket}/old/hit.jpg.bin", f"s3://{pipe.bucket}/old/hit.jpg"):
        shown = _cli(pipe, "result", uri)
        assert shown.returncode == 0, shown.stderr
        found: dict[str, Any] = json.loads(shown.stdout)
        assert found["item_id"] == doc["item_id"] and found["verdict"] == "match"
        assert found["lookup"]["source"] == "verdict log"
        # Quarantined in tag mode (no quarantine bucket): the tag says so.
        assert found["lookup"]["tag"] in {"match", "quarantined"}
    missing = _cli(pipe, "result", f"s3://{pipe.bucket}/never/uploaded.jpg")
    assert missing.returncode == 1 and "no result recorded" in missing.stderr
