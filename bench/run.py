"""``python -m bench`` (or ``scripts/bench``): every figure of issue 7 in one run.

For each worker count (default 1, 2, 4, 8) at ``R`` requests per second (default 10):

* edgematch as built: a light load (one upload every 500 ms), then saturated (hashes
  pre-uploaded, their events waiting in SQS);
* edgematch's match step alone: the same worker on the match queue only, with the items
  put straight into the batch buffer, so that only the limiter and the pumps set the pace;
* the fixed-sleep baseline (batches of 5, 100 ms after every call, in every process);
* the one-hash-per-task baseline (Celery's ``rate_limit`` of ``R / workers`` per worker);

then the match step again at other ``EDGEMATCH_RATE_LIMIT_MARGIN`` values. Everything runs on
one private Redis, one moto server and one sandbox, side by side in this one run. Prints a
table, writes ``bench/results/latest.json`` and ``bench/results/utilisation.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench import costs, harness, measure, prices
from bench.baselines.runner import BaselineRun, run_baseline
from bench.edgematch_runs import EdgematchProcesses, LightRun, SaturatedRun
from bench.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
EDGEMATCH, FIXED, RATE_LIMITED = "edgematch", "fixed_sleep", "rate_limited"
#: edgematch's match step alone, fed straight into the batch buffer: only the limiter limits.
MATCH_STEP = "edgematch_match_step"
#: The whole pipeline in runs long enough for a steady-state figure, at each (R, workers).
STEADY = "steady"
#: The steady-state variant whose processes reach S3 and SQS through moto's own server.
CLOSING = "moto closing every connection"
SYSTEMS = (EDGEMATCH, MATCH_STEP, FIXED, RATE_LIMITED, STEADY)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _configs(text: str) -> list[tuple[float, int]]:
    """``5x1,10x2`` → [(5.0, 1), (10.0, 2)]: (R, worker processes)."""
    out = []
    for part in text.split(","):
        if part.strip():
            rate, _, workers = part.strip().partition("x")
            out.append((float(rate), int(workers)))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=_ints, default=[1, 2, 4, 8], help="worker counts")
    p.add_argument("--rate", type=float, default=10.0, help="API requests per second (R)")
    p.add_argument("--hashes", type=int, default=400, help="hashes in each saturated run")
    p.add_argument(
        "--cap-s",
        type=float,
        default=15.0,
        help="a saturated run ends this long after its first answer, done or not",
    )
    p.add_argument(
        "--short-cap-s",
        type=float,
        default=12.0,
        help="the same for the baselines and the match-step runs (their rate is steady sooner)",
    )
    p.add_argument("--light-uploads", type=int, default=20, help="uploads in the light load")
    p.add_argument(
        "--margins",
        type=_floats,
        default=[0.0, 0.05],
        help="extra EDGEMATCH_RATE_LIMIT_MARGIN values to measure (the default 0.02 is in "
        "the main runs)",
    )
    p.add_argument("--margin-workers", type=int, default=4, help="worker count of those runs")
    p.add_argument(
        "--repeats",
        type=float,
        default=0.3,
        help="share of re-uploads (byte-identical hashes scanned before) in the result-cache "
        "run, at --margin-workers workers with EDGEMATCH_CLEAN_CACHE_TTL_S set; 0 skips it",
    )
    p.add_argument(
        "--steady",
        type=_configs,
        default=_configs("5x1,5x2,5x4,10x2,10x4"),
        metavar="RxW,...",
        help="(R, worker processes) of the steady-state runs of the whole pipeline",
    )
    p.add_argument(
        "--steady-hashes",
        type=int,
        default=1100,
        help="hashes in each steady-state run (at least 200 requests after the first second)",
    )
    p.add_argument(
        "--steady-variant",
        action="append",
        default=[],
        metavar="EDGEMATCH_X=V[,EDGEMATCH_Y=W]",
        help="run every steady-state configuration again with these settings too, side by "
        "side in the same run (repeatable), e.g. EDGEMATCH_TAG_CLEAN=off",
    )
    p.add_argument(
        "--moto-closing",
        action="store_true",
        help="run every steady-state configuration again with edgematch's processes talking to "
        "moto's own server, which closes every connection (the benchmark's moto keeps them "
        "open, as S3 and SQS do): what the closing costs, side by side in the same run",
    )
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which systems to run")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="record py-spy profiles of edgematch's processes in saturated runs into DIR",
    )
    p.add_argument(
        "--keep-logs", type=Path, default=None, metavar="DIR", help="copy every log here"
    )
    p.add_argument(
        "--broker",
        choices=("redis", "rabbitmq"),
        default="redis",
        help="Celery's broker: the private Redis, or a private RabbitMQ node "
        "(EDGEMATCH_BROKER_URL; Redis stays the store)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    p.add_argument("--plot", type=Path, default=RESULTS / "utilisation.png")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="EDGEMATCH_X=V",
        help="extra setting for edgematch's processes (repeatable)",
    )
    return p.parse_args(argv)


# -- figures ---------------------------------------------------------------------------


def _api_figures(
    rate: float, answered: list[tuple[float, int]], sandbox: dict[str, Any]
) -> dict[str, Any]:
    """Throughput and 429 share from the answers' times and the sandbox's counters."""
    by_status = {str(k): int(v) for k, v in sandbox.get("by_http_status", {}).items()}
    requests = sum(by_status.values())
    ok = by_status.get("200", 0)
    hashes = sum(n for _, n in answered)
    span = answered[-1][0] - answered[0][0] if answered else 0.0
    return {
        "hashes_scanned": hashes,
        "span_s": round(span, 3),
        "hashes_per_s": round(hashes / (span + 1.0), 3) if answered else 0.0,
        "ceiling_hashes": round(measure.ceiling_hashes(rate, span), 1),
        "utilisation": round(measure.utilisation(hashes, rate, span), 4),
        "requests": requests,
        "by_http_status": by_status,
        "share_429": round(measure.share(by_status.get("429", 0), requests), 4),
        "hashes_per_request": round(sandbox.get("items_total", 0) / ok, 3) if ok else 0.0,
        "max_accepted_in_any_1s_window": sandbox.get("max_accepted_in_any_1s_window"),
        "files_per_request": {k: v for k, v in sandbox.get("files_per_request", {}).items() if v},
    }


def edgematch_row(
    rate: float, workers: int, sat: SaturatedRun, light: LightRun | None, system: str = EDGEMATCH
) -> dict[str, Any]:
    row = {"system": system, "workers": workers, "hashes_fed": sat.hashes_fed}
    row |= _api_figures(rate, [(t, 1) for t in sat.scanned_at], sat.sandbox)
    scanned = max(1, len(sat.scanned_at))
    cpu = {name: round(ms / scanned, 3) for name, ms in sat.cpu_ms.items()}
    cpu["total"] = round(sum(sat.cpu_ms.values()) / scanned, 3)
    row |= {
        "capped": sat.capped,
        "repeats": sat.repeats,
        "from_cache": sat.from_cache,
        "api_requests_per_hash": round(
            sum(sat.sandbox.get("by_http_status", {}).values()) / scanned, 4
        ),
        "machine_load": sat.machine,
        "cpu_ms_per_hash": cpu,
        "redis_commands_per_hash": round(sat.redis_commands / scanned, 2),
        "redis_commands_per_hash_by_name": {
            name: round(calls / scanned, 2)
            for name, calls in sorted(sat.redis_by_command.items(), key=lambda kv: -kv[1])
            if calls / scanned >= 0.05
        },
    }
    row |= _cost_figures(rate, sat, scanned)
    if light is not None:
        ms = [1000 * v for v in light.latencies_s]
        row["light_load"] = {
            "uploads": light.uploads,
            "results": len(ms),
            "p50_ms": round(measure.percentile(ms, 50), 1),
            "p99_ms": round(measure.percentile(ms, 99), 1),
            "max_ms": round(max(ms), 1) if ms else None,
            "requests": light.sandbox.get("by_http_status"),
        }
    return row


def _cost_figures(rate: float, sat: SaturatedRun, scanned: int) -> dict[str, Any]:
    """Steady-state throughput, the test doubles' CPU, and moto's requests turned into a
    cost per million hashes at the list prices of bench/prices.py."""
    per_op = {
        op: round(n / scanned, 4)
        for op, n in sorted(sat.moto_requests.items(), key=lambda kv: -kv[1])
    }
    paid = {op: n for op, n in per_op.items() if prices.is_paid(op)}
    tags = per_op.get("s3:PutObjectTagging", 0.0)
    return {
        "steady": measure.steady_state(rate, sat.requests_at),
        "doubles_cpu_ms_per_hash": {
            name: round(ms / scanned, 3) for name, ms in sat.doubles_cpu_ms.items()
        },
        "requests_per_hash_by_operation": per_op,
        "paid_requests_per_hash": round(sum(paid.values()), 3),
        "cost_per_million_hashes_usd": round(prices.cost_per_million(paid), 3),
        "tag_storage_per_million_hashes_usd_per_month": round(
            prices.tags_per_million_per_month(tags), 3
        ),
    }


def baseline_row(rate: float, kind: str, workers: int, run: BaselineRun) -> dict[str, Any]:
    row = {"system": kind, "workers": workers, "hashes_fed": run.hashes_fed}
    row |= _api_figures(rate, run.answered, run.sandbox)
    row |= {"capped": run.capped, "machine_load": run.machine, "own_counters": run.own}
    return row


# -- the run ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace, **extra: str) -> dict[str, str]:
    env = dict(pair.split("=", 1) for pair in args.set)
    env.update(extra)
    return env


def git(*cmd: str) -> str:
    """What git prints for ``cmd`` in this repository (empty when git cannot tell)."""
    try:
        out = subprocess.run(
            ["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """The machine a result was measured on, and its load when the run began."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": model,
        "cores": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s for s in args.systems.split(",") if s]
    started = time.monotonic()
    doc: dict[str, Any] = {
        "schema": "edgematch.bench/v1",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": {
            "commit": git("rev-parse", "HEAD"),
            "uncommitted_files": git("status", "--porcelain", "--untracked-files=no").splitlines(),
        },
        "machine": machine(),
        "parameters": {
            "rate": args.rate,
            "workers": args.workers,
            "hashes": args.hashes,
            "cap_s": args.cap_s,
            "short_cap_s": args.short_cap_s,
            "light_uploads": args.light_uploads,
            "light_every_s": 0.5,
            "margins": args.margins,
            "margin_workers": args.margin_workers,
            "repeats": args.repeats,
            "steady": args.steady,
            "steady_hashes": args.steady_hashes,
            "steady_variants": args.steady_variant + ([CLOSING] if args.moto_closing else []),
            "prices": {"date": prices.PRICES_DATE, "source": prices.PRICES_SOURCE},
            "edgematch_settings": _settings(args),
            "broker": args.broker,
            "ceiling": "5 × R × (T + 1) hashes, T = seconds from the first to the last "
            "accepted request: the sandbox's initial burst of R requests, then R a second",
        },
        "rows": [],
        "margin_rows": [],
        "repeat_rows": [],
        "errors": [],
    }
    stack = Stack(args.rate, broker=args.broker).start()
    log_dir = stack.pipe.dir
    _log("the test doubles' own limits (moto's SQS, boto3 against moto)")
    doc["harness"] = {
        "sqs_drain": harness.sqs_drain_rate(stack, args.hashes),
        "boto3_client_cpu_ms_per_call": harness.boto3_cpu_per_call(stack),
    }
    _log(f"  {doc['harness']}")

    def attempt(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        # One phase that fails is reported and skipped: the others still give their figures.
        _log(what)
        try:
            row = fn()
        except Exception as exc:  # noqa: BLE001 - any failure of a phase, recorded
            _log(f"  FAILED: {type(exc).__name__}: {exc}")
            doc["errors"].append({"phase": what, "error": f"{type(exc).__name__}: {exc}"})
            return None
        _log(_short(row))
        return row

    try:
        for workers in args.workers:
            n = f"{workers} worker process(es)"
            phases: list[tuple[str, str, Callable[[], dict[str, Any]]]] = [
                (EDGEMATCH, f"edgematch, {n}", partial(_pipeline, stack, args, workers)),
                (
                    MATCH_STEP,
                    f"edgematch's match step alone, {n}",
                    partial(_match_step, stack, args, workers, _settings(args)),
                ),
                *(
                    (kind, f"{kind}, {n}", partial(_baseline, stack, args, kind, workers, log_dir))
                    for kind in (FIXED, RATE_LIMITED)
                ),
            ]
            for system, what, fn in phases:
                if system in systems and (row := attempt(what, fn)) is not None:
                    doc["rows"].append(row)
        if MATCH_STEP in systems:
            for margin in args.margins:
                env = _settings(args, EDGEMATCH_RATE_LIMIT_MARGIN=str(margin))
                row = attempt(
                    f"match step, margin {margin}, {args.margin_workers} worker process(es)",
                    partial(_match_step, stack, args, args.margin_workers, env),
                )
                if row is not None:
                    row["margin"] = margin
                    doc["margin_rows"].append(row)
        if STEADY in systems:
            closing = [CLOSING] if args.moto_closing else []
            for rate, workers in args.steady:
                for variant in ["", *args.steady_variant, *closing]:
                    row = attempt(
                        f"edgematch steady state, R = {rate:g}, {workers} worker process(es)"
                        + (f", {variant}" if variant else ""),
                        partial(_steady, stack, args, rate, workers, variant),
                    )
                    if row is not None:
                        doc["rows"].append(row)
        if EDGEMATCH in systems and args.repeats > 0:
            w = args.margin_workers
            for ttl in ("0", "3600"):
                row = attempt(
                    f"edgematch, {100 * args.repeats:.0f} % re-uploads, clean cache TTL {ttl} s, "
                    f"{w} worker process(es)",
                    partial(_repeats, stack, args, w, ttl),
                )
                if row is not None:
                    doc["repeat_rows"].append(row)
    finally:
        if args.keep_logs is not None:
            shutil.copytree(log_dir, args.keep_logs, dirs_exist_ok=True)
        stack.close()
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    return doc


def _pipeline(stack: Stack, args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """The Procfile's processes: a light load, then a saturated backlog."""
    procs = EdgematchProcesses(
        stack, workers=workers, env=_settings(args), tag=f"em{workers}", profile_dir=args.profile
    )
    try:
        procs.start()
        light = procs.light(args.light_uploads) if args.light_uploads else None
        servers = stack.server_cpu()
        sat = procs.saturated(args.hashes, cap_s=args.cap_s)
        server_ms = {name: cpu.used_ms() for name, cpu in servers.items()}
    finally:
        procs.stop()
        stack.purge_edgematch()
    row = edgematch_row(args.rate, workers, sat, light)
    scanned = max(1, len(sat.scanned_at))
    # The servers' own CPU: Redis (store, and broker unless RabbitMQ is), RabbitMQ.
    row["broker"] = stack.broker
    row["server_cpu_ms_per_hash"] = {n: round(ms / scanned, 3) for n, ms in server_ms.items()}
    return row


def _steady(
    stack: Stack, args: argparse.Namespace, rate: float, workers: int, variant: str = ""
) -> dict[str, Any]:
    """The Procfile's processes through a backlog long enough for a steady-state figure, at
    ``rate`` (the sandbox's and edgematch's) and ``workers``; ``variant``: settings of
    theirs (``EDGEMATCH_X=V,…``) on top of ``--set``, or ``CLOSING``: S3 and SQS through
    moto's own server, which closes every connection."""
    if variant == CLOSING:
        extra = {"AWS_ENDPOINT_URL": stack.moto.closing_url}
    else:
        extra = dict(pair.split("=", 1) for pair in variant.split(",") if pair)
    env = _settings(args, EDGEMATCH_RATE_LIMIT=f"{rate:g}", **extra)
    suffix = "".join(c for c in variant.lower() if c.isalnum())[-16:]
    tag = f"st{rate:g}x{workers}" + (f"-{suffix}" if variant else "")
    procs = EdgematchProcesses(stack, workers=workers, env=env, tag=tag, profile_dir=args.profile)
    stack.set_rate(rate)
    try:
        procs.start()
        cap_s = args.steady_hashes / (measure.HASHES_PER_REQUEST * rate) * 1.5 + 10.0
        sat = procs.saturated(args.steady_hashes, cap_s=cap_s)
    finally:
        procs.stop()
        stack.purge_edgematch()
        stack.set_rate(args.rate)
    row = edgematch_row(rate, workers, sat, None, system=STEADY)
    row["rate"] = rate
    row["variant"] = variant
    return row


def _repeats(stack: Stack, args: argparse.Namespace, workers: int, ttl: str) -> dict[str, Any]:
    """The pipeline saturated by a backlog with ``--repeats`` re-uploads, cache on or off."""
    env = _settings(args, EDGEMATCH_CLEAN_CACHE_TTL_S=ttl)
    procs = EdgematchProcesses(stack, workers=workers, env=env, tag=f"rep{workers}-{ttl}")
    try:
        procs.start()
        sat = procs.saturated(args.hashes, cap_s=args.cap_s, repeats=args.repeats)
    finally:
        procs.stop()
        stack.purge_edgematch()
    row = edgematch_row(args.rate, workers, sat, None)
    row["clean_cache_ttl_s"] = int(ttl)
    return row


def _baseline(
    stack: Stack, args: argparse.Namespace, kind: str, workers: int, log_dir: Path
) -> dict[str, Any]:
    result = run_baseline(
        stack, kind, workers=workers, hashes=args.hashes, cap_s=args.short_cap_s, log_dir=log_dir
    )
    return baseline_row(args.rate, kind, workers, result)


def _match_step(
    stack: Stack, args: argparse.Namespace, workers: int, env: dict[str, str]
) -> dict[str, Any]:
    """edgematch's worker on the match queue only, the buffer pre-filled; the results are
    read from their queue, so recording them (a separate step) takes no match process."""
    margin = env.get("EDGEMATCH_RATE_LIMIT_MARGIN", "default")
    procs = EdgematchProcesses(
        stack, workers=workers, env=env, tag=f"ms{workers}-m{margin}", match_only=True
    )
    try:
        procs.start()
        sat = procs.saturated(args.hashes, cap_s=args.short_cap_s)
    finally:
        procs.stop()
        stack.purge_edgematch()
    row = edgematch_row(args.rate, workers, sat, None, system=MATCH_STEP)
    # Its Redis count includes the benchmark's own pushes into the buffer.
    row["redis_commands_include_the_fill"] = True
    return row


def _short(row: dict[str, Any]) -> str:
    return (
        f"  {row['system']} x{row['workers']}: utilisation {row['utilisation']:.3f}, "
        f"429 {100 * row['share_429']:.1f}%, {row['hashes_per_request']:.2f} hashes/request, "
        f"{row['hashes_scanned']}/{row['hashes_fed']} in {row['span_s']:.1f} s, "
        f"others' load {row['machine_load']['others_cores']:.2f} cores"
        + (" (capped)" if row.get("capped") else "")
    )


# -- output ----------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    head = (
        f"{'system':<22}{'workers':>8}{'util':>7}{'429 %':>7}{'h/req':>7}{'scanned':>10}"
        f"{'others':>7}{'p50 ms':>8}{'p99 ms':>8}{'CPU ms/h':>9}{'(w/i/b)':>16}{'redis/h':>9}"
    )
    lines = [head, "-" * len(head)]
    rows = sorted(doc["rows"], key=lambda r: (SYSTEMS.index(r["system"]), r["workers"]))
    for row in [*rows, *doc["margin_rows"], *doc.get("repeat_rows", [])]:
        name = row["system"] + (f" m={row['margin']}" if "margin" in row else "")
        if "clean_cache_ttl_s" in row:
            name += f" rep cache={row['clean_cache_ttl_s']}"
        line = (
            f"{name:<22}{row['workers']:>8}{row['utilisation']:>7.3f}"
            f"{100 * row['share_429']:>7.2f}{row['hashes_per_request']:>7.2f}"
            f"{str(row['hashes_scanned']) + '/' + str(row['hashes_fed']):>10}"
            f"{row['machine_load']['others_cores']:>7.2f}"
        )
        light = row.get("light_load")
        if light:
            line += f"{light['p50_ms']:>8.0f}{light['p99_ms']:>8.0f}"
        else:
            line += f"{'':>8}{'':>8}"
        cpu = row.get("cpu_ms_per_hash")
        if cpu:
            parts = f"{cpu['worker']:.1f}/{cpu.get('intake', 0.0):.1f}/{cpu['beat']:.1f}"
            line += f"{cpu['total']:>9.1f}{parts:>16}{row['redis_commands_per_hash']:>9.1f}"
        if row.get("capped"):
            line += "  capped"
        lines.append(line)
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    """The table of docs/benchmark.md: one row per system and worker count, then the margins."""
    out = [
        "| system | workers | utilisation | 429 share | hashes/request | scanned "
        "| others' load (cores) | p50 / p99 ms (light) "
        "| CPU ms/hash worker / intake / beat = total | Redis cmds/hash |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = sorted(doc["rows"], key=lambda r: (SYSTEMS.index(r["system"]), r["workers"]))
    for row in [*rows, *doc["margin_rows"], *doc.get("repeat_rows", [])]:
        name = row["system"].replace("_", " ")
        if "margin" in row:
            name += f", margin {row['margin']}"
        if "clean_cache_ttl_s" in row:
            name += (
                f", {row['repeats']} re-uploads, clean cache "
                + ("off" if not row["clean_cache_ttl_s"] else f"{row['clean_cache_ttl_s']} s")
                + f": {row['from_cache']} from cache, "
                f"{row['api_requests_per_hash']:.3f} requests/hash"
            )
        light = row.get("light_load")
        cpu = row.get("cpu_ms_per_hash")
        scanned = f"{row['hashes_scanned']}/{row['hashes_fed']}" + (
            " (time cap)" if row.get("capped") else ""
        )
        out.append(
            f"| {name} | {row['workers']} | {row['utilisation']:.3f} "
            f"| {100 * row['share_429']:.1f} % | {row['hashes_per_request']:.2f} | {scanned} "
            f"| {row['machine_load']['others_cores']:.2f} "
            + (f"| {light['p50_ms']:.0f} / {light['p99_ms']:.0f} " if light else "| ")
            + (
                f"| {cpu['worker']:.1f} / {cpu.get('intake', 0.0):.1f} / {cpu['beat']:.1f} = "
                f"{cpu['total']:.1f} | {row['redis_commands_per_hash']:.0f} |"
                if cpu
                else "| | |"
            )
        )
    return "\n".join(out) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax_u, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {EDGEMATCH: "o-", MATCH_STEP: "D-", FIXED: "s--", RATE_LIMITED: "^:"}
    labels = {
        EDGEMATCH: "edgematch, whole pipeline",
        MATCH_STEP: "edgematch, match step alone (buffer pre-filled)",
        FIXED: "fixed 100 ms sleep, batches of 5",
        RATE_LIMITED: "1 hash/task, rate_limit R/workers",
    }
    for system in SYSTEMS[:-1]:  # not the steady-state runs: their R differs
        rows = sorted((r for r in doc["rows"] if r["system"] == system), key=lambda r: r["workers"])
        if not rows:
            continue
        xs = [r["workers"] for r in rows]
        ax_u.plot(xs, [r["utilisation"] for r in rows], styles[system], label=labels[system])
        ax_e.plot(xs, [100 * r["share_429"] for r in rows], styles[system], label=labels[system])
    rate = doc["parameters"]["rate"]
    ax_u.axhline(0.97, color="grey", lw=0.8, ls="-.")
    ax_u.set_title(f"hashes/s as a fraction of the ceiling (5 × R, R = {rate:g}/s)")
    ax_u.set_ylabel("utilisation")
    ax_u.set_ylim(0, 1.05)
    ax_e.axhline(0.5, color="grey", lw=0.8, ls="-.")
    ax_e.set_title("requests answered 429")
    ax_e.set_ylabel("% of requests")
    ax_e.set_ylim(bottom=0)
    for ax in (ax_u, ax_e):
        ax.set_xscale("log", base=2)
        ax.set_xticks(doc["parameters"]["workers"])
        ax.set_xticklabels([str(w) for w in doc["parameters"]["workers"]])
        ax.set_xlabel("worker processes")
        ax.grid(alpha=0.3)
    ax_e.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"edgematch bench, {doc['date']}, {doc['machine']['cores']} cores, "
        f"commit {doc['git']['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(
        markdown(doc) + "\n" + costs.cost_markdown(doc) + "\n" + costs.redis_markdown(doc),
        encoding="utf-8",
    )
    print(table(doc))
    print("\n" + costs.cost_markdown(doc))
    print(costs.redis_markdown(doc))
    if "harness" in doc:
        drain = doc["harness"]["sqs_drain"]
        floor = doc["harness"]["boto3_client_cpu_ms_per_call"]["per_hash_floor"]
        print(
            f"\nmoto's SQS drains {drain['messages_per_s']} messages/s from a queue of "
            f"{drain['messages']} (the ceiling is {5 * doc['parameters']['rate']:g} hashes/s); "
            f"boto3's client CPU for the three S3 calls a hash needs: {floor} ms"
        )
    for error in doc["errors"]:
        print(f"FAILED {error['phase']}: {error['error']}")
    print(f"\nelapsed {doc['elapsed_s']} s; results in {args.out}")
    try:
        plot(doc, args.plot)
        print(f"plot in {args.plot}")
    except ImportError:
        print("matplotlib is not installed: no plot (scripts/bench installs it)", file=sys.stderr)
    return 0
