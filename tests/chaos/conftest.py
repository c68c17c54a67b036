"""Chaos scenarios: a pipeline per test, and the ledger every scenario ends with.

Each scenario drives the Procfile's real processes (intake, worker, beat) against a
private redis-server, moto's server and the sandbox (``LocalPipeline``), breaks something,
and then counts, from what the pipeline left behind rather than from what it says:

- ``uploads``: hash-file writes the scenario made (a key written twice counts twice);
- ``results``: uploads with a result in Redis, counted per distinct item recorded
  (``result_recorded`` events in the worker log; a repeat of the same item logs
  ``result_repeat`` instead) where a key was written more than once;
- ``matches``, ``quarantined`` (matched content versions with a copy in the quarantine
  bucket, or tagged ``quarantined`` in tag mode) and ``reports`` (documents in the
  reports bucket);
- ``lost``: uploads without a result — must be 0;
- ``wrong``: uploads whose verdict is not the one the scenario expects (``match`` for a
  known hash, ``clean`` for another, ``unscannable`` for what cannot be scanned) — must be
  0;
- ``duplicated``: a second distinct result for one upload, a second quarantine copy or a
  second report for one matched content version — must be 0;
- ``dead_letters`` by reason, and ``verdicts_s``: from the (last) fault until every upload
  has its verdict (the last result recorded);
- ``logged``: the uploads' results in the verdict log in the object store, once the
  staging area has drained (each result once, by item id); ``unlogged``: results recorded
  (logged by the worker, or held in Redis) that are not in it — must be 0; ``miscounted``:
  how far ``edgematch verdicts``, run as an operator would, is from the distinct results
  in the log — must be 0.

Each run writes its ledger to ``tests/chaos/results/latest-run.json`` (not tracked: a test
run leaves the work tree clean); the committed ``ledger.json``, whose table docs/reliability.md
shows, is refreshed deliberately with
``EDGEMATCH_LEDGER_FILE=tests/chaos/results/ledger.json scripts/test tests/chaos``. One
entry per test, replaced when the test runs again; ``python tests/chaos/ledger.py FILE``
prints the table.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from devtools.localstack import LocalPipeline
from tests.support.pipelines import dead_letters, log_events

RESULTS_FILE = Path(
    os.environ.get("EDGEMATCH_LEDGER_FILE")
    or Path(__file__).resolve().parent / "results" / "latest-run.json"
)
SOURCE_VERSION_META = "edgematch-source-version-id"


@dataclass
class Ledger:
    """What one scenario uploaded and what became of it. ``lost``, ``wrong`` and
    ``duplicated`` must be 0."""

    scenario: str
    uploads: int
    results: int
    matches: int
    quarantined: int
    reports: int
    lost: int
    wrong: int
    duplicated: int
    dead_letters: dict[str, int]
    verdicts_s: float | None
    elapsed_s: float
    logged: int = 0
    unlogged: int = 0
    miscounted: int = 0
    notes: str = ""
    #: The broker the scenario ran on: ``redis`` or ``rabbitmq`` (the ledger's columns).
    broker: str = "redis"
    lost_keys: list[str] = field(default_factory=list)
    wrong_what: list[str] = field(default_factory=list)
    duplicated_what: list[str] = field(default_factory=list)
    dead_letter_samples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def recorded_events(pipe: LocalPipeline) -> list[dict[str, Any]]:
    """Every ``result_recorded`` event in the worker log (one per distinct scanned item)."""
    return log_events(pipe, "result_recorded")


def _stored_results(pipe: LocalPipeline, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    client = redis.Redis.from_url(pipe.redis.url)
    found: dict[str, dict[str, Any]] = {}
    try:
        for key in keys:
            raw = client.get(pipe.keys.result(pipe.bucket, key))
            if raw is not None:
                found[key] = json.loads(raw)
    finally:
        client.close()
    return found


#: How long the verdict log may take to drain: a flush interval, and a batch whose flusher
#: was killed mid-write waiting out its lease (pipeline/verdictlog.py), and some.
LOG_DRAIN_S = 100.0


def _verdict_log(pipe: LocalPipeline) -> list[dict[str, Any]]:
    """Every line of the verdict log, once nothing waits to be written to it."""
    client = redis.Redis.from_url(pipe.redis.url)
    keys = pipe.keys

    def drained() -> bool:
        return client.llen(keys.log_staged) == 0 and client.zcard(keys.log_leases) == 0

    try:
        deadline = time.monotonic() + LOG_DRAIN_S
        while not drained():
            assert time.monotonic() < deadline, "the verdict log did not drain"
            time.sleep(0.2)
    finally:
        client.close()
    return pipe.verdict_log()


def _counted(pipe: LocalPipeline, since: float) -> int:
    """What ``edgematch verdicts --json`` counts of the results scanned since ``since``."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgematch.ops.cli",
            "verdicts",
            "--json",
            "--since",
            f"{int(time.time() - since) + 1}s",
        ],
        env=pipe.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(json.loads(done.stdout)["results"])


