"""Two uploads of one key, their events and results in every order S3 and SQS allow.

On in-process moto S3 and a private redis-server, with the real ingest, the real results
consumer and the real quarantine (only the API is left out: a hash in ``HITS`` is the
match the matcher would publish, any other is clean). For every interleaving of

    upload A → ingest A → record A → quarantine A (if A matched)
    upload B → ingest B → record B → quarantine B (if B matched)

with upload A before upload B, for A and B each a hit or clean, in a versioned bucket
(events name the version, hash files pin their content version, as the README asks) and
an unversioned one, in each quarantine mode, the pipeline must end with the newest
content's result recorded and its verdict on it, each version's match kept, and — after
every single step — no matched or quarantined content readable again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import redis
import structlog

from edgematch.config.settings import Settings
from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.quarantine import Quarantine
from edgematch.pipeline import ingest as ingest_step
from edgematch.pipeline.events import ObjectCreated
from edgematch.pipeline.items import Item
from edgematch.pipeline.recording import consume
from edgematch.pipeline.results import CLEAN, MATCH, UNSCANNABLE, Result
from edgematch.pipeline.tagging import verdict_tags
from edgematch.runtime import Runtime
from tests.support.hashes import HASH

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

QUARANTINE = "quarantine"
TAG = "edgematch-status"
BLOCKED = ("match", "quarantined")
MakeSettings = Callable[..., Settings]
Step = tuple[str, str]  # ("upload" | "ingest" | "record" | "quarantine", "A" | "B")


def orders(a_hit: bool, b_hit: bool) -> list[list[Step]]:
    """Every interleaving of A's and B's steps with upload A before upload B."""
    chains = {
        name: [(step, name) for step in ("upload", "ingest", "record", "quarantine")][
            : 4 if hit else 3
        ]
        for name, hit in (("A", a_hit), ("B", b_hit))
    }
    a, b = chains["A"], chains["B"]
    found: list[list[Step]] = []
    for slots in itertools.combinations(range(len(a) + len(b)), len(a)):
        if slots[0] != 0:
            continue  # upload A comes first
        order: list[Step] = []
        ai = bi = 0
        for position in range(len(a) + len(b)):
            if position in slots:
                order.append(a[ai])
                ai += 1
            else:
                order.append(b[bi])
                bi += 1
        found.append(order)
    return found


@dataclass
class Upload:
    """One upload of the key: its content and hash writes, and what became of them."""

    name: str
    hit: bool
    image: bytes
    hash_bytes: bytes
    content_version: str | None = None
    content_etag: str = ""
    hash_version: str | None = None
    hash_etag: str = ""
    published: list[Result] = field(default_factory=list)
    item: Item | None = None
    result: Result | None = None

    @property
    def verdict(self) -> str:
        return MATCH if self.hit else CLEAN


class Case:
    """One interleaving on a key of its own."""

    def __init__(
        self,
        rt: Runtime,
        s3: S3Client,
        bucket: str,
        key: str,
        hits: tuple[bool, bool],
        *,
        versioned: bool,
    ) -> None:
        self.rt, self.s3, self.bucket, self.key = rt, s3, bucket, key
        self.hash_key = f"{key}.bin"
        self.versioned = versioned
        # A bucket of its own per case keeps moto's listings short.
        s3.create_bucket(Bucket=bucket)
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.uploads = {
            name: Upload(name, hit, f"{name} image {key}".encode(), os.urandom(HASH))
            for name, hit in zip("AB", hits, strict=True)
        }
        self.quarantine = Quarantine(
            settings=rt.settings,
            evidence=EvidenceStore(s3),
            objects=rt.store,
            client=rt.redis,
        )
        #: Content versions (version id, or ETag unversioned) that ever carried a match.
        self.blocked: set[str] = set()

    # -- the steps --------------------------------------------------------------------
    def run(self, step: Step) -> None:
        kind, name = step
        upload = self.uploads[name]
        getattr(self, f"_{kind}")(upload)
        self._check_nothing_matched_is_readable()

    def _upload(self, up: Upload) -> None:
        content = self.s3.put_object(
            Bucket=self.bucket, Key=self.key, Body=up.image, Tagging="owner=platform"
        )
        up.content_version = content.get("VersionId") if self.versioned else None
        up.content_etag = content["ETag"].strip('"')
        metadata = {"content-version-id": up.content_version} if up.content_version else {}
        written = self.s3.put_object(
            Bucket=self.bucket, Key=self.hash_key, Body=up.hash_bytes, Metadata=metadata
        )
        up.hash_version = written.get("VersionId") if self.versioned else None
        up.hash_etag = written["ETag"].strip('"')

    def _ingest(self, up: Upload) -> None:
        event = ObjectCreated(
            bucket=self.bucket,
            key=self.hash_key,
            version_id=up.hash_version,
            etag=up.hash_etag,
            size=len(up.hash_bytes),
            event_time=None,
            event_name="ObjectCreated:Put",
            sequencer=None,
            source="s3",
        )
        before = set(self.rt.redis.hkeys(self.rt.buffer.keys.items))
        outcome = ingest_step.ingest(
            self.rt,
            event,
            correlation_id=f"corr-{up.name}",
            lane="live",
            publish=up.published.append,
            start_pump=lambda _pump: None,
        )
        if outcome == ingest_step.ADDED:
            (new,) = set(self.rt.redis.hkeys(self.rt.buffer.keys.items)) - before
            raw = self.rt.redis.hget(self.rt.buffer.keys.items, new)
            assert raw is not None
            up.item = Item.from_json(raw)
            digest = hashlib.sha256(up.hash_bytes).hexdigest()
            assert up.item.hash_sha256 == digest
            if up.hit:
                up.result = Result.for_item(
                    up.item, verdict=MATCH, is_match=True, match_ids=(f"m-{up.name}",)
                )
            else:
                up.result = Result.for_item(up.item, verdict=CLEAN)
        else:
            # Only A can be read too late: B's write is never replaced.
            assert outcome == ingest_step.REFUSED and up.name == "A", outcome
            (up.result,) = up.published
            assert up.result.verdict == UNSCANNABLE

    def _record(self, up: Upload) -> None:
        assert up.result is not None
        consume(
            up.result,
            store=self.rt.results,
            tags=verdict_tags(self.rt),
            log=structlog.get_logger("test"),
            hand_on=left_out,
        )
        if up.result.verdict == MATCH:
            self.blocked.add(self._version_name(up))

    def _quarantine(self, up: Upload) -> None:
        assert up.result is not None
        if up.result.verdict == MATCH:
            self.quarantine.run(up.result)

    # -- what is checked ---------------------------------------------------------------
    def _version_name(self, up: Upload) -> str:
        return up.content_version or f"etag:{up.content_etag}"

    def _versions(self) -> dict[str, dict[str, str]]:
        """The content key's versions now (version id, or ETag when unversioned) → tags."""
        if self.versioned:
            listing = self.s3.list_object_versions(Bucket=self.bucket, Prefix=self.key)
            return {
                v["VersionId"]: self._tags(v["VersionId"])
                for v in listing.get("Versions", [])
                if v["Key"] == self.key
            }
        objects = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.key)
        found = [o for o in objects.get("Contents", []) if o["Key"] == self.key]
        return {f"etag:{o['ETag'].strip(chr(34))}": self._tags(None) for o in found}

    def _tags(self, version_id: str | None) -> dict[str, str]:
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        reply = self.s3.get_object_tagging(Bucket=self.bucket, Key=self.key, **extra)
        return {t["Key"]: t["Value"] for t in reply["TagSet"]}

    def _check_nothing_matched_is_readable(self) -> None:
        """A version that got a match is denied to readers from then on, in tag and off
        mode (moved away in move mode), whatever arrives later."""
        if self.rt.settings.effective_quarantine_mode == "move" or not self.blocked:
            return
        if self.versioned:
            for version in self.blocked:
                try:
                    tags = self._tags(version)
                except self.s3.exceptions.ClientError:
                    continue  # not there (any more)
                assert tags.get(TAG) in BLOCKED, (version, tags)
            return
        try:
            etag = self.s3.head_object(Bucket=self.bucket, Key=self.key)["ETag"].strip('"')
        except self.s3.exceptions.ClientError:
            return
        if f"etag:{etag}" in self.blocked:
            tags = self._tags(None)
            assert tags.get(TAG) in BLOCKED, (etag, tags)

    def check_end(self) -> None:
        a, b = self.uploads["A"], self.uploads["B"]
        assert b.item is not None and b.result is not None
        # The newest content's result is the recorded one, for the hash and content keys.
        recorded = self.rt.results.current(self.bucket, self.hash_key)
        assert recorded is not None and recorded["item_id"] == b.item.id, recorded
        assert recorded["verdict"] == b.verdict
        via_content = self.rt.results.get(self.bucket, self.key)
        assert via_content is not None and via_content["item_id"] == b.item.id
        mode = self.rt.settings.effective_quarantine_mode
        matched = {"move": None, "tag": "quarantined", "off": "match"}[mode]
        versions = self._versions()
        for up in (a, b):
            name = self._version_name(up)
            if not self.versioned and up is a:
                # Unversioned: B's upload replaced A's bytes (and their tags) for good.
                assert name not in versions or a.content_etag == b.content_etag
                continue
            if up.hit and matched is None:
                assert name not in versions, "a matched version is still in the bucket"
            elif up.hit:
                assert versions[name].get(TAG) == matched, (up.name, versions)
            else:
                assert versions[name].get(TAG) == CLEAN, (up.name, versions)
        self._check_quarantine_holds_only_hits()

    def _check_quarantine_holds_only_hits(self) -> None:
        """Only matched bytes were ever copied, and only clean content is left unblocked."""
        hits = {u.image for u in self.uploads.values() if u.hit}
        listing = self.s3.list_object_versions(Bucket=QUARANTINE, Prefix=f"{self.bucket}/")
        for version in listing.get("Versions", []):
            if version["Key"] != f"{self.bucket}/{self.key}":
                continue
            body = self.s3.get_object(
                Bucket=QUARANTINE, Key=version["Key"], VersionId=version["VersionId"]
            )["Body"].read()
            assert body in hits


