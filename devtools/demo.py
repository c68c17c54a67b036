"""``scripts/demo`` (``python -m devtools.demo``): the whole pipeline on this machine, from
upload to quarantine and report.

Starts a private Redis, moto's S3 and SQS (the bucket's notifications go to the queue; a
quarantine bucket with Object Lock and a reports bucket beside it), the PhotoDNA sandbox
and the Procfile's processes (with ``intake="webhook"``: ``edgematch webhook`` in place of
intake, and each upload's notification POSTed to it in MinIO's shape, not sent to SQS);
uploads content objects and their hash files (a few of them known hits); prints each
result as it arrives, each matched upload as it leaves the upload bucket for quarantine,
each report as it is written, and a summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

import httpx

from devtools.devstack import free_port
from devtools.localstack import LocalPipeline

HASH_SIZE = 924
QUARANTINE_BUCKET = "quarantine"


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(
    *, uploads: int, matches: int, rate: float, timeout_s: float, intake: str = "sqs"
) -> int:
    if uploads < 1 or not 0 <= matches <= uploads:
        print(
            "edgematch demo: need --uploads >= 1 and 0 <= --matches <= --uploads", file=sys.stderr
        )
        return 2
    started = time.monotonic()
    _say(f"edgematch demo: {uploads} uploads, {matches} known hits, API limit {rate:g} requests/s")
    with LocalPipeline(rate=rate, quarantine_bucket=QUARANTINE_BUCKET, intake=intake) as pipe:
        door = "webhook" if intake == "webhook" else "intake"
        _say(f"  redis      {pipe.redis.url} (private)")
        _say(f"  moto       {pipe.moto.url} ({_announced(pipe)})")
        _say(
            f"             quarantine bucket '{QUARANTINE_BUCKET}' (Object Lock), "
            f"reports bucket '{pipe.reports_bucket}'"
        )
        _say(f"  sandbox    {pipe.sandbox.url}")
        metrics_port = free_port()
        pipe.start_processes(
            door,
            "worker",
            "beat",
            worker_args=["--concurrency", "2", "--metrics-port", str(metrics_port)],
        )
        _say(f"  processes  {door}, worker (2 processes), beat — logs in " + str(pipe.dir))
        _say(f"  metrics    http://127.0.0.1:{metrics_port}/metrics (the worker pool's)")

        hashes = {f"photos/img-{i:03d}.jpg.bin": os.urandom(HASH_SIZE) for i in range(uploads)}
        hit_keys = sorted(hashes)[:: max(1, uploads // max(1, matches))][:matches]
        pipe.add_known(hashes[k] for k in hit_keys)
        _say(f"\nuploading {uploads} images and their hash files …")
        for key, data in hashes.items():
            pipe.upload(key, data, content=b"\xff\xd8 not really a jpeg " + os.urandom(16))
        _say("waiting for results, quarantine and reports:\n")

        watch = _Watch(pipe, hashes, started)
        deadline = time.monotonic() + timeout_s
        while not watch.finished() and time.monotonic() < deadline:
            watch.poll()
            time.sleep(0.1)

        _show_metrics(metrics_port)
        return _summary(
            pipe,
            uploads=uploads,
            hit_keys=hit_keys,
            seen=watch.seen,
            moved=watch.moved,
            reports=watch.reports,
            started=started,
        )


def _announced(pipe: LocalPipeline) -> str:
    if pipe.intake == "webhook":
        return (
            f"S3 bucket '{pipe.bucket}'; its notifications POSTed as MinIO sends them "
            f"to {pipe.webhook_url}"
        )
    return f"S3 bucket '{pipe.bucket}' → SQS '{pipe.queue_name}'"


class _Watch:
    """What the demo has seen so far: results, quarantined uploads and reports, each
    printed once as it appears."""

    def __init__(self, pipe: LocalPipeline, hashes: dict[str, bytes], started: float) -> None:
        self._pipe, self._keys, self._started = pipe, list(hashes), started
        self.seen: dict[str, dict[str, Any]] = {}
        self.moved: set[str] = set()
        self.reports: dict[str, dict[str, Any]] = {}

    def finished(self) -> bool:
        matched = sum(d["verdict"] == "match" for d in self.seen.values())
        return len(self.seen) == len(self._keys) and len(self.moved) == len(self.reports) == matched

    def poll(self) -> None:
        self._results()
        self._quarantined()
        if len(self.reports) < len(self.moved):
            self._reports()

    def _elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def _results(self) -> None:
        for key in self._keys:
            doc = None if key in self.seen else self._pipe.result(key)
            if doc is not None:
                self.seen[key] = doc
                _say(_line(doc, self._elapsed_s()))

    def _quarantined(self) -> None:
        pipe = self._pipe
        for doc in self.seen.values():
            content = doc["content_key"]
            if doc["verdict"] != "match" or content in self.moved:
                continue
            target = f"{doc['content_bucket']}/{content}"
            if not pipe.exists(pipe.bucket, content) and pipe.exists(QUARANTINE_BUCKET, target):
                self.moved.add(content)
                _say(
                    f"  {self._elapsed_s():6.1f}s → quarantined "
                    f"s3://{pipe.bucket}/{content} → s3://{QUARANTINE_BUCKET}/{target}"
                )

    def _reports(self) -> None:
        for report in self._pipe.reports():
            if report["report_id"] not in self.reports:
                self.reports[report["report_id"]] = report
                _say(_report_line(report, self._elapsed_s()))


_SHOWN = (
    "edgematch_hashes_scanned_total",
    "edgematch_matches_total",
    "edgematch_api_requests_total",
    "edgematch_api_rate_limited_total",
    "edgematch_batch_size_sum",
    "edgematch_batch_size_count",
    "edgematch_quarantine_total",
    "edgematch_reports_total",
    "edgematch_rate_limit_capacity",
)


def _show_metrics(port: int) -> None:
    """Print the figures an operator would graph, as the worker pool serves them."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError as exc:
        _say(f"\nmetrics: not readable ({type(exc).__name__})")
        return
    _say(f"\nmetrics (http://127.0.0.1:{port}/metrics, excerpt)")
    for line in text.splitlines():
        if line.startswith(_SHOWN) and not line.startswith("#"):
            _say(f"  {line}")


