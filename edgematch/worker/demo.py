"""``edgematch demo``: the whole pipeline on this machine, from upload to verdict.

Starts a private Redis, moto's S3 and SQS (the bucket's notifications go to the queue),
the PhotoDNA sandbox and the Procfile's processes; uploads content objects and their hash
files (a few of them known hits); prints each result as it arrives and a summary.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any

from edgematch.worker.localstack import LocalPipeline

HASH_SIZE = 924


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(*, uploads: int, matches: int, rate: float, timeout_s: float) -> int:
    if uploads < 1 or not 0 <= matches <= uploads:
        print(
            "edgematch demo: need --uploads >= 1 and 0 <= --matches <= --uploads", file=sys.stderr
        )
        return 2
    started = time.monotonic()
    _say(f"edgematch demo: {uploads} uploads, {matches} known hits, API limit {rate:g} requests/s")
    with LocalPipeline(rate=rate) as pipe:
        _say(f"  redis      {pipe.redis.url} (private)")
        _say(f"  moto       {pipe.moto.url} (S3 bucket '{pipe.bucket}' → SQS '{pipe.queue_name}')")
        _say(f"  sandbox    {pipe.sandbox.url}")
        pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
        _say("  processes  intake, worker (2 processes), beat — logs in " + str(pipe.dir))

        hashes = {f"photos/img-{i:03d}.jpg.bin": os.urandom(HASH_SIZE) for i in range(uploads)}
        hit_keys = sorted(hashes)[:: max(1, uploads // max(1, matches))][:matches]
        pipe.add_known(hashes[k] for k in hit_keys)
        _say(f"\nuploading {uploads} images and their hash files …")
        for key, data in hashes.items():
            pipe.upload(key, data, content=b"\xff\xd8 not really a jpeg " + os.urandom(16))
        _say("waiting for results:\n")

        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(seen) < uploads and time.monotonic() < deadline:
            for key in hashes:
                if key in seen:
                    continue
                doc = pipe.result(key)
                if doc is None:
                    continue
                seen[key] = doc
                _say(_line(doc, time.monotonic() - started))
            time.sleep(0.1)

        stats = pipe.sandbox_stats()
        verdicts = Counter(doc["verdict"] for doc in seen.values())
        s3 = pipe.s3()
        tagged: Counter[str] = Counter()
        for doc in seen.values():
            tags = s3.get_object_tagging(Bucket=doc["content_bucket"], Key=doc["content_key"])[
                "TagSet"
            ]
            tagged[
                next((t["Value"] for t in tags if t["Key"] == "edgematch-status"), "untagged")
            ] += 1
        missing = uploads - len(seen)
        wrong = [k for k in hit_keys if seen.get(k, {}).get("verdict") != "match"]
        _say("\nsummary")
        _say(
            f"  results    {len(seen)}/{uploads}: "
            + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        )
        _say("  tags       " + ", ".join(f"{n} {v}" for v, n in sorted(tagged.items())))
        _say(
            f"  API        {stats.get('by_http_status', {})} requests by HTTP status; "
            f"files per request {stats.get('files_per_request', {})}"
        )
        _say(f"  elapsed    {time.monotonic() - started:.1f} s")
        if missing or wrong:
            _say(f"\nFAILED: {missing} results missing, {len(wrong)} known hits not matched")
            return 1
        _say("\nall uploads scanned; every known hit matched.")
        return 0


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