@pytest.fixture
def s3(s3: S3Client) -> S3Client:
    """The shared fixture (conftest.py) plus a quarantine bucket with Object Lock."""
    s3.create_bucket(Bucket=QUARANTINE, ObjectLockEnabledForBucket=True)
    return s3


def left_out(result: Result) -> None:
    """The consumer's downstream hand-off (a Celery task) is left out: this test runs
    quarantine itself, at the step the order says."""


MODES = {
    "move": {"quarantine_bucket": QUARANTINE},
    "tag": {"quarantine_mode": "tag"},
    "off": {"quarantine_mode": "off"},
}
HITS = [(True, False), (False, True), (True, True), (False, False)]


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
@pytest.mark.parametrize("mode", list(MODES))
def test_every_order_of_two_uploads_ends_with_the_newest_verdict(
    s3: S3Client,
    redis_client: redis.Redis,
    make_settings: MakeSettings,
    mode: str,
    versioned: bool,
) -> None:
    """All interleavings of two uploads of one key and their events, results and
    quarantine: the newest content's result and tag win, no match is undone, and nothing
    matched is readable again after any step."""
    rt = Runtime(make_settings(namespace=f"order-{mode}-{versioned}", **MODES[mode]))
    cases = 0
    try:
        for a_hit, b_hit in HITS:
            for n, order in enumerate(orders(a_hit, b_hit)):
                bucket = f"{'v' if versioned else 'u'}-{int(a_hit)}{int(b_hit)}-{n}"
                key = "order/ünï cödé ☃.jpg"
                case = Case(rt, s3, bucket, key, (a_hit, b_hit), versioned=versioned)
                for step in order:
                    case.run(step)
                try:
                    case.check_end()
                except AssertionError as exc:
                    raise AssertionError(f"{order}: {exc}") from exc
                cases += 1
    finally:
        rt.close()
    assert cases == sum(len(orders(a, b)) for a, b in HITS)


