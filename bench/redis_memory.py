"""Issue 14's figures: what Redis holds per scanned hash, and the verdict log's PUTs.

``.venv/bin/python -m bench.redis_memory`` (about 4 minutes; writes
bench/results/redis-memory.json, .md and .png).

The Procfile's intake, worker ``--concurrency N`` and beat on the default settings, one
private Redis, moto and the sandbox at R requests/s. ``--hashes`` uploads (content object and
hash file, every ``--known-every``-th a known hit) are made while intake is stopped, so their
events wait in SQS; intake is started and the run lasts until every result is recorded and
the verdict log has every one. Then, with the pipeline idle:

* **per scanned hash**: every key in Redis by kind (``devtools.localstack.PER_HASH_KEYS``:
  idempotency keys, recorded results, content pointers, "recorded once" markers; the
  per-match kinds apart), its bytes (``MEMORY USAGE``) and longest TTL, over the hashes
  scanned; and ``used_memory`` before and after, over the same count (which adds Redis's
  dictionaries and expiry entries);
* **steady state at the ceiling** (5 × R hashes/s) for R = 5 and R = 10: each kind's bytes
  per hash × hashes a second × its window (the TTL setting it is written with), summed,
  scaled by used_memory over ``MEMORY USAGE``; with the release before (1.3 KB a hash held
  90 and 30 days, the issue's table) beside it;
* **the verdict log**: objects (PUTs) written during the run, results per object, bytes,
  and the PUT rate at the ceiling (one per ``EDGEMATCH_VERDICT_LOG_FLUSH_S`` — the flush
  writes what is staged, however much).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.edgematch_runs import EdgematchProcesses
from bench.stack import HASH_BYTES, Stack
from devtools.localstack import PER_HASH_KEYS, PER_MATCH_KEYS, KeyKind
from edgematch.config.settings import Settings

RESULTS = Path(__file__).resolve().parent / "results"
GB = 1e9
DAY_S = 86_400
#: The release before the verdict log (issue 14's table): bytes a hash, and how long held.
BEFORE = {"result": (984, 90 * DAY_S), "result-content": (136, 90 * DAY_S),
          "seen": (184, 30 * DAY_S)}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.redis_memory", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--rate", type=float, default=10.0, help="API requests per second (R)")
    p.add_argument("--workers", type=int, default=2, help="worker --concurrency")
    p.add_argument(
        "--hashes",
        type=int,
        default=1000,
        help="uploads in the run (enough that used_memory's own noise, some hundred KB, is "
        "small beside them)",
    )
    p.add_argument("--known-every", type=int, default=20, help="every Nth upload is a hit")
    p.add_argument("--out", type=Path, default=RESULTS / "redis-memory.json")
    return p.parse_args(argv)


def windows(settings: Settings) -> dict[str, int]:
    """Seconds each TTL setting keeps a key, on ``settings``."""
    return {
        "EDGEMATCH_IDEMPOTENCY_TTL_S": settings.idempotency_ttl_s,
        "EDGEMATCH_RESULT_TTL_S": settings.result_ttl_s,
        "EDGEMATCH_MATCH_CACHE_TTL_S": settings.match_cache_ttl_s,
    }


def steady_state(per_hash: dict[str, float], window_s: dict[str, int], *, rate: float) -> float:
    """Bytes Redis holds under a saturated load at ``rate`` requests/s (5 hashes each): each
    kind's bytes a hash × hashes a second × its window. Pure."""
    hashes_per_s = 5 * rate
    return sum(per_hash[kind] * hashes_per_s * window_s[PER_HASH_KEYS[kind]] for kind in per_hash)


def _used_memory(stack: Stack) -> int:
    return int(stack.redis.client.info("memory")["used_memory"])


