"""Issue 8's figures: live uploads with and without a backfill backlog on the quota.

``.venv/bin/python -m bench.lanes`` (about 4 minutes; writes bench/results/lanes.json).

The real pipeline (the Procfile's intake, worker ``--concurrency N`` and beat, on one private
Redis, moto and the sandbox at R requests/s), two phases of live uploads at ``--live-rate``
per second for ``--live-s`` seconds each:

a. **live alone**, on an idle pipeline;
b. **live under a backlog** that saturates the quota, made of two parts:

   * ``--backfill-objects`` hash files (and their content objects) put into a second bucket
     that has no notifications, then ``edgematch backfill s3://<bucket>/`` run as a
     subprocess with the pipeline's environment: the real backfill path (listing, ingest
     tasks on the background queue, the ``backfill`` lane);
   * ``--seed`` items pushed straight into the batch buffer on the ``backfill`` lane
     (``BatchBuffer.push(Item.new(..., lane="backfill"), identity)``), because on a small
     machine ingest cannot feed the match step anywhere near 5 x R hashes/s, and the
     question is how the match step shares a *saturated* quota.

Live latency is from the end of the hash file's upload to the result's ``recorded_at``
(and, also reported, to ``scanned_at``). The backfill's throughput is the number of
backfill-lane results whose ``scanned_at`` falls in the live window of phase b, over the
window; its share is that over the quota live traffic leaves, 5 x R - live hashes/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.edgematch_runs import EdgematchProcesses
from bench.measure import percentile
from bench.stack import HASH_BYTES, Stack

RESULTS = Path(__file__).resolve().parent / "results"
BACKLOG_BUCKET = "backlog"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.lanes", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=10.0, help="API requests per second (R)")
    p.add_argument("--workers", type=int, default=2, help="worker --concurrency")
    p.add_argument("--live-rate", type=float, default=2.0, help="live uploads per second")
    p.add_argument("--live-s", type=float, default=30.0, help="seconds of live uploads a phase")
    p.add_argument("--backfill-objects", type=int, default=300, help="objects for the CLI")
    p.add_argument(
        "--seed",
        type=int,
        default=4700,
        help="backfill items pushed to the buffer (with the CLI's objects: the issue's 5,000)",
    )
    p.add_argument("--drain-s", type=float, default=180.0, help="cap on waiting for the backlog")
    p.add_argument("--out", type=Path, default=RESULTS / "lanes.json")
    p.add_argument(
        "--keep-logs", type=Path, default=None, metavar="DIR", help="copy every log here"
    )
    return p.parse_args(argv)


def _live(stack: Stack, tag: str, rate: float, seconds: float) -> dict[str, Any]:
    """Upload at ``rate`` per second for ``seconds``; latencies once every result is in."""
    s3 = stack.pipe.s3()
    uploaded: dict[str, float] = {}
    n = int(rate * seconds)
    start = time.monotonic()
    t0 = time.time()
    for i in range(n):
        key = f"{tag}/{i}.jpg.bin"
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        stack.upload(s3, key)
        uploaded[key] = time.time()
    t1 = time.time()
    found = stack.wait_results(list(uploaded), deadline=time.monotonic() + 60)
    recorded = [float(found[k]["recorded_at"]) - t for k, t in uploaded.items() if k in found]
    scanned = [float(found[k]["scanned_at"]) - t for k, t in uploaded.items() if k in found]
    lanes = sorted({str(doc.get("lane")) for doc in found.values()})

    def ms(values: list[float], pct: float) -> float:
        return round(1000 * percentile(values, pct), 1) if values else float("nan")

    return {
        "uploads": n,
        "results": len(found),
        "lanes": lanes,
        "window": [t0, t1],
        "hashes_per_s": round(len(found) / (t1 - t0), 3),
        "recorded_p50_ms": ms(recorded, 50),
        "recorded_p99_ms": ms(recorded, 99),
        "recorded_max_ms": ms(recorded, 100),
        "scanned_p50_ms": ms(scanned, 50),
        "scanned_p99_ms": ms(scanned, 99),
    }


def _put_backlog(stack: Stack, keys: list[str]) -> None:
    s3 = stack.pipe.s3()
    s3.create_bucket(Bucket=BACKLOG_BUCKET)  # no notification configuration

    def one(key: str) -> None:
        s3.put_object(Bucket=BACKLOG_BUCKET, Key=key.removesuffix(".bin"), Body=b"old image")
        s3.put_object(Bucket=BACKLOG_BUCKET, Key=key, Body=os.urandom(HASH_BYTES))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, keys))


def _seed(stack: Stack, keys: list[str]) -> None:
    """Backfill-lane items straight into the batch buffer, as ingest would push them."""
    stack.push_items(keys, bucket=BACKLOG_BUCKET, lane="backfill", env=stack.pipe.env())


def _results(stack: Stack, bucket: str, keys: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    rk = stack.pipe.keys
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        values = stack.redis.mget([rk.result(bucket, k) for k in chunk])
        docs.extend(json.loads(v) for v in values if v is not None)
    return docs


def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = Stack(args.rate).start()
    try:
        procs = EdgematchProcesses(stack, workers=args.workers, env={}, tag="lanes").start()
        stack.sandbox_reset()
        alone = _live(stack, "lanes/alone", args.live_rate, args.live_s)
        alone_sandbox = stack.sandbox_stats()

        cli_keys = [f"old/cli/{i:05d}.jpg.bin" for i in range(args.backfill_objects)]
        seed_keys = [f"old/seed/{i:05d}.jpg.bin" for i in range(args.seed)]
        _put_backlog(stack, cli_keys)
        stack.sandbox_reset()
        _seed(stack, seed_keys)
        backfill = subprocess.Popen(
            [str(Path(sys.executable).parent / "edgematch"), "backfill", f"s3://{BACKLOG_BUCKET}/"],
            env=stack.pipe.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        time.sleep(2.0)  # the backlog is on the quota before the live uploads start
        under = _live(stack, "lanes/under", args.live_rate, args.live_s)
        under_sandbox = stack.sandbox_stats()
        backfill_out, _ = backfill.communicate(timeout=120)
        t0, t1 = under["window"]
        # Every backfill result recorded (or the cap), so none scanned in the window is missed.
        all_keys = cli_keys + seed_keys
        drain_deadline = time.monotonic() + args.drain_s
        docs = _results(stack, BACKLOG_BUCKET, all_keys)
        while len(docs) < len(all_keys) and time.monotonic() < drain_deadline:
            time.sleep(1.0)
            docs = _results(stack, BACKLOG_BUCKET, all_keys)
        in_window = [d for d in docs if t0 <= float(d["scanned_at"]) <= t1]
        cli_set = {f"old/cli/{i:05d}.jpg.bin" for i in range(args.backfill_objects)}
        window_s = t1 - t0
        backfill_per_s = len(in_window) / window_s
        quota_left = 5 * args.rate - under["hashes_per_s"]
        procs.stop()
        return {
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "cores": os.cpu_count(),
            "rate": args.rate,
            "workers": args.workers,
            "live_rate": args.live_rate,
            "live_s": args.live_s,
            "backlog": {
                "cli_objects": args.backfill_objects,
                "seeded_items": args.seed,
                "cli_exit": backfill.returncode,
                "cli_output_tail": backfill_out.decode(errors="replace")[-400:],
                "lanes": sorted({str(d.get("lane")) for d in docs}),
                "recorded_total": len(docs),
                "drained": len(docs) == len(all_keys),
                "scanned_cli": sum(d["key"] in cli_set for d in docs),
                "scanned_in_window": len(in_window),
                "scanned_in_window_cli": sum(d["key"] in cli_set for d in in_window),
            },
            "alone": {**alone, "sandbox": alone_sandbox},
            "under_backlog": {**under, "sandbox": under_sandbox},
            "p50_increase_ms": round(under["recorded_p50_ms"] - alone["recorded_p50_ms"], 1),
            "p99_increase_ms": round(under["recorded_p99_ms"] - alone["recorded_p99_ms"], 1),
            "request_interval_ms": round(1000 / args.rate, 1),
            "quota_left_hashes_per_s": round(quota_left, 3),
            "backfill_hashes_per_s": round(backfill_per_s, 3),
            "backfill_share": round(backfill_per_s / quota_left, 4),
        }
    finally:
        if args.keep_logs is not None:
            shutil.copytree(stack.pipe.dir, args.keep_logs, dirs_exist_ok=True)
        stack.close()


def table(r: dict[str, Any]) -> str:
    a, u = r["alone"], r["under_backlog"]
    rows = [
        "| phase | live p50 / p99 ms (recorded_at) | p50 / p99 ms (scanned_at) | live hashes/s |"
        " 429s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, p in (("live alone", a), ("live + backfill backlog", u)):
        s429 = p["sandbox"]["by_http_status"].get("429", 0)
        rows.append(
            f"| {name} | {p['recorded_p50_ms']} / {p['recorded_p99_ms']} |"
            f" {p['scanned_p50_ms']} / {p['scanned_p99_ms']} | {p['hashes_per_s']} | {s429} |"
        )
    rows.append("")
    rows.append(
        f"p99 increase {r['p99_increase_ms']} ms (target <= {r['request_interval_ms']} ms); "
        f"backfill {r['backfill_hashes_per_s']} hashes/s of {r['quota_left_hashes_per_s']} left "
        f"= {100 * r['backfill_share']:.1f} % (target >= 90 %)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
