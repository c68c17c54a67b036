"""A person in the loop, end to end: reports held for review, decided on the command line.

The Procfile's processes on moto and the sandbox, whose Report operation records what it
receives (``/_sandbox/reports``): nothing reaches it before a reviewer's confirmation, and
one confirmation — or two — reaches it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx
import pytest

from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, cli, wait_settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUARANTINE = "quarantine"
#: The reporter and its credentials as "Quarantine and reports" tells operators to set them;
#: EDGEMATCH_REVIEW is left at its default (auto: required with the photodna reporter).
PHOTODNA = {
    "EDGEMATCH_REPORTER": "photodna",
    "EDGEMATCH_REPORT_USER": "review-user",
    "EDGEMATCH_REPORT_PASSWORD": "review-password",
    "EDGEMATCH_REPORT_ORG_NAME": "Review Test Org",
    "EDGEMATCH_REPORT_REPORTER_NAME": "Review Reporter",
    "EDGEMATCH_REPORT_TEST": "true",
}


@pytest.fixture
def make_pipeline(make_pipeline: MakePipeline) -> MakePipeline:
    def make(**kwargs: Any) -> LocalPipeline:
        pipe = make_pipeline(**kwargs)
        pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
        return pipe

    return make


def _sandbox_reports(pipe: LocalPipeline) -> list[dict[str, Any]]:
    reply = httpx.get(f"{pipe.sandbox.root}/_sandbox/reports", timeout=5)
    reply.raise_for_status()
    reports: list[dict[str, Any]] = reply.json()["reports"]
    return reports


def _by_content(pipe: LocalPipeline) -> dict[str, dict[str, Any]]:
    return {doc["content"]["key"]: doc for doc in pipe.reports()}


def test_a_held_report_is_submitted_once_confirmed_and_never_once_rejected(
    make_pipeline: MakePipeline,
) -> None:
    """Review required: quarantined, held, a link for the reviewer, confirmed twice and
    submitted once; the other rejected, and neither decision can be turned around."""
    pipe = make_pipeline(quarantine_bucket=QUARANTINE, settings=PHOTODNA)
    images = {"photos/a.jpg": b"\xff\xd8 image a", "photos/b.jpg": b"\xff\xd8 image b"}
    hashes = {key: os.urandom(HASH) for key in images}
    pipe.add_known(hashes.values())
    for key, image in images.items():
        pipe.upload(f"{key}.bin", hashes[key], content=image)

    def held() -> bool:
        docs = pipe.reports()
        return len(docs) == 2 and all(d["status"] == "pending_review" for d in docs)

    _wait(held, 90, "both reports held for review")
    wait_settled(pipe)
    assert _sandbox_reports(pipe) == []  # nothing left the platform
    reports = _by_content(pipe)
    a, b = reports["photos/a.jpg"], reports["photos/b.jpg"]
    assert a["evidence"]["state"] == "moved" and not pipe.exists(pipe.bucket, "photos/a.jpg")
    assert "EDGEMATCH_REVIEW" in a["status_reason"]

    listed = cli(pipe, "review", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    docs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {d["report_id"] for d in docs} == {a["report_id"], b["report_id"]}
    assert [d["created_at"] for d in docs] == sorted(d["created_at"] for d in docs)

    # The reviewer's browser fetches the quarantined copy; the link is in the history.
    shown = cli(pipe, "review", "show", a["report_id"], "--reviewer", "alice", "--json")
    assert shown.returncode == 0, shown.stderr
    link = json.loads(shown.stdout)["link"]
    assert link["object"] == f"s3://{QUARANTINE}/uploads/photos/a.jpg"
    fetched = httpx.get(link["url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == images["photos/a.jpg"]
    entry = _by_content(pipe)["photos/a.jpg"]["history"][-1]
    assert entry["event"] == "link_issued" and entry["actor"] == "alice"
    assert entry["status"] == "pending_review" and entry["expires_at"] == link["expires_at"]
    assert entry["url_sha256"] == hashlib.sha256(link["url"].encode()).hexdigest()
    assert images["photos/a.jpg"].hex() not in shown.stdout + shown.stderr

    # Confirmed twice: submitted once.
    for _ in range(2):
        done = cli(
            pipe, "review", "confirm", a["report_id"], "--reviewer", "alice", "--note", "seen"
        )
        assert done.returncode == 0, done.stderr
    _wait(lambda: _by_content(pipe)["photos/a.jpg"]["status"] == "submitted", 60, "submission")
    wait_settled(pipe)
    (received,) = _sandbox_reports(pipe)
    extra = {m["Key"]: m["Value"] for m in received["AdditionalMetadata"]}
    assert extra["ReportId"] == a["report_id"]
    history = _by_content(pipe)["photos/a.jpg"]["history"]
    assert [h["status"] for h in history if not h.get("event")] == [
        "pending_review",
        "confirmed",
        "submitted",
    ]
    (confirmed,) = [h for h in history if h["status"] == "confirmed" and not h.get("event")]
    assert confirmed["actor"] == "alice" and confirmed["note"] == "seen"

    # Rejected: recorded, never submitted; neither decision can be turned around.
    no = cli(pipe, "review", "reject", b["report_id"], "--reviewer", "bob", "--reason", "a logo")
    assert no.returncode == 0, no.stderr
    rejected = _by_content(pipe)["photos/b.jpg"]
    assert rejected["status"] == "rejected" and rejected["status_reason"] == "a logo"
    assert rejected["history"][-1]["actor"] == "bob"
    again = cli(pipe, "review", "confirm", b["report_id"], "--reviewer", "carol")
    assert again.returncode == 2 and "rejected by bob" in again.stderr
    undo = cli(pipe, "review", "reject", a["report_id"], "--reviewer", "carol", "--reason", "x")
    assert undo.returncode == 2 and "confirmed by alice" in undo.stderr
    wait_settled(pipe)
    assert len(_sandbox_reports(pipe)) == 1
    assert _by_content(pipe)["photos/b.jpg"]["status"] == "rejected"


def test_a_flooded_match_id_holds_its_reports_and_is_named(make_pipeline: MakePipeline) -> None:
    """One hash matching more distinct objects than the flood limit: every object is
    quarantined (tag mode), the reports past the limit wait in pending_review although
    review is off, a reviewer sees the tagged original, and `edgematch status` names the
    match id."""
    # EDGEMATCH_FLOOD_MATCHES lowered as the docs tell a small platform to; the reporter is
    # the default (record), so EDGEMATCH_REVIEW's default (auto) is off.
    pipe = make_pipeline(settings={"EDGEMATCH_FLOOD_MATCHES": "2"})
    same = os.urandom(HASH)
    pipe.add_known([same])
    keys = [f"flood/img-{i}.jpg" for i in range(3)]
    for key in keys:
        pipe.upload(f"{key}.bin", same, content=b"innocent " + key.encode())
    _wait(lambda: len(pipe.reports()) == 3, 90, "three reports")
    wait_settled(pipe)
    docs = pipe.reports()
    assert all(d["evidence"]["state"] == "tagged" for d in docs)  # quarantined all the same
    statuses = sorted(d["status"] for d in docs)
    assert statuses == ["pending", "pending", "pending_review"]
    (held,) = [d for d in docs if d["status"] == "pending_review"]
    (match_id,) = held["match_ids"]
    assert f"match id {match_id}" in held["status_reason"]
    assert held["history"][0]["reason"] == held["status_reason"]

    # Tag mode: the link shows the tagged original, the version that was scanned.
    shown = cli(pipe, "review", "show", held["report_id"], "--reviewer", "dana", "--json")
    assert shown.returncode == 0, shown.stderr
    link = json.loads(shown.stdout)["link"]
    assert link["object"] == f"s3://{pipe.bucket}/{held['content']['key']}"
    assert link["version_id"] == held["content"]["version_id"]
    fetched = httpx.get(link["url"], timeout=10)
    assert fetched.content == b"innocent " + held["content"]["key"].encode()

    status = cli(pipe, "status")
    assert status.returncode == 1 and match_id in status.stdout, status.stdout
    listed = cli(pipe, "review", "list", "--match-id", match_id, "--json")
    assert [json.loads(line)["report_id"] for line in listed.stdout.splitlines()] == [
        held["report_id"]
    ]