def _drained(stack: Stack) -> bool:
    keys = stack.pipe.keys
    client = stack.redis.client
    return client.llen(keys.log_staged) == 0 and client.zcard(keys.log_leases) == 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = Settings()
    stack = Stack(args.rate).start()
    try:
        procs = EdgematchProcesses(stack, workers=args.workers, env={}, tag="mem").start()
        # Idle after the warm-up: what the pipeline holds whatever it scanned.
        _wait(lambda: _drained(stack), 60, "the warm-up in the log")
        before_kinds = stack.pipe.redis_footprint()
        before_used = _used_memory(stack)
        before_objects = {doc["_object"] for doc in stack.pipe.verdict_log()}

        keys = [f"mem/run/{i:05d}.jpg.bin" for i in range(args.hashes)]
        known = {k for i, k in enumerate(keys) if i % args.known_every == 0}
        hits = {k: os.urandom(HASH_BYTES) for k in known}
        stack.pipe.add_known(hits.values())
        assert stack.pipe.processes is not None
        stack.pipe.processes.stop("intake")
        stack.upload_many(keys, data=hits.get)
        started = time.time()
        procs._start_intake()
        found = stack.wait_results(keys, deadline=time.monotonic() + 600)
        if len(found) != len(keys):
            raise RuntimeError(f"{len(found)}/{len(keys)} results")
        recorded = max(float(doc["recorded_at"]) for doc in found.values())
        items = {doc["item_id"] for doc in found.values()}
        _wait(
            lambda: items <= {d["item_id"] for d in stack.pipe.verdict_log()},
            120,
            "every result in the verdict log",
        )
        in_log = time.time()
        _wait(lambda: _drained(stack), 60, "the staging area empty")
        lines = [d for d in stack.pipe.verdict_log() if d["_object"] not in before_objects]
        after_kinds = stack.pipe.redis_footprint()
        after_used = _used_memory(stack)
        procs.stop()
    finally:
        stack.close()
    return figures(
        args,
        defaults,
        before=before_kinds,
        after=after_kinds,
        used=(before_used, after_used),
        lines=lines,
        times={"started": started, "recorded": recorded, "in_log": in_log},
        matches=len(known),
    )


