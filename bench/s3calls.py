"""The hot path's S3 calls, boto3 against the lean path, CPU of the calling process a call.

Against the benchmark's moto in its own process (bench/motocount.py; path-style, as
edgematch and the benchmark use it): a versioned bucket with 924-byte hash files under keys
with unicode, spaces, ``+``, ``%``, ``?``, ``#`` (and a 1,024-byte key, measured apart),
clients as ``make_s3_client`` builds them, and three
:class:`~edgematch.infra.storage.ObjectStore`: ``boto3`` (``lean=False``, every call through
boto3) and ``lean`` (the default) through moto's own server, which closes every connection,
and ``lean_kept`` through the same moto kept alive, as S3 keeps connections
(``closing_costs``: what the closing costs a lean call). Rounds alternate them, call by
call kind:

* ``get_hash`` — ``read_hash`` pinned by version with the event's size (one GET a hash);
* ``get_tags`` — ``get_tags`` (GetObjectTagging);
* ``put_tags`` — the tag write alone (PutObjectTagging of two tags, alternating values);
* ``get_hash_long_key`` — ``get_hash`` of a 1,024-byte key.

CPU is ``time.process_time`` of this process (moto's own is not counted); the figure of a
kind is the median over rounds of CPU ms a call. Prints the JSON, and writes it with
``--out``.

    .venv/bin/python -m bench.s3calls --rounds 9 --calls 200 --out bench/results/s3-wire-ab.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.motocount import CountingMotoServer
from bench.run import git, machine
from edgematch.config.settings import Settings
from edgematch.infra.s3wire import S3Wire
from edgematch.infra.storage import ObjectStore, make_s3_client

BUCKET = "uploads"
KEYS = [
    "photos/cat.jpg.bin",
    "photos/ünï cödé ☃.jpg.bin",
    "写真/猫 + 犬 100%.jpg.bin",
    "a b/c+d%20e?#.bin",
]
#: A 1,024-byte key, measured apart: urllib3 normalises the percent-encoding of every
#: request's URL character by character, in either path (about 3,000 of them here).
LONG_KEY = "long/" + "写" * 338 + "a"
HASH = os.urandom(924)
KINDS = ("get_hash", "get_tags", "put_tags", "get_hash_long_key")


def _calls(
    store: ObjectStore, wire: S3Wire, versions: dict[str, str]
) -> dict[str, Callable[[int], None]]:

    def get_hash(i: int, keys: list[str] = KEYS) -> None:
        key = keys[i % len(keys)]
        store.read_hash(
            BUCKET, key, version_id=versions[key], max_bytes=4096, expected_size=len(HASH)
        )

    def get_tags(i: int) -> None:
        store.get_tags(BUCKET, KEYS[i % len(KEYS)])

    def put_tags(i: int) -> None:
        tags = [{"Key": "edgematch-status", "Value": "clean"}, {"Key": "n", "Value": str(i % 2)}]
        # The write merge_tags makes, alone (merge_tags reads the tags first).
        wire.put_object_tagging(Bucket=BUCKET, Key=KEYS[i % len(KEYS)], Tagging={"TagSet": tags})

    return {
        "get_hash": get_hash,
        "get_tags": get_tags,
        "put_tags": put_tags,
        "get_hash_long_key": lambda i: get_hash(i, [LONG_KEY]),
    }


def _cpu_ms_a_call(call: Callable[[int], None], calls: int) -> float:
    start = time.process_time()
    for i in range(calls):
        call(i)
    return (time.process_time() - start) * 1000 / calls


def run(rounds: int, calls: int) -> dict[str, Any]:
    measured_on = machine()
    moto = CountingMotoServer().start()
    try:
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=moto.closing_url,
        )
        s3 = make_s3_client(Settings())
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        versions = {
            k: s3.put_object(Bucket=BUCKET, Key=k, Body=HASH)["VersionId"]
            for k in [*KEYS, LONG_KEY]
        }
        # The same moto, its connections kept alive (as S3's are): what closing costs.
        os.environ["AWS_ENDPOINT_URL"] = moto.url
        kept = make_s3_client(Settings())
        variants = {
            "boto3": _calls(ObjectStore(s3, lean=False), S3Wire(s3, lean=False), versions),
            "lean": _calls(ObjectStore(s3), S3Wire(s3), versions),
            "lean_kept": _calls(ObjectStore(kept), S3Wire(kept), versions),
        }
        for kinds in variants.values():  # warm up: routes, connections, caches
            for call in kinds.values():
                _cpu_ms_a_call(call, 20)
        samples: dict[str, dict[str, list[float]]] = {v: {k: [] for k in KINDS} for v in variants}
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for kind in KINDS:
                for variant in order:
                    samples[variant][kind].append(_cpu_ms_a_call(variants[variant][kind], calls))
    finally:
        moto.close()
    figures = {
        kind: {v: round(statistics.median(samples[v][kind]), 3) for v in variants} for kind in KINDS
    }
    for row in figures.values():
        row["saved"] = round(row["boto3"] - row["lean"], 3)
        row["ratio"] = round(row["lean"] / row["boto3"], 3)
        row["closing_costs"] = round(row["lean"] - row["lean_kept"], 3)
    return {
        "schema": "edgematch.bench.s3calls/v1",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": {"commit": git("rev-parse", "--short", "HEAD")},
        "machine": measured_on,
        "command": f".venv/bin/python -m bench.s3calls --rounds {rounds} --calls {calls}",
        "what": "CPU ms a call of this process (median over rounds), moto server over HTTP: "
        "boto3 and lean through moto's own server (closing every connection), lean_kept "
        "through the same moto kept alive",
        "rounds": rounds,
        "calls_a_round": calls,
        "cpu_ms_a_call": figures,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.s3calls", description=__doc__)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--calls", type=int, default=200, help="calls of each kind a round")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    result = run(args.rounds, args.calls)
    text = json.dumps(result, indent=1, ensure_ascii=False)
    print(json.dumps(result["cpu_ms_a_call"], indent=1))
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