def test_the_orders_are_every_interleaving() -> None:
    """A hit has four steps, a clean upload three; upload A always comes first."""
    assert len(orders(False, False)) == 10
    assert len(orders(True, True)) == 35
    for order in orders(True, False):
        assert order[0] == ("upload", "A")
        for name in "AB":
            steps = [kind for kind, who in order if who == name]
            assert steps == ["upload", "ingest", "record", "quarantine"][: len(steps)]


# --- the gate, the lock, the compare-and-set ---------------------------------------------


def _clean_result(item: Item) -> Result:
    return Result.for_item(item, verdict=CLEAN)


def _ingest_one(rt: Runtime, s3: S3Client, bucket: str, key: str, lane: str = "live") -> Item:
    head = s3.head_object(Bucket=bucket, Key=f"{key}.bin")
    event = ObjectCreated(
        bucket=bucket,
        key=f"{key}.bin",
        version_id=head.get("VersionId"),
        etag=head["ETag"].strip('"'),
        size=head["ContentLength"],
        event_time=None,
        event_name="ObjectCreated:Put",
        sequencer=None,
        source="s3",
    )
    before = set(rt.redis.hkeys(rt.buffer.keys.items))
    outcome = ingest_step.ingest(
        rt,
        event,
        correlation_id="corr",
        lane=lane,
        publish=lambda _result: None,
        start_pump=lambda _pump: None,
    )
    assert outcome == ingest_step.ADDED
    (new,) = set(rt.redis.hkeys(rt.buffer.keys.items)) - before
    raw = rt.redis.hget(rt.buffer.keys.items, new)
    assert raw is not None
    return Item.from_json(raw)