def figures(
    args: argparse.Namespace,
    defaults: Settings,
    *,
    before: dict[str, KeyKind],
    after: dict[str, KeyKind],
    used: tuple[int, int],
    lines: list[dict[str, Any]],
    times: dict[str, float],
    matches: int,
) -> dict[str, Any]:
    n = args.hashes
    window_s = windows(defaults)
    kinds: dict[str, Any] = {}
    for kind in (*PER_HASH_KEYS, *PER_MATCH_KEYS, "other"):
        a, b = after.get(kind, KeyKind()), before.get(kind, KeyKind())
        kinds[kind] = {
            "keys": a.count - b.count,
            "bytes": a.bytes - b.bytes,
            "max_ttl_s": a.max_ttl_s,
            "window": PER_HASH_KEYS.get(kind) or PER_MATCH_KEYS.get(kind),
        }
    every = (*PER_HASH_KEYS, *PER_MATCH_KEYS, "other")
    memory_usage = sum(kinds[k]["bytes"] for k in every)
    used_delta = used[1] - used[0]
    # MEMORY USAGE counts a key's name and value; used_memory also the main and expiry
    # dictionaries' entries, the same for every key with a TTL however small: measured here
    # per key added, and charged to each kind by its count of keys.
    keys_added = sum(kinds[k]["keys"] for k in every)
    per_key = max(0.0, (used_delta - memory_usage) / keys_added) if keys_added > 0 else 0.0
    per_hash = {
        kind: (kinds[kind]["bytes"] + per_key * kinds[kind]["keys"]) / n for kind in PER_HASH_KEYS
    }
    objects = Counter(line["_object"] for line in lines)
    run_s = times["recorded"] - times["started"]
    before_per_hash = sum(size for size, _ in BEFORE.values())
    steady = {}
    for rate in (5.0, 10.0):
        steady[f"R={rate:g}"] = {
            "hashes_per_day": int(5 * rate * DAY_S),
            "gb": round(steady_state(per_hash, window_s, rate=rate) / GB, 3),
            "gb_before": round(
                sum(size * 5 * rate * held for size, held in BEFORE.values()) / GB, 1
            ),
        }
    return {
        "date": datetime.date.today().isoformat(),
        "rate": args.rate,
        "workers": args.workers,
        "hashes": n,
        "matches": matches,
        "settings": {
            **window_s,
            "EDGEMATCH_VERDICT_LOG_FLUSH_S": defaults.verdict_log_flush_s,
        },
        "kinds": kinds,
        "per_hash_bytes": {k: round(v, 1) for k, v in per_hash.items()},
        "per_hash_bytes_total": round(sum(per_hash.values()), 1),
        "per_hash_bytes_before": before_per_hash,
        "used_memory_delta_per_hash": round(used_delta / n, 1),
        "used_over_memory_usage": round(used_delta / memory_usage, 3) if memory_usage else None,
        "dictionary_bytes_per_key": round(per_key, 1),
        "memory_usage_per_hash_bytes": {k: round(kinds[k]["bytes"] / n, 1) for k in PER_HASH_KEYS},
        "longest_ttl_per_hash_s": max(kinds[k]["max_ttl_s"] for k in PER_HASH_KEYS),
        "per_match_bytes": {
            k: round(kinds[k]["bytes"] / max(1, kinds[k]["keys"]), 1) for k in PER_MATCH_KEYS
        },
        "steady_state": steady,
        "log": {
            "results": len({line["item_id"] for line in lines}),
            "lines": len(lines),
            "objects": len(objects),
            "results_per_object": round(len(lines) / max(1, len(objects)), 1),
            "run_s": round(run_s, 1),
            "puts_per_s_in_run": round(len(objects) / max(run_s, 1e-9), 3),
            "puts_per_s_at_ceiling": round(1 / defaults.verdict_log_flush_s, 3),
            "results_per_object_at_r10": int(50 * defaults.verdict_log_flush_s),
            "last_result_in_log_after_s": round(times["in_log"] - times["recorded"], 1),
        },
        "timeline": {
            "recorded_s": sorted(
                round(float(line["recorded_at"]) - times["started"], 3) for line in lines
            ),
            "written_s": sorted(round(_taken(o) - times["started"], 3) for o in objects),
        },
    }


def _taken(object_key: str) -> float:
    """When an object's lines were taken for writing, from its name (logpaths.object_key)."""
    stamp = object_key.rsplit("/", 1)[1].split("-", 1)[0]  # 20261122T140512345Z
    moment = datetime.datetime.strptime(stamp[:15], "%Y%m%dT%H%M%S").replace(tzinfo=datetime.UTC)
    return moment.timestamp() + int(stamp[15:18]) / 1000


