"""Chaos: bad input of every kind through the real intake and worker, in one run.

Each piece of bad input gets a clear reason — a dead letter, an ``unscannable`` result, or
a logged skip — and never stops the pipeline: the processes stay up and a good upload
after all of it still gets its result. The API's bad answers come from a small HTTP
proxy in front of the sandbox that can answer for it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote_plus

import httpx
import pytest

from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, dead_letters, log_events

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

RecordLedger = Callable[..., dict[str, Any]]
#: The defaults, but for what docs/configuration.md tells operators to set: the buckets whose events
#: are accepted (EDGEMATCH_ALLOWED_BUCKETS) and the API's address (EDGEMATCH_API_URL, here
#: the proxy below).
SETTINGS = {"EDGEMATCH_ALLOWED_BUCKETS": "uploads"}
#: Hash files the proxy answers for badly, recognised by these bytes in the request.
NOT_JSON = b"answer me with something that is not JSON".ljust(HASH, b".")
MISSING_FIELDS = b"answer me without IsMatch".ljust(HASH, b".")


class AnsweringProxy:
    """Forwards API requests to the sandbox, or answers them itself, badly, for a request
    that carries one of the hash files above: ``not_json`` (200 with an HTML page) for
    ``NOT_JSON``, else ``missing_fields`` (200 with a result that has a status but no
    ``IsMatch``, and no results for the others) for ``MISSING_FIELDS``."""

    def __init__(self) -> None:
        self.upstream = ""
        self.answered: dict[str, int] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode = (
                    "not_json"
                    if NOT_JSON in body
                    else "missing_fields"
                    if MISSING_FIELDS in body
                    else "forward"
                )
                proxy.answered[mode] = proxy.answered.get(mode, 0) + 1
                if mode == "not_json":
                    self._reply(200, b"<html><body>Service Unavailable</body></html>", "text/html")
                    return
                if mode == "missing_fields":
                    doc = {"TrackingId": "t-1", "MatchResults": [{"Status": {"Code": 3000}}]}
                    self._reply(200, json.dumps(doc).encode(), "application/json")
                    return
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                reply = httpx.post(proxy.upstream + self.path, content=body, headers=headers)
                self._reply(reply.status_code, reply.content, reply.headers["content-type"])

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/photodna/v1.0"

    def __enter__(self) -> AnsweringProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy() -> Iterator[AnsweringProxy]:
    with AnsweringProxy() as running:
        yield running


def _record(bucket: str, key: str, *, size: int = HASH) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2025-06-14T10:00:00.000Z",
        "s3": {
            "bucket": {"name": bucket},
            "object": {"key": quote_plus(key), "size": size, "eTag": "0123abcd"},
        },
    }


def test_bad_input_of_every_kind(
    make_pipeline: MakePipeline, record_ledger: RecordLedger, proxy: AnsweringProxy
) -> None:
    """Each bad input ends with its reason; the processes stay up and a good upload still scans."""
    pipe = make_pipeline(rate=20.0, settings={**SETTINGS, "EDGEMATCH_API_URL": proxy.url})
    proxy.upstream = pipe.sandbox.root
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    assert pipe.processes is not None
    sqs = pipe.sqs()

    def send(body: str) -> None:
        sqs.send_message(QueueUrl=pipe.queue_url, MessageBody=body)

    def result(key: str, timeout_s: float = 60) -> dict[str, Any]:
        found = pipe.wait_for_results([key], timeout_s=timeout_s)
        assert key in found, f"no result for {key}"
        return found[key]

    # The API will answer for these two with something that is not JSON, or with fields
    # missing: each is retried on the default schedule (8 attempts, backoff from 1 s, about
    # a minute and a half), then unscannable (section 5). Sent first, so that the rest runs
    # meanwhile; a second apart, so that they rarely ride one request.
    answers = {"api/not-json.jpg.bin": NOT_JSON, "api/missing-fields.jpg.bin": MISSING_FIELDS}
    for key, data in answers.items():
        pipe.upload(key, data, content=b"an image")
        time.sleep(1.0)

    # 1. Messages intake cannot use: each a dead letter with its reason.
    send("this is not json")
    send(json.dumps({"hello": "world"}))
    send(json.dumps({"Records": [{"eventSource": "aws:s3", "s3": "wrong"}]}))
    send(json.dumps({"padding": "x" * 300_000}))  # over SQS's 256 KiB: moto accepts it anyway
    send(json.dumps({"Records": [_record("uploads", "evil/../../etc/passwd.bin")]}))
    # 2. A record for a bucket outside EDGEMATCH_ALLOWED_BUCKETS: skipped, with a log line.
    send(json.dumps({"Records": [_record("someone-elses-bucket", "photos/x.jpg.bin")]}))

    # 3. Keys that are odd but legal: scanned like any other.
    odd_keys = ["odd/with space.jpg.bin", "odd/plus+sign.jpg.bin", "odd/ünïcødé ✓ 写真.jpg.bin"]
    for key in odd_keys:
        pipe.upload(key, os.urandom(HASH), content=b"an image")

    # 4. Hash files that can never be scanned: an unscannable result and a dead letter each.
    refused = {
        "refused/empty.jpg.bin": (b"", {}),
        "refused/oversized.jpg.bin": (os.urandom(5000), {}),
        "refused/wrong-size.jpg.bin": (os.urandom(100), {}),
        "refused/other-bucket.jpg.bin": (os.urandom(HASH), {"content-bucket": "not-allowed"}),
        "refused/escape.jpg.bin": (os.urandom(HASH), {"content-key": "photos/../../secret"}),
    }
    for key, (data, metadata) in refused.items():
        pipe.upload(key, data, metadata=metadata)

    expect = {
        "refused/empty.jpg.bin": ("bad_input", "empty hash file"),
        "refused/oversized.jpg.bin": ("bad_input", "over the limit of 4096"),
        "refused/wrong-size.jpg.bin": ("item_rejected", "status 3002"),
        "refused/other-bucket.jpg.bin": ("bad_input", "'not-allowed'"),
        "refused/escape.jpg.bin": ("bad_input", "'..' path segment"),
    }
    for key in odd_keys:
        assert result(key)["verdict"] == "clean", key
    for key, (reason, text) in expect.items():
        doc = result(key)
        assert doc["verdict"] == "unscannable" and doc["reason"].startswith(reason), doc
        assert text in doc["reason"], doc["reason"]

    # 5. The unreadable answers (sent first, above) ended retries_exhausted.
    for key in answers:
        doc = result(key, timeout_s=200)
        assert doc["verdict"] == "unscannable", doc
        assert doc["reason"].startswith("retries_exhausted"), doc

    # After all of it: a good upload is scanned, and every process is still running.
    pipe.upload("after/good.jpg.bin", os.urandom(HASH), content=b"an image")
    assert result("after/good.jpg.bin")["verdict"] == "clean"
    for name in ("intake", "worker", "beat"):
        assert pipe.processes.procs[name].poll() is None, f"{name} stopped"

    letters = dead_letters(pipe)
    malformed = [e for e in letters if e["reason"] == "malformed_event"]
    messages = sorted(e["message"] for e in malformed)
    assert len(malformed) == 5, messages
    for text in (
        "not JSON",
        "not an S3 notification",
        "eventName is missing",
        "over the limit of 262144",
        "'..' path segment",
    ):
        assert any(text in m for m in messages), (text, messages)
    assert all(len(e["args"]["body_excerpt"]) <= 512 for e in malformed)
    logged = {e["reason"] for e in log_events(pipe, "event_malformed", "intake")}
    assert len(logged) == 5
    skipped = log_events(pipe, "event_skipped", "intake")
    assert [e["reason"] for e in skipped] == ["bucket_not_allowed"], skipped
    refused_logged = {e["key"] for e in log_events(pipe, "ingest_refused", "worker")}
    assert refused_logged == {k for k, (r, _) in expect.items() if r == "bad_input"}
    unscannable = {e["key"] for e in log_events(pipe, "item_unscannable", "worker")}
    assert unscannable == {"refused/wrong-size.jpg.bin", *answers}
    by_key = {e.get("key"): e["reason"] for e in letters if e["reason"] != "malformed_event"}
    assert by_key == {
        **{k: r for k, (r, _) in expect.items()},
        **dict.fromkeys(answers, "retries_exhausted"),
    }
    assert proxy.answered.get("not_json", 0) >= 3 and proxy.answered.get("missing_fields", 0) >= 3

    uploads = [*odd_keys, *refused, *answers, "after/good.jpg.bin"]
    ledger = record_ledger(
        pipe,
        "bad input of every kind",
        uploads,
        fault_end=None,
        expected={
            **dict.fromkeys([*odd_keys, "after/good.jpg.bin"], "clean"),
            **dict.fromkeys([*refused, *answers], "unscannable"),
        },
        notes=(
            "6 unusable messages (5 dead-lettered, 1 skipped: bucket not allowed); "
            f"{len(refused)} unscannable hash files; 2 unreadable API answers; "
            f"{len(odd_keys)} odd-but-legal keys scanned"
        ),
    )
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