def test_the_gate_holds_a_new_version_but_not_a_verdict_being_rescanned(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """EDGEMATCH_GATE=on: a version with its verdict keeps it while replayed; an upload
    that came with a copied `clean` tag is held `pending` all the same."""
    rt = Runtime(make_settings(namespace="gate", gate=True))
    log = structlog.get_logger("test")
    try:
        s3.create_bucket(Bucket="gated")
        s3.put_object(Bucket="gated", Key="a.jpg", Body=b"first")
        s3.put_object(Bucket="gated", Key="a.jpg.bin", Body=os.urandom(HASH))
        item = _ingest_one(rt, s3, "gated", "a.jpg")
        assert _tags_of(s3, "gated", "a.jpg") == {TAG: "pending"}
        consume(
            _clean_result(item), store=rt.results, tags=verdict_tags(rt), log=log, hand_on=left_out
        )
        assert _tags_of(s3, "gated", "a.jpg") == {TAG: CLEAN}

        # The same version ingested again (a replay): it stays clean meanwhile.
        rt.buffer.forget(f"gated\x00a.jpg.bin\x00etag:{item.etag}")
        _ingest_one(rt, s3, "gated", "a.jpg", lane="replay")
        assert _tags_of(s3, "gated", "a.jpg") == {TAG: CLEAN}

        # New bytes uploaded with the old tags copied onto them: held until scanned.
        s3.put_object(Bucket="gated", Key="a.jpg", Body=b"second", Tagging=f"{TAG}=clean")
        s3.put_object(Bucket="gated", Key="a.jpg.bin", Body=os.urandom(HASH))
        _ingest_one(rt, s3, "gated", "a.jpg")
        assert _tags_of(s3, "gated", "a.jpg") == {TAG: "pending"}
    finally:
        rt.close()


def _tags_of(s3: S3Client, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def test_a_result_waits_for_another_tag_writer_then_applies_the_rule(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """Quarantine holds the content's tag lock: the late clean result of the same write
    waits for it, then finds `quarantined` and leaves it."""
    rt = Runtime(make_settings(namespace="lock", quarantine_mode="tag"))
    log = structlog.get_logger("test")
    try:
        s3.create_bucket(Bucket="locked")
        s3.put_object(Bucket="locked", Key="b.jpg", Body=b"bytes")
        s3.put_object(Bucket="locked", Key="b.jpg.bin", Body=os.urandom(HASH))
        item = _ingest_one(rt, s3, "locked", "b.jpg")
        hit = Result.for_item(item, verdict=MATCH, is_match=True, match_ids=("m",))
        consume(hit, store=rt.results, tags=verdict_tags(rt), log=log, hand_on=left_out)
        tags = verdict_tags(rt)
        held, released = threading.Event(), threading.Event()
        late = dataclasses.replace(_clean_result(item), item_id="late", scanned_at=time.time())

        def hold_then_quarantine() -> None:
            with tags.lock("locked", "b.jpg"):
                held.set()
                time.sleep(0.5)  # the late result arrives while the lock is held
                tags.write("locked", "b.jpg", "quarantined", version_id=None)
            released.set()

        holder = threading.Thread(target=hold_then_quarantine)
        holder.start()
        assert held.wait(10)
        consume(late, store=rt.results, tags=verdict_tags(rt), log=log, hand_on=left_out)
        assert released.is_set()  # it waited for the holder
        holder.join()
        assert _tags_of(s3, "locked", "b.jpg") == {TAG: "quarantined"}
        recorded = rt.results.current("locked", "b.jpg.bin")
        assert recorded is not None and recorded["item_id"] == item.id
    finally:
        rt.close()


def test_the_recorded_result_is_a_compare_and_set(
    redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """A write decided on a result that was replaced meanwhile is refused; each item is
    fresh once."""
    rt = Runtime(make_settings(namespace="cas"))
    try:
        store = rt.results
        first = Result(
            item_id="one",
            verdict=CLEAN,
            bucket="b",
            key="k.bin",
            version_id=None,
            etag="e1",
            content_bucket="b",
            content_key="k",
            is_match=False,
            correlation_id="c",
            attempts=1,
        )
        second = dataclasses.replace(first, item_id="two", etag="e2")
        assert store.commit(first, record=True, expected_item=None) is True
        assert store.commit(second, record=True, expected_item=None) is None
        assert store.commit(second, record=True, expected_item="one") is True
        assert store.commit(second, record=False, expected_item="two") is False
        assert store.commit(first, record=False, expected_item="two") is False
        current = store.current("b", "k.bin")
        assert current is not None and current["item_id"] == "two"
    finally:
        rt.close()


def test_clean_tagging_off_leaves_clean_content_alone_but_tags_every_other_verdict(
    s3: S3Client, redis_client: redis.Redis, make_settings: MakeSettings
) -> None:
    """EDGEMATCH_TAG_CLEAN=off, as docs/operations.md ("Tagging clean content") tells
    operators to set it where nothing reads the clean tag: a clean result is recorded and
    the content's tags are left as they were; a match is tagged as ever; with the gate on,
    clean content is tagged all the same (only that tag releases `pending`)."""
    log = structlog.get_logger("test")
    rt = Runtime(make_settings(namespace="tag-clean-off", tag_clean=False))
    try:
        s3.create_bucket(Bucket="untagged")
        for key in ("c.jpg", "m.jpg"):
            s3.put_object(Bucket="untagged", Key=key, Body=b"bytes", Tagging="owner=platform")
            s3.put_object(Bucket="untagged", Key=f"{key}.bin", Body=os.urandom(HASH))
        clean = _ingest_one(rt, s3, "untagged", "c.jpg")
        hit = _ingest_one(rt, s3, "untagged", "m.jpg")
        tags = verdict_tags(rt)
        assert consume(_clean_result(clean), store=rt.results, tags=tags, log=log, hand_on=left_out)
        match = Result.for_item(hit, verdict=MATCH, is_match=True, match_ids=("m",))
        assert consume(match, store=rt.results, tags=tags, log=log, hand_on=left_out)
        assert _tags_of(s3, "untagged", "c.jpg") == {"owner": "platform"}
        assert _tags_of(s3, "untagged", "m.jpg") == {"owner": "platform", TAG: MATCH}
        recorded = rt.results.current("untagged", "c.jpg.bin")
        assert recorded is not None and recorded["verdict"] == CLEAN
    finally:
        rt.close()

    gated = Runtime(make_settings(namespace="tag-clean-off-gate", tag_clean=False, gate=True))
    try:
        s3.put_object(Bucket="untagged", Key="g.jpg", Body=b"bytes")
        s3.put_object(Bucket="untagged", Key="g.jpg.bin", Body=os.urandom(HASH))
        item = _ingest_one(gated, s3, "untagged", "g.jpg")
        assert _tags_of(s3, "untagged", "g.jpg") == {TAG: "pending"}
        consume(
            _clean_result(item),
            store=gated.results,
            tags=verdict_tags(gated),
            log=log,
            hand_on=left_out,
        )
        assert _tags_of(s3, "untagged", "g.jpg") == {TAG: CLEAN}
    finally:
        gated.close()
