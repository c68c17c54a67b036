"""The cost table: what a scanned hash costs, per process type and per paid request."""

from __future__ import annotations

from typing import Any

from bench import prices

#: Columns of paid requests shown one by one (the rest are summed in "other").
_SHOWN = (
    ("s3:GetObject", "GET"),
    ("s3:HeadObject", "HEAD"),
    ("s3:GetObjectTagging", "tag GET"),
    ("s3:PutObjectTagging", "tag PUT"),
    ("s3:PutObject", "PUT"),
)


def _paid_parts(row: dict[str, Any]) -> str:
    per_op: dict[str, float] = row.get("requests_per_hash_by_operation", {})
    paid = {op: n for op, n in per_op.items() if prices.is_paid(op)}
    parts = [f"{label} {paid.pop(op):.2f}" for op, label in _SHOWN if op in paid]
    sqs = sum(n for op, n in paid.items() if op.startswith("sqs:"))
    other = sum(n for op, n in paid.items() if not op.startswith("sqs:"))
    parts.append(f"SQS {sqs:.2f}")
    if other >= 0.005:
        parts.append(f"other {other:.2f}")
    return ", ".join(parts)


def cost_markdown(doc: dict[str, Any]) -> str:
    """One row per run of the whole pipeline (the rows with moto's counts)."""
    out = [
        "| run | R | workers | utilisation (burst-credited) | steady state (requests) "
        "| 429 share | hashes/request | CPU ms/hash worker / intake / beat = total "
        "| doubles' CPU ms/hash moto / sandbox / redis | Redis cmds/hash "
        "| paid requests/hash | of which | $ per million hashes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in [*doc["rows"], *doc.get("repeat_rows", [])]:
        if "requests_per_hash_by_operation" not in row or row["system"] not in (
            "edgematch",
            "steady",
        ):
            continue
        cpu, dbl = row["cpu_ms_per_hash"], row["doubles_cpu_ms_per_hash"]
        steady = row["steady"]
        name = row["system"].replace("_", " ") + (
            f", clean cache {row['clean_cache_ttl_s']} s" if "clean_cache_ttl_s" in row else ""
        )
        if row.get("variant"):
            name += f", {row['variant'].replace(',', ', ')}"
        steady_text = f"{steady['utilisation']:.3f} ({steady['requests']})" + (
            "" if steady.get("enough") else " short"
        )
        out.append(
            f"| {name} | {row.get('rate', doc['parameters']['rate']):g} | {row['workers']} "
            f"| {row['utilisation']:.3f} | {steady_text} "
            f"| {100 * row['share_429']:.1f} % | {row['hashes_per_request']:.2f} "
            f"| {cpu['worker']:.1f} / {cpu.get('intake', 0.0):.1f} / {cpu['beat']:.1f} = "
            f"{cpu['total']:.1f} "
            f"| {dbl.get('moto', 0.0):.1f} / {dbl.get('sandbox', 0.0):.1f} / "
            f"{dbl.get('redis', 0.0):.1f} "
            f"| {row['redis_commands_per_hash']:.0f} | {row['paid_requests_per_hash']:.2f} "
            f"| {_paid_parts(row)} | {row['cost_per_million_hashes_usd']:.2f} |"
        )
    out.append(
        f"\nPrices: {prices.PRICES_SOURCE}, as of {prices.PRICES_DATE}; a verdict tag left on "
        f"a million objects costs a further ${prices.tags_per_million_per_month(1.0):.2f} "
        "every month it is stored."
    )
    return "\n".join(out) + "\n"


#: Commands shown one by one in the by-command table (the rest are summed in "other").
_TOP_COMMANDS = 12


def redis_markdown(doc: dict[str, Any]) -> str:
    """Redis commands a hash by command (``INFO commandstats``, commands run inside Lua
    scripts included, ``evalsha`` counting the script calls themselves), one row per run
    of the whole pipeline: where the round trips and the server's work go."""
    rows = [
        row
        for row in [*doc["rows"], *doc.get("repeat_rows", [])]
        if row.get("redis_commands_per_hash_by_name") and row["system"] in ("edgematch", "steady")
    ]
    if not rows:
        return ""
    out = [
        "| run | R | workers | Redis cmds/hash | by command (a hash) |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        by_name: dict[str, float] = row["redis_commands_per_hash_by_name"]
        ranked = sorted(by_name.items(), key=lambda kv: -kv[1])
        parts = [f"{name} {n:.2f}" for name, n in ranked[:_TOP_COMMANDS]]
        other = sum(n for _, n in ranked[_TOP_COMMANDS:])
        if other >= 0.005:
            parts.append(f"other {other:.2f}")
        name = row["system"] + (f", {row['variant']}" if row.get("variant") else "")
        out.append(
            f"| {name} | {row.get('rate', doc['parameters']['rate']):g} | {row['workers']} "
            f"| {row['redis_commands_per_hash']:.1f} | {', '.join(parts)} |"
        )
    return "\n".join(out) + "\n"