def _quarantine_copies(
    pipe: LocalPipeline, matched: Iterable[tuple[str, str, str | None]]
) -> dict[tuple[str, str, str | None], int]:
    """Copies in the quarantine bucket per matched content version (bucket, key, version)."""
    assert pipe.quarantine_bucket is not None
    s3 = pipe.s3()
    copies: dict[tuple[str, str, str | None], int] = {}
    for bucket, key, version in matched:
        target = f"{bucket}/{key}"
        listing = s3.list_object_versions(Bucket=pipe.quarantine_bucket, Prefix=target)
        count = 0
        for entry in listing.get("Versions", []):
            if entry["Key"] != target:
                continue
            head = s3.head_object(
                Bucket=pipe.quarantine_bucket, Key=target, VersionId=entry["VersionId"]
            )
            if version is None or head["Metadata"].get(SOURCE_VERSION_META) == version:
                count += 1
        copies[(bucket, key, version)] = count
    return copies


def _tagged_quarantined(pipe: LocalPipeline, bucket: str, key: str, version: str | None) -> bool:
    extra = {"VersionId": version} if version else {}
    try:
        tags = pipe.s3().get_object_tagging(Bucket=bucket, Key=key, **extra)["TagSet"]
    except ClientError:
        return False
    return {t["Key"]: t["Value"] for t in tags}.get("edgematch-status") == "quarantined"


#: What a scenario expects of its uploads: hash key → the verdict of each write of it, in
#: any order (one string for a key written once).
Expected = Mapping[str, str | Sequence[str]]


def expect(uploads: Iterable[str], matches: Iterable[str] = ()) -> dict[str, str]:
    """``match`` for the keys in ``matches`` (known hashes), ``clean`` for the others."""
    known = set(matches)
    return {key: "match" if key in known else "clean" for key in uploads}


def _wrong(
    expected: Expected,
    events: list[dict[str, Any]],
    stored: Mapping[str, dict[str, Any]],
) -> list[str]:
    """Uploads given a verdict other than the expected one (a missing one is lost, not
    wrong). A key written once is judged by its stored result; one written more often by
    the verdicts recorded for its distinct items."""
    wrong: list[str] = []
    for key, want in expected.items():
        wanted = Counter([want] if isinstance(want, str) else list(want))
        if sum(wanted.values()) == 1:
            got = Counter([stored[key]["verdict"]] if key in stored else [])
        else:
            got = Counter(str(e.get("verdict")) for e in events if e.get("key") == key)
        right = sum((wanted & got).values())
        for _ in range(min(sum(got.values()), sum(wanted.values())) - right):
            wrong.append(f"{key}: {dict(got)} for {dict(wanted)}")
    return wrong


