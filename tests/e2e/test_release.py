"""Release of a rejected report, and the allowlist, end to end through the real processes.

moto holds the upload bucket, a quarantine bucket with Object Lock and the reports bucket;
the sandbox answers MatchEdgeHash; the Procfile's intake, worker and beat run on the
defaults. ``edgematch release`` and ``edgematch allow`` run as on-call runs them, as
processes beside the pipeline. Reports wait for a reviewer (EDGEMATCH_REVIEW=required, as
the docs tell operators who want `record` reports reviewed), who rejects or confirms them
with `edgematch review` (tests/support/reviews.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from devtools.sandbox.rules import match_id_for
from edgematch.infra.redisclient import redis_client
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, cli, content_tags, redeliver, wait_settled
from tests.support.ports import free_port
from tests.support.reviews import HOLD, decide

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUARANTINE = "quarantine"
MARKER = "edgematch-released-report"
PLATFORM_METADATA = {"uploader": "u-42", "album": "summer"}


def _put_content(pipe: LocalPipeline, key: str, body: bytes) -> None:
    """The platform's upload: its bytes, metadata, content headers and tags."""
    pipe.s3().put_object(
        Bucket=pipe.bucket,
        Key=key,
        Body=body,
        ContentType="image/jpeg",
        ContentDisposition='inline; filename="p.jpg"',
        Metadata=PLATFORM_METADATA,
        Tagging="owner=platform&album=summer",
    )


def _versions(pipe: LocalPipeline, bucket: str, key: str) -> list[dict[str, Any]]:
    listing = pipe.s3().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def _report(pipe: LocalPipeline, content_key: str) -> dict[str, Any]:
    (doc,) = [d for d in pipe.reports() if d["content"]["key"] == content_key]
    return doc


def test_a_rejected_report_is_released_exactly_once_and_resumably(
    make_pipeline: MakePipeline,
) -> None:
    """Move mode: `release` puts the scanned bytes back at the same key (a new version) with
    the platform's metadata, content headers and tags, `released`, and the report released;
    a second run changes nothing; a confirmed report is refused; a release SIGKILLed after
    its copy exists, before the report is marked, is finished by the same command; the
    evidence stays held until --discard-evidence."""
    pipe = make_pipeline(quarantine_bucket=QUARANTINE, settings=HOLD)
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hits = [os.urandom(HASH) for _ in range(3)]
    pipe.add_known(hits)
    names = ["photos/released.jpg", "photos/killed.jpg", "photos/confirmed.jpg"]
    bodies = {name: b"\xff\xd8 the picture " + name.encode() for name in names}
    for name, hit in zip(names, hits, strict=True):
        _put_content(pipe, name, bodies[name])
        pipe.upload(f"{name}.bin", hit)
    _wait(lambda: len(pipe.reports()) == 3, 90, "three reports")
    wait_settled(pipe)
    released, killed, confirmed = (_report(pipe, name) for name in names)
    assert {d["evidence"]["state"] for d in (released, killed, confirmed)} == {"moved"}
    assert {d["status"] for d in (released, killed, confirmed)} == {"pending_review"}
    undecided = cli(pipe, "release", released["report_id"])
    assert undecided.returncode == 2 and "review reject" in undecided.stderr
    for doc, decision in ((released, "rejected"), (killed, "rejected"), (confirmed, "confirmed")):
        decide(pipe, doc["report_id"], decision)

    # Released: byte-identical, at the same key, the platform's metadata, headers and tags.
    name = names[0]
    done = cli(pipe, "release", released["report_id"], "--operator", "ana")
    assert done.returncode == 0, done.stderr
    (version,) = _versions(pipe, pipe.bucket, name)
    got = pipe.s3().get_object(Bucket=pipe.bucket, Key=name)
    assert got["Body"].read() == bodies[name] and got["VersionId"] == version["VersionId"]
    assert got["ContentType"] == "image/jpeg"
    assert got["ContentDisposition"] == 'inline; filename="p.jpg"'
    assert got["Metadata"] == {**PLATFORM_METADATA, MARKER: released["report_id"]}
    assert content_tags(pipe, pipe.bucket, name) == {
        "owner": "platform",
        "album": "summer",
        "edgematch-status": "released",
    }
    doc = _report(pipe, name)
    assert doc["status"] == "released" and doc["release"]["version_id"] == version["VersionId"]
    assert doc["history"][-1]["status"] == "released" and doc["history"][-1]["actor"] == "ana"
    assert [h["status"] for h in doc["history"]][-3:] == ["pending_review", "rejected", "released"]
    evidence = doc["evidence"]
    held = pipe.s3().head_object(
        Bucket=QUARANTINE, Key=evidence["key"], VersionId=evidence["version_id"]
    )
    assert held["ObjectLockLegalHoldStatus"] == "ON"

    # Twice: nothing changes.
    again = cli(pipe, "release", released["report_id"], "--operator", "ana")
    assert again.returncode == 0 and again.stdout.startswith("already released"), again.stderr
    assert len(_versions(pipe, pipe.bucket, name)) == 1
    assert _report(pipe, name)["history"] == doc["history"]

    # A confirmed report is refused, and nothing is put back.
    refused = cli(pipe, "release", confirmed["report_id"])
    assert refused.returncode == 2 and "confirmed" in refused.stderr
    assert _versions(pipe, pipe.bucket, names[2]) == []

    _killed_mid_release_then_finished(pipe, killed["report_id"], names[1], bodies[names[1]])

    # The evidence, discarded on request: hold lifted, retention bypassed, history noted.
    gone = cli(pipe, "release", released["report_id"], "--operator", "ana", "--discard-evidence")
    assert gone.returncode == 0, gone.stderr
    assert _versions(pipe, QUARANTINE, evidence["key"]) == []
    last = _report(pipe, name)["history"][-1]
    assert last["reason"] == "evidence discarded" and last["actor"] == "ana"