def _wait(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def table(doc: dict[str, Any]) -> str:
    """The figures as Markdown. Pure."""
    rows = [
        "| key per scanned hash | keys | `MEMORY USAGE` a hash | held a hash | longest TTL "
        "| window |",
        "|---|---:|---:|---:|---:|---|",
    ]
    usage = doc["memory_usage_per_hash_bytes"]
    for kind in PER_HASH_KEYS:
        k = doc["kinds"][kind]
        rows.append(
            f"| `{kind}:` | {k['keys']} | {usage[kind]:.0f} | {doc['per_hash_bytes'][kind]:.0f} | "
            f"{k['max_ttl_s']:,} s | `{k['window']}` |"
        )
    rows.append(
        f"| **all** | | **{sum(usage.values()):.0f}** (before: {doc['per_hash_bytes_before']:,}) "
        f"| **{doc['per_hash_bytes_total']:.0f}** | | |"
    )
    per_match = ", ".join(
        f"`{kind}:` {doc['kinds'][kind]['keys']} ({doc['per_match_bytes'][kind]:.0f} bytes "
        f"each, `{PER_MATCH_KEYS[kind]}`)"
        for kind in PER_MATCH_KEYS
    )
    out = [
        *rows,
        "",
        f"Per match ({doc['matches']} matches): {per_match}. Other keys (queues, buffer, "
        f"limiter, stats): {doc['kinds']['other']['keys']:+d} over the run.",
        f"used_memory grew {doc['used_memory_delta_per_hash']:.0f} bytes a hash: "
        f"{doc['dictionary_bytes_per_key']:.0f} bytes a key beyond `MEMORY USAGE` (Redis's main "
        "and expiry dictionaries), which *held* adds to each key.",
        "",
        "| steady state at the ceiling | hashes a day | Redis | before |",
        "|---|---:|---:|---:|",
    ]
    for rate, s in doc["steady_state"].items():
        out.append(f"| {rate} | {s['hashes_per_day']:,} | {s['gb']:.2f} GB | {s['gb_before']} GB |")
    log = doc["log"]
    out += [
        "",
        f"Verdict log: {log['results']} results in {log['objects']} objects "
        f"({log['results_per_object']} a PUT) over a {log['run_s']} s run, "
        f"{log['puts_per_s_in_run']} PUTs/s; at the ceiling one PUT every "
        f"{doc['settings']['EDGEMATCH_VERDICT_LOG_FLUSH_S']:g} s "
        f"({log['puts_per_s_at_ceiling']} PUTs/s, {log['results_per_object_at_r10']} results an "
        f"object at R = 10); the last result was in the log {log['last_result_in_log_after_s']} s "
        "after it was recorded.",
    ]
    return "\n".join(out)


def plot(doc: dict[str, Any], path: Path) -> bool:
    """Left: Redis held under a saturated load, hour by hour, at R = 5 and 10 (from the
    measured bytes), against 1 GB. Right: the run's results as recorded and as written to
    the verdict log, one PUT a step. False when matplotlib is missing."""
    try:
        import matplotlib  # noqa: PLC0415 - the bench extra, optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    window_s = {k: int(v) for k, v in doc["settings"].items() if k.endswith("_TTL_S")}
    per_hash = doc["per_hash_bytes"]
    hours = [h / 4 for h in range(0, 12 * 4 + 1)]
    fig, (ax, log_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for rate in (5.0, 10.0):
        held = []
        for h in hours:
            t = h * 3600
            total = sum(
                per_hash[kind] * 5 * rate * min(t, window_s[PER_HASH_KEYS[kind]])
                for kind in per_hash
            )
            held.append(total / GB)
        ax.plot(hours, held, label=f"R = {rate:g} requests/s ({5 * rate:g} hashes/s)")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 GB")
    ax.set_xlabel("hours of saturated load")
    ax.set_ylabel("Redis held for scanned hashes (GB)")
    ax.set_title("Redis memory is bounded by the windows")
    ax.legend(loc="lower right")
    ax.set_ylim(bottom=0)
    timeline = doc["timeline"]
    recorded = timeline["recorded_s"]
    log_ax.step(recorded, range(1, len(recorded) + 1), where="post", label="results recorded")
    written = timeline["written_s"]
    in_log = [
        sum(1 for t in recorded if t <= w + 1e-3) for w in written
    ]  # lines of objects taken by then
    log_ax.step([0.0, *written], [0, *in_log], where="post", label="in the verdict log")
    for w in written:
        log_ax.axvline(w, color="grey", linewidth=0.5)
    log_ax.set_xlabel("seconds since the run began (grey: one PUT each)")
    log_ax.set_ylabel("results")
    log_ax.set_title(
        f"{len(written)} PUTs for {len(recorded)} results "
        f"(one per {doc['settings']['EDGEMATCH_VERDICT_LOG_FLUSH_S']:g} s at most)"
    )
    log_ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    text = table(doc)
    args.out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    print(text)
    if plot(doc, args.out.with_suffix(".png")):
        print(f"\nwrote {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