def measure(
    pipe: LocalPipeline,
    scenario: str,
    uploads: Iterable[str],
    *,
    fault_end: float | None,
    started: float,
    expected: Expected,
    notes: str = "",
) -> Ledger:
    """Count what became of ``uploads`` (hash keys in ``pipe.bucket``; repeat a key per write).

    ``fault_end`` and ``started`` are ``time.time()`` values: when the (last) fault ended
    (None when the scenario has no single end) and when the scenario began. ``expected``
    names every upload's verdict.
    """
    counts = Counter(list(uploads))
    assert set(expected) == set(counts), "every upload needs its expected verdict"
    events = [e for e in recorded_events(pipe) if e.get("bucket") == pipe.bucket]
    recorded = Counter(e["key"] for e in events if e.get("key") in counts)
    stored = _stored_results(pipe, counts)
    lost_keys: list[str] = []
    duplicated_what: list[str] = []
    results = lost = 0
    for key, want in counts.items():
        # Redis holds the latest result of a key; the log counts distinct items recorded
        # (a worker killed between recording and logging leaves only a result_repeat line).
        got = max(recorded[key], 1) if key in stored else 0
        results += min(got, want)
        lost += max(0, want - got)
        if got < want:
            lost_keys.append(key)
        if got > want:
            duplicated_what.append(f"{got} results for {want} upload(s) of {key}")

    matched = {
        (e["bucket"], e.get("content_key") or e["key"].removesuffix(".bin"))
        for e in events
        if e.get("verdict") == "match" and e.get("key") in counts
    }
    match_docs = [d for d in stored.values() if d.get("verdict") == "match"]
    matched |= {(d["content_bucket"], d["content_key"]) for d in match_docs}
    versions = {
        (d["content_bucket"], d["content_key"], d.get("content_version_id")) for d in match_docs
    }
    # A content key matched in two versions: the stored result names only the latest;
    # the quarantine copies' metadata name each one.
    for bucket, key in matched:
        if not any(v[0] == bucket and v[1] == key for v in versions):
            versions.add((bucket, key, None))
    quarantined = 0
    if pipe.quarantine_bucket:
        copies = _quarantine_copies(pipe, versions)
        by_key = Counter((b, k) for (b, k, _v) in versions)
        for (bucket, key, version), count in copies.items():
            quarantined += 1 if count else 0
            # Two versions of one key matched: count each version's copy, not the key's.
            allowed = 1 if version is not None or by_key[(bucket, key)] == 1 else count
            if count > allowed:
                duplicated_what.append(f"{count} quarantine copies of {bucket}/{key}@{version}")
    else:
        quarantined = sum(_tagged_quarantined(pipe, *v) for v in versions)

    reports = pipe.reports()
    per_version = Counter(
        (r["content"]["bucket"], r["content"]["key"], r["content"].get("version_id"))
        for r in reports
    )
    per_id = Counter(r["report_id"] for r in reports)
    for (bucket, key, version), n in per_version.items():
        if n > 1:
            duplicated_what.append(f"{n} reports for {bucket}/{key}@{version}")
    duplicated_what += [f"{n} reports with id {rid}" for rid, n in per_id.items() if n > 1]

    wrong_what = _wrong(expected, events, stored)
    last = max((float(d.get("recorded_at", 0.0)) for d in stored.values()), default=None)
    verdicts_s = None
    if fault_end is not None and last is not None:
        verdicts_s = round(max(0.0, last - fault_end), 1)
    # The verdict log holds every result recorded, and the operator's count counts each once.
    lines = _verdict_log(pipe)
    in_log = {str(line["item_id"]) for line in lines}
    recorded_items = {str(e["item_id"]) for e in events if e.get("item_id")}
    recorded_items |= {str(d["item_id"]) for d in stored.values()}
    unlogged = sorted(recorded_items - in_log)
    logged = len({str(line["item_id"]) for line in lines if line.get("key") in counts})
    oldest = min((float(line["scanned_at"]) for line in lines), default=started)
    miscounted = abs(_counted(pipe, min(oldest, started) - 60) - len(in_log))
    entries = dead_letters(pipe)
    letters = Counter(entry["reason"] for entry in entries)
    samples = [
        {
            "task": str(e.get("task")),
            "key": str(e.get("key")),
            "reason": str(e["reason"]),
            "message": str(e.get("message"))[:200],
        }
        for e in entries
    ]
    return Ledger(
        scenario=scenario,
        uploads=sum(counts.values()),
        results=results,
        matches=len(versions),
        quarantined=quarantined,
        reports=len(reports),
        lost=lost,
        wrong=len(wrong_what),
        duplicated=len(duplicated_what),
        dead_letters=dict(sorted(letters.items())),
        verdicts_s=verdicts_s,
        elapsed_s=round(time.time() - started, 1),
        logged=logged,
        unlogged=len(unlogged),
        miscounted=miscounted,
        broker="rabbitmq" if pipe.broker_url else "redis",
        notes=notes + (f" unlogged: {', '.join(unlogged[:10])}" if unlogged else ""),
        lost_keys=sorted(lost_keys)[:20],
        wrong_what=wrong_what[:20],
        duplicated_what=duplicated_what[:20],
        dead_letter_samples=sorted(samples, key=lambda d: (d["reason"], d["key"]))[:20],
    )


def write_ledger(ledger: Ledger, test_id: str, path: Path = RESULTS_FILE) -> None:
    """Put ``ledger`` in the results file under ``test_id`` (the test's name), replacing the
    test's earlier entry, so that renaming a scenario does not leave its old row behind.

    Scenarios run side by side on pytest-xdist workers, and another run (an engineer's
    scripts/test) may write the file too: each read-modify-write holds a lock on the results
    directory, and the file is replaced whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            book: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            book = {}
        entries = book.get("scenarios")
        if not isinstance(entries, dict):
            entries = {}
        entries[test_id] = ledger.to_dict()
        book = {
            "schema": "edgematch.chaos-ledger/v1",
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "scenarios": entries,
        }
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(book, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        os.close(folder)  # and with it the lock


# --- fixtures ------------------------------------------------------------------------------

RecordLedger = Callable[..., dict[str, Any]]


@pytest.fixture
def record_ledger(request: pytest.FixtureRequest) -> Iterator[RecordLedger]:
    """Measure a scenario's ledger, write it to the results file, and return it as a dict.

    ``record_ledger(pipe, scenario, uploads, fault_end=..., matches=..., notes=...)``: every
    upload is expected ``clean`` but those in ``matches`` (``match``), unless ``expected``
    names each upload's verdict. The scenario's start is when the test began. Every
    scenario's promise is checked here, after the row is written, so no test can forget
    one: lost, wrong verdicts and duplicated effects are 0, every result recorded is in the
    verdict log and ``edgematch verdicts`` counts each once. The test asserts the rest on
    what comes back.
    """
    started = time.time()

    def record(
        pipe: LocalPipeline,
        scenario: str,
        uploads: Iterable[str],
        *,
        fault_end: float | None,
        matches: Iterable[str] = (),
        expected: Expected | None = None,
        notes: str = "",
    ) -> dict[str, Any]:
        uploads = list(uploads)
        ledger = measure(
            pipe,
            scenario,
            uploads,
            fault_end=fault_end,
            started=started,
            expected=expected if expected is not None else expect(uploads, matches),
            notes=notes,
        )
        write_ledger(ledger, request.node.name)
        row = ledger.to_dict()
        assert (ledger.lost, ledger.wrong, ledger.duplicated) == (0, 0, 0), row
        assert (ledger.unlogged, ledger.miscounted) == (0, 0), row
        return row

    yield record
