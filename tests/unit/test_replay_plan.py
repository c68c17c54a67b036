"""What each dead letter replays as, and which idempotency keys a rescan forgets. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from edgematch.recovery.deadletters import DeadLetter, Filter
from edgematch.recovery.replay import NotReplayable, identities, plan
from tests.support.hashes import HASH

EVENT = {
    "bucket": "uploads",
    "key": "photos/a.jpg.bin",
    "version_id": None,
    "etag": "e1",
    "size": HASH,
    "event_time": None,
    "event_name": "ObjectCreated:Put",
    "sequencer": None,
    "source": "s3",
}


def _entry(entry_id: str, task: str, args: dict[str, Any], **fields: Any) -> DeadLetter:
    return DeadLetter(
        id=entry_id,
        task=task,
        queue="edgematch.x",
        reason="retries_exhausted",
        message="m",
        args=args,
        correlation_id="corr-1",
        **fields,
    )


def test_identities_cover_both_spellings_of_a_version() -> None:
    """A version named by id and by ETag yields both identities ingest may have stored."""
    assert identities("b", "k", "v1", "e1") == ("b\x00k\x00etag:e1", "b\x00k\x00v1")
    assert identities("b", "k", None, "e1") == ("b\x00k\x00etag:e1",)
    assert identities("b", "k", None, None) == ("b\x00k\x00unversioned",)


def test_matcher_item_replays_as_a_pinned_ingest_with_rescan() -> None:
    """An item the API gave up on is ingested again, pinned to its version, keys forgotten."""
    args = {"bucket": "uploads", "key": "photos/a.jpg.bin", "version_id": "v1", "etag": "e1"}
    planned = plan(_entry("item:abc", "edgematch.match", args))
    assert planned.task == "edgematch.ingest"
    assert planned.kwargs["lane"] == "replay"
    assert planned.kwargs["correlation_id"] == "corr-1"
    event = planned.kwargs["event"]
    assert (event["bucket"], event["key"], event["version_id"], event["etag"]) == (
        "uploads",
        "photos/a.jpg.bin",
        "v1",
        "e1",
    )
    assert event["source"] == "replay"
    assert planned.forget == identities("uploads", "photos/a.jpg.bin", "v1", "e1")


def test_failed_ingest_task_replays_its_event_without_forgetting() -> None:
    """An ingest that gave up before accepting the object replays as is: nothing to forget."""
    planned = plan(_entry("task:t1", "edgematch.ingest", {"event": EVENT, "lane": "live"}))
    assert planned.task == "edgematch.ingest"
    assert planned.kwargs == {"event": EVENT, "correlation_id": "corr-1", "lane": "replay"}
    assert planned.forget == ()


def test_refused_ingest_replays_with_rescan() -> None:
    """An ingest refusal (its args are the event itself) forgets the key that marked it seen."""
    planned = plan(_entry("ingest:edgematch:seen:ff", "edgematch.ingest", dict(EVENT)))
    assert planned.kwargs["event"] == EVENT
    assert planned.forget == ("uploads\x00photos/a.jpg.bin\x00etag:e1",)


def test_record_result_replays_with_its_result() -> None:
    """record_result is replayed with the same result document and correlation id."""
    result = {"schema": "edgematch.result/v1", "bucket": "b", "key": "k", "item_id": "i"}
    planned = plan(_entry("task:t2", "edgematch.record_result", {"result": result}))
    assert planned.task == "edgematch.record_result"
    assert planned.kwargs == {"result": result, "correlation_id": "corr-1"}


def test_other_tasks_replay_with_their_arguments() -> None:
    """A task this module does not know (quarantine, report) gets its own arguments back."""
    planned = plan(_entry("task:t3", "edgematch.report", {"result": {}, "evidence": {"a": 1}}))
    assert planned.task == "edgematch.report"
    assert planned.kwargs == {"result": {}, "evidence": {"a": 1}, "correlation_id": "corr-1"}


def test_missing_correlation_id_gets_a_new_one() -> None:
    """An entry without a correlation id replays under a fresh one (tasks require it)."""
    entry = _entry("task:t1", "edgematch.ingest", {"event": EVENT, "lane": "live"})
    planned = plan(DeadLetter(**{**entry.to_dict(), "correlation_id": None}))
    assert len(planned.kwargs["correlation_id"]) == 32


@pytest.mark.parametrize(
    ("task", "args", "why"),
    [
        ("edgematch.intake", {"message_id": "m", "body_excerpt": "x"}, "malformed SQS"),
        ("edgematch.webhook", {"body_sha256": "ab", "body_excerpt": "x"}, "malformed webhook"),
        ("edgematch.ingest", {"event": {"key": "k"}, "lane": "live"}, "bucket and key"),
        ("edgematch.match", {"version_id": "v"}, "bucket and key"),
        ("edgematch.report", {}, "no arguments"),
    ],
)
def test_what_cannot_be_replayed_says_why(task: str, args: dict[str, Any], why: str) -> None:
    """Entries that cannot be replayed raise NotReplayable with a reason for on-call."""
    with pytest.raises(NotReplayable, match=why):
        plan(_entry("x", task, args))


def _letter(**fields: Any) -> DeadLetter:
    base: dict[str, Any] = {
        "id": "i",
        "task": "t",
        "queue": "edgematch.match",
        "reason": "poison",
        "message": "m",
        "args": {},
        "last_failed_at": 100.0,
    }
    return DeadLetter(**{**base, **fields})


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        (Filter(), True),
        (Filter(queue="match"), True),
        (Filter(queue="edgematch.match"), True),
        (Filter(queue="ingest"), False),
        (Filter(queue="atch"), False),
        (Filter(reason="poison"), True),
        (Filter(reason="retries_exhausted"), False),
        (Filter(since=100.0), True),
        (Filter(since=100.5), False),
        (Filter(before=100.0), False),
        (Filter(before=100.5), True),
        (Filter(state="failed"), True),
        (Filter(state="replaying"), False),
    ],
)
def test_filter_matches(where: Filter, matches: bool) -> None:
    """Filters select by queue (name or step), reason, time window and state."""
    assert where.matches(_letter()) is matches


def test_filter_score_bounds() -> None:
    """Time filters become an inclusive lower and an exclusive upper bound in ms."""
    assert Filter().score_bounds() == ("-inf", "+inf")
    assert Filter(since=1.5, before=2.0).score_bounds() == ("1500", "(2000")


def test_stored_document_keeps_replay_state_out() -> None:
    """The stored JSON carries the failure only; unknown fields from a newer writer are ignored."""
    letter = _letter(state="replaying", replays=2)
    doc = letter.to_json()
    assert "replays" not in doc and "state" not in doc
    again = DeadLetter.from_json(doc[:-1] + ',"added_later":1}')
    assert again.id == "i" and again.state == "failed"
