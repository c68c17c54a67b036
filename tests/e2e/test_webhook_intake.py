"""The webhook door end to end: MinIO- and Ceph-shaped notifications POSTed to
`edgematch webhook`, through the Procfile's real processes, to results, quarantine and
reports, exactly as SQS events get there; and what the webhook does under a burst past the
high-water mark and during a Redis (broker) outage: 503s that the sender, resending as MinIO
does, turns into every event scanned exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.pipelines import discard, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

HASH = 924
QUARANTINE = "quarantine"
MakePipeline = Callable[..., LocalPipeline]
#: Keys as platforms write them, one with a space and a '+' (MinIO encodes it, Ceph does not).
KEYS = (
    "photos/a.jpg.bin",
    "photos/b.jpg.bin",
    "photos/2026/cat photo+1.jpg.bin",
    "photos/c.jpg.bin",
    "photos/d.jpg.bin",
    "photos/2026/dog photo+2.jpg.bin",
)
HITS = ("photos/b.jpg.bin", "photos/2026/dog photo+2.jpg.bin")


@pytest.fixture
def make_pipeline() -> Iterator[MakePipeline]:
    made: list[LocalPipeline] = []

    def make(**kwargs: Any) -> LocalPipeline:
        pipe = LocalPipeline(**kwargs).start()
        made.append(pipe)
        return pipe

    yield make
    for pipe in made:
        discard(pipe)


def _summary(pipe: LocalPipeline, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What an operator sees of a set of uploads, with ids and times left out (once the
    tasks are done: a result is recorded before its content is tagged)."""
    wait_settled(pipe)
    s3 = pipe.s3()
    out: dict[str, Any] = {}
    for key, doc in sorted(results.items()):
        content = doc["content_key"]
        quarantined = pipe.exists(QUARANTINE, f"{pipe.bucket}/{content}")
        tags = {}
        if not quarantined:
            tag_set = s3.get_object_tagging(Bucket=pipe.bucket, Key=content)["TagSet"]
            tags = {t["Key"]: t["Value"] for t in tag_set}
        out[key] = {
            "fields": sorted(doc),
            "verdict": doc["verdict"],
            "attempts": doc["attempts"],
            "lane": doc["lane"],
            "in_uploads": pipe.exists(pipe.bucket, content),
            "quarantined": quarantined,
            "tags": tags,
        }
    reports = pipe.reports()
    out["reports"] = sorted(
        (r["content"]["key"], r["status"], r["evidence"]["state"]) for r in reports
    )
    return out


def _run(make: MakePipeline, door: str) -> dict[str, Any]:
    """The same uploads through one door; MinIO's shape for half, Ceph's for the other."""
    pipe = make(rate=10.0, quarantine_bucket=QUARANTINE, intake=door)
    pipe.start_processes(worker_args=["--concurrency", "2"])
    hashes = {key: os.urandom(HASH) for key in KEYS}
    pipe.add_known(hashes[k] for k in HITS)
    for n, (key, data) in enumerate(hashes.items()):
        pipe.upload(key, data, content=b"image " + key.encode(), shape=("minio", "ceph")[n % 2])
    results = pipe.wait_for_results(hashes, timeout_s=90)
    assert set(results) == set(hashes), f"{door}: missing {set(hashes) - set(results)}"
    _wait(lambda: len(pipe.reports()) == len(HITS), 60, f"{door}: the reports")
    contents = [hit.removesuffix(".bin") for hit in HITS]
    _wait(lambda: not any(pipe.exists(pipe.bucket, c) for c in contents), 60, f"{door}: moved")
    if door == "webhook":
        lines = "\n".join(pipe.log_lines("webhook"))
        assert '"source": "minio"' in lines and '"source": "ceph"' in lines
        assert pipe.webhook_token not in lines
    return _summary(pipe, results)