def _killed_mid_release_then_finished(
    pipe: LocalPipeline, report_id: str, name: str, body: bytes
) -> None:
    """Another tag writer holds the content's tag lock, so the release waits after its
    copy is made: SIGKILLed there, it leaves the copy unreadable (`quarantined`) and the
    report rejected; the same command, run again, finishes without a second copy."""
    client = redis_client(pipe.redis.url)
    lock = pipe.keys.tag_lock(pipe.bucket, name)
    try:
        assert client.set(lock, "another-writer", px=60_000, nx=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgematch.ops.cli", "release", report_id, "--operator", "bo"],
            env=pipe.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(lambda: bool(_versions(pipe, pipe.bucket, name)), 30, "the copy put back")
            assert proc.poll() is None, "the release ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        (left,) = _versions(pipe, pipe.bucket, name)
        head = pipe.s3().head_object(Bucket=pipe.bucket, Key=name)
        assert head["Metadata"][MARKER] == report_id
        assert content_tags(pipe, pipe.bucket, name)["edgematch-status"] == "quarantined"
        assert _report(pipe, name)["status"] == "rejected"
    finally:
        client.delete(lock)
        client.close()
    finished = cli(pipe, "release", report_id, "--operator", "bo")
    assert finished.returncode == 0 and finished.stdout.startswith("released"), finished.stderr
    (version,) = _versions(pipe, pipe.bucket, name)
    assert version["VersionId"] == left["VersionId"]
    assert pipe.s3().get_object(Bucket=pipe.bucket, Key=name)["Body"].read() == body
    assert content_tags(pipe, pipe.bucket, name)["edgematch-status"] == "released"
    assert _report(pipe, name)["status"] == "released"


def _sample(port: int, name: str, **labels: str) -> float:
    """The sum of the worker pool's ``name`` samples that carry ``labels``."""
    reply = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=15)
    return sum(
        sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_an_allowlisted_match_is_neither_quarantined_nor_reported(
    make_pipeline: MakePipeline,
) -> None:
    """Tag mode: with one match id allowlisted (recorded with who and why), its upload is
    recorded `allowlisted` — tagged so, counted in the metrics and the verdict log — with
    no quarantine and no report; another match still is quarantined and reported, and
    its rejected report is released by retagging the scanned version; a redelivery of its
    match blocks the version again, and the release run again releases it again. On the
    defaults: the record reporter's report is `pending` (a document waiting for a person),
    which a reviewer rejects without holding reports first."""
    pipe = make_pipeline()
    metrics_port = free_port()
    pipe.start_processes(
        "intake",
        "worker",
        "beat",
        worker_args=["--concurrency", "2", "--metrics-port", str(metrics_port)],
    )
    cleared, wrong = os.urandom(HASH), os.urandom(HASH)
    pipe.add_known([cleared, wrong])
    match_id = match_id_for(hashlib.sha256(cleared).hexdigest())
    added = cli(
        pipe, "allow", "add", "--match-id", match_id, "--reviewer", "ana", "--reason", "list error"
    )
    assert added.returncode == 0, added.stderr
    listed = cli(pipe, "allow", "list", "--json")
    (entry,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert entry["value"] == match_id and entry["reviewer"] == "ana"
    records = pipe.s3().list_objects_v2(Bucket=pipe.reports_bucket, Prefix="allowlist/")
    assert len(records.get("Contents", [])) == 1

    pipe.upload("photos/fine.jpg.bin", cleared, content=b"an innocent picture")
    pipe.upload("photos/bad.jpg.bin", wrong, content=b"a picture that matched")
    _wait(lambda: len(pipe.reports()) == 1, 60, "the other match's report")
    wait_settled(pipe)
    result = pipe.result("photos/fine.jpg.bin")
    assert result is not None and result["verdict"] == "allowlisted"
    assert result["match_ids"] == [match_id]
    assert content_tags(pipe, pipe.bucket, "photos/fine.jpg")["edgematch-status"] == "allowlisted"
    (report,) = pipe.reports()
    assert report["content"]["key"] == "photos/bad.jpg"
    assert content_tags(pipe, pipe.bucket, "photos/bad.jpg")["edgematch-status"] == "quarantined"
    assert _sample(metrics_port, "edgematch_hashes_scanned_total", verdict="allowlisted") == 1
    assert _sample(metrics_port, "edgematch_allowlisted_total") == 1
    _wait(lambda: len(pipe.verdict_log()) == 2, 60, "both results in the verdict log")
    counted = cli(pipe, "verdicts", "--since", "1h", "--json")
    assert json.loads(counted.stdout)["by_verdict"] == {"allowlisted": 1, "match": 1}

    # Tag mode's release: the scanned version itself, tagged released.
    assert report["status"] == "pending" and report["reporter"] == "record"
    rejected = decide(pipe, report["report_id"], "rejected")
    assert rejected["status"] == "rejected"
    assert rejected["history"][-1]["actor"] == "reviewer-e2e"
    done = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert done.returncode == 0, done.stderr
    assert content_tags(pipe, pipe.bucket, "photos/bad.jpg") == {
        "owner": "platform",
        "edgematch-status": "released",
    }
    assert pipe.reports()[0]["status"] == "released"

    # The match redelivered after the release blocks that version again (fail closed),
    # sends nothing; the same release, run again, puts `released` back.
    result = pipe.result("photos/bad.jpg.bin")
    assert result is not None and result["verdict"] == "match"
    redeliver(pipe, result)
    _wait(
        lambda: (
            content_tags(pipe, pipe.bucket, "photos/bad.jpg")["edgematch-status"] == "quarantined"
        ),
        60,
        "the redelivered match to block the version again",
    )
    wait_settled(pipe)
    assert [d["status"] for d in pipe.reports()] == ["released"]
    again = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert again.returncode == 0 and again.stdout.startswith("already released"), again.stderr
    assert content_tags(pipe, pipe.bucket, "photos/bad.jpg")["edgematch-status"] == "released"


def test_shadow_mode_release_retags_the_untouched_version(make_pipeline: MakePipeline) -> None:
    """off: nothing was moved, but the version is tagged `match` (the gate denies it); its
    `shadow` report needs no rejection: release says so, tags it `released`, and keeps the
    release in the report's history, its status unchanged."""
    pipe = make_pipeline(settings={"EDGEMATCH_QUARANTINE_MODE": "off"})
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hit = os.urandom(HASH)
    pipe.add_known([hit])
    pipe.upload("photos/hit.jpg.bin", hit, content=b"a picture left where it was")
    _wait(lambda: len(pipe.reports()) == 1, 60, "the shadow report")
    (report,) = pipe.reports()
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg")["edgematch-status"] == "match"
    done = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert done.returncode == 0 and "quarantine was off" in done.stdout, done.stderr
    assert content_tags(pipe, pipe.bucket, "photos/hit.jpg") == {
        "owner": "platform",
        "edgematch-status": "released",
    }
    (after,) = pipe.reports()
    assert after["status"] == "shadow" and after["release"]["operator"] == "ana"
    assert after["history"][-1]["actor"] == "ana"
    again = cli(pipe, "release", report["report_id"], "--operator", "ana")
    assert again.returncode == 0 and again.stdout.startswith("already released")