def _summary(
    pipe: LocalPipeline,
    *,
    uploads: int,
    hit_keys: list[str],
    seen: dict[str, dict[str, Any]],
    moved: set[str],
    reports: dict[str, dict[str, Any]],
    started: float,
) -> int:
    elapsed_s = time.monotonic() - started  # to the last report, before the log's flush
    stats = pipe.sandbox_stats()
    verdicts = Counter(doc["verdict"] for doc in seen.values())
    s3 = pipe.s3()
    tagged: Counter[str] = Counter()
    for doc in seen.values():
        if doc["verdict"] == "match":
            continue  # moved away: its tags travelled with the quarantined copy
        tags = s3.get_object_tagging(Bucket=doc["content_bucket"], Key=doc["content_key"])["TagSet"]
        tagged[next((t["Value"] for t in tags if t["Key"] == "edgematch-status"), "untagged")] += 1
    matched = [doc["content_key"] for doc in seen.values() if doc["verdict"] == "match"]
    left = sum(pipe.exists(pipe.bucket, key) for key in matched)
    held = sum(bool(r["evidence"].get("legal_hold")) for r in reports.values())
    statuses = Counter(r["status"] for r in reports.values())
    _say("\nsummary")
    _say(
        f"  results    {len(seen)}/{uploads}: "
        + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    )
    _say("  tags       " + ", ".join(f"{n} {v}" for v, n in sorted(tagged.items())))
    _say(
        f"  quarantine {len(moved)} moved to s3://{QUARANTINE_BUCKET} ({held} under legal hold); "
        f"{left} of {len(matched)} matched uploads left in '{pipe.bucket}'"
    )
    _say(
        f"  reports    {len(reports)} in s3://{pipe.reports_bucket}/reports/: "
        + (", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) or "none")
        + " (reporter: record, for human review)"
    )
    _say(
        f"  API        {stats.get('by_http_status', {})} requests by HTTP status; "
        f"files per request {stats.get('files_per_request', {})}"
    )
    logged = _logged(pipe, {doc["item_id"] for doc in seen.values()})
    _say(
        f"  log        {len(logged)}/{len(seen)} results in the verdict log, "
        f"s3://{pipe.reports_bucket}/verdicts/ ({len(set(logged.values()))} objects)"
    )
    _say(f"  elapsed    {elapsed_s:.1f} s")
    missing = uploads - len(seen)
    wrong = [k for k in hit_keys if seen.get(k, {}).get("verdict") != "match"]
    unlogged = len(seen) - len(logged)
    if missing or wrong or left or len(reports) != len(matched) or unlogged:
        _say(
            f"\nFAILED: {missing} results missing, {len(wrong)} known hits not matched, "
            f"{left} matches not quarantined, {len(matched) - len(reports)} reports missing, "
            f"{unlogged} results not in the verdict log"
        )
        return 1
    _say("\nall uploads scanned; every known hit matched, quarantined and reported.")
    _say("  find them again: edgematch reports list; edgematch reports show ID;")
    _say("                   edgematch result s3://BUCKET/KEY; edgematch verdicts --since 1h")
    return 0


def _logged(pipe: LocalPipeline, items: set[str], wait_s: float = 30.0) -> dict[str, str]:
    """Item id -> the log object holding it, for the ``items`` in the verdict log, waiting a
    flush interval or two for the last ones."""
    deadline = time.monotonic() + wait_s
    while True:
        found = {d["item_id"]: d["_object"] for d in pipe.verdict_log() if d["item_id"] in items}
        if len(found) == len(items) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _line(doc: dict[str, Any], elapsed_s: float) -> str:
    verdict = doc["verdict"]
    mark = {"clean": "  clean      ", "match": "! MATCH      ", "unscannable": "? unscannable"}.get(
        verdict, verdict
    )
    detail = ""
    if verdict == "match":
        detail = f"  match ids {', '.join(doc['match_ids'])}  sources {', '.join(doc['sources'])}"
    elif verdict == "unscannable":
        detail = f"  {doc.get('reason')}"
    return f"  {elapsed_s:6.1f}s {mark} s3://{doc['content_bucket']}/{doc['content_key']}{detail}"


def _report_line(report: dict[str, Any], elapsed_s: float) -> str:
    evidence = report.get("evidence") or {}
    held = ", evidence under legal hold" if evidence.get("legal_hold") else ""
    return (
        f"  {elapsed_s:6.1f}s ✎ report      {report['status']} ({report['reporter']}{held}) "
        f"{report['key']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Run the whole pipeline locally and scan a set of uploads.",
    )
    parser.add_argument(
        "--uploads", type=int, default=24, help="hash files to upload (default: %(default)s)"
    )
    parser.add_argument(
        "--matches",
        type=int,
        default=4,
        help="how many of them are known hits (default: %(default)s)",
    )
    parser.add_argument(
        "--rate", type=float, default=5.0, help="sandbox requests per second (default: %(default)s)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for every result"
    )
    parser.add_argument(
        "--intake",
        choices=("sqs", "webhook"),
        default="sqs",
        help="how uploads are announced: S3 notifications to SQS read by `edgematch intake`, "
        "or MinIO-shaped notifications POSTed to `edgematch webhook` (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    return run_demo(
        uploads=args.uploads,
        matches=args.matches,
        rate=args.rate,
        timeout_s=args.timeout,
        intake=args.intake,
    )


if __name__ == "__main__":
    raise SystemExit(main())