def test_minio_and_ceph_notifications_end_like_sqs_events(make_pipeline: MakePipeline) -> None:
    """Scanned, matched, quarantined, tagged and reported the same through either door."""
    by_webhook = _run(make_pipeline, "webhook")
    by_sqs = _run(make_pipeline, "sqs")
    assert by_webhook == by_sqs
    for hit in HITS:
        assert by_webhook[hit]["verdict"] == "match" and by_webhook[hit]["quarantined"]
        assert not by_webhook[hit]["in_uploads"]
    clean = [k for k in KEYS if k not in HITS]
    assert all(by_webhook[k]["tags"]["edgematch-status"] == "clean" for k in clean)
    assert [r[0] for r in by_webhook["reports"]] == sorted(h.removesuffix(".bin") for h in HITS)


def _scanned_once(pipe: LocalPipeline, keys: list[str]) -> None:
    results = pipe.wait_for_results(keys, timeout_s=480)
    assert len(results) == len(keys), f"{len(keys) - len(results)} never scanned"
    # Each hash reached the API exactly once, and each result is its first attempt.
    assert pipe.sandbox_stats()["items_total"] == len(keys)
    assert {doc["attempts"] for doc in results.values()} == {1}


# 1,060 uploads fetched and scanned by two worker processes: minutes on a loaded 2-core box.
@pytest.mark.timeout(720)
def test_a_burst_past_the_high_water_mark_is_refused_then_scanned_exactly_once(
    make_pipeline: MakePipeline,
) -> None:
    """With no worker yet, 1,000 one-object tasks reach the default mark (10,000 hash files):
    the rest get 503 + Retry-After; resent every 3 s as MinIO resends, once workers drain
    the backlog, every event is scanned, and exactly once, duplicates included."""
    # EDGEMATCH_RATE_LIMIT is set to the subscription's quota (docs/configuration.md): the
    # sandbox's quota here is 20 requests a second.
    pipe = make_pipeline(rate=20.0, intake="webhook")
    pipe.start_processes("webhook")
    keys = [f"burst/{n:05d}.jpg.bin" for n in range(1060)]
    bodies = [pipe.upload(key, os.urandom(HASH), notify=False) for key in keys]
    answers = [pipe.post(body) for body in bodies if body is not None]
    codes = [a.status_code for a in answers]
    # MinIO sends one event after the other: each is its own task until the mark.
    assert codes == [200] * 1000 + [503] * 60, sorted(set(codes))
    assert all(a.headers["retry-after"] == "5" for a in answers[1000:])
    assert {a.json()["reason"] for a in answers[1000:]} == {"high_water"}

    pipe.start_processes("worker", "beat", worker_args=["--concurrency", "2"])
    refused = [b for b, a in zip(bodies, answers, strict=True) if a.status_code == 503]
    seen = [pipe.deliver(body) for body in refused if body is not None]
    assert all(statuses[-1] == 200 for statuses in seen)
    # MinIO may also send an accepted event again (a timeout on its side): harmless. (It may
    # meet a 503 first, while the backlog is still at the mark, and be sent again.)
    for body in bodies[:5]:
        assert body is not None and pipe.deliver(body)[-1] == 200
    _scanned_once(pipe, keys)


def test_a_broker_outage_gets_503s_not_lost_events(make_pipeline: MakePipeline) -> None:
    """Redis (the broker too) stops: notifications get 503; once it is back, resent as MinIO
    does, every one of them is scanned, once."""
    pipe = make_pipeline(rate=10.0, intake="webhook", redis_aof=True)
    pipe.start_processes(worker_args=["--concurrency", "2"])
    before = [f"before/{n}.jpg.bin" for n in range(4)]
    for key in before:
        pipe.upload(key, os.urandom(HASH))
    assert len(pipe.wait_for_results(before, timeout_s=60)) == len(before)

    pipe.redis.stop()
    during = [f"during/{n}.jpg.bin" for n in range(6)]
    bodies = [pipe.upload(key, os.urandom(HASH), notify=False) for key in during]
    answers = [pipe.post(body) for body in bodies if body is not None]
    assert [a.status_code for a in answers] == [503] * len(during)
    assert all(a.headers["retry-after"] == "5" for a in answers)

    pipe.redis.start()
    for body in bodies:
        assert body is not None
        assert pipe.deliver(body)[-1] == 200
    _scanned_once(pipe, before + during)
