"""The sandbox over real HTTP: a real server on a free port, talked to with httpx."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.sandbox.server import Sandbox, SandboxConfig
from edgematch.config.settings import Secret
from edgematch.errors import ItemTransient
from edgematch.photodna.client import HashItem, PhotoDNAClient
from tests.support.hashes import HASH

pytestmark = pytest.mark.integration

KEY = "test-key"
AUTH = {"Ocp-Apim-Subscription-Key": KEY}
ROOT = Path(__file__).resolve().parents[2]


def edge_hash(seed: int) -> bytes:
    """A deterministic 924-byte hash, with CR and LF bytes in it."""
    return bytes((seed * 31 + i * 7) % 256 for i in range(HASH))


KNOWN = edge_hash(42)
KNOWN_DIGEST = hashlib.sha256(KNOWN).hexdigest()

SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    """Start sandboxes with config overrides; all are stopped at teardown."""
    started: list[Sandbox] = []

    def make(**overrides: Any) -> Sandbox:
        fields: dict[str, Any] = {"key": KEY, "rate": 0, "known_sha256": {KNOWN_DIGEST}}
        fields.update(overrides)
        sandbox = Sandbox(SandboxConfig(**fields)).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def upload(hashes: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [
        (f"item-{i}.bin", (f"item-{i}.bin", data, "application/octet-stream"))
        for i, data in enumerate(hashes)
    ]


def match_edge_hash(
    client: httpx.Client, base: str, hashes: list[bytes], key: str = KEY
) -> httpx.Response:
    return client.post(
        f"{base}/MatchEdgeHash",
        files=upload(hashes),
        headers={"Ocp-Apim-Subscription-Key": key},
    )


def test_bad_or_missing_key_gets_api_management_401(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """A wrong or absent key is answered 401 with APIM's body and no MatchResults."""
    sandbox = make_sandbox()
    expected = {
        "statusCode": 401,
        "message": "Access denied due to invalid subscription key. "
        "Make sure to provide a valid key for an active subscription.",
    }
    wrong = match_edge_hash(client, sandbox.url, [edge_hash(1)], key="wrong")
    assert wrong.status_code == 401
    assert wrong.json() == expected
    missing = client.post(f"{sandbox.url}/MatchEdgeHash", files=upload([edge_hash(1)]))
    assert missing.status_code == 401
    assert missing.json() == expected


def test_five_files_with_one_known_hash(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """Five parts get five results in order, ContentId = form name, one match with its flags."""
    sandbox = make_sandbox()
    hashes = [edge_hash(1), edge_hash(2), KNOWN, edge_hash(3), edge_hash(4)]
    reply = match_edge_hash(client, sandbox.url, hashes)
    assert reply.status_code == 200
    body = reply.json()
    assert isinstance(body["TrackingId"], str) and body["TrackingId"]
    assert isinstance(body["CMRequestId"], str) and body["CMRequestId"]
    results = body["MatchResults"]
    assert [r["ContentId"] for r in results] == [f"item-{i}.bin" for i in range(5)]
    assert [r["IsMatch"] for r in results] == [False, False, True, False, False]
    assert all(
        r["Status"] == {"Code": 3000, "Description": "OK", "Exception": None} for r in results
    )
    assert results[2]["MatchDetails"]["MatchFlags"] == [
        {
            "AdvancedInfo": [{"Key": "MatchId", "Value": KNOWN_DIGEST[:16]}],
            "Source": "sandbox",
            "Violations": ["A1"],
        }
    ]
    assert results[0]["MatchDetails"] == {"AdvancedInfo": [], "MatchFlags": []}


def test_root_path_serves_the_same_operations(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """/MatchEdgeHash at the server root answers like /photodna/v1.0/MatchEdgeHash."""
    sandbox = make_sandbox()
    reply = match_edge_hash(client, sandbox.root_url, [KNOWN, b"short"])
    assert reply.status_code == 200
    codes = [r["Status"]["Code"] for r in reply.json()["MatchResults"]]
    assert codes == [3000, 3002]


def test_six_files_is_3209(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """Six parts get HTTP 200 with a top-level 3209 status and no MatchResults."""
    sandbox = make_sandbox()
    reply = match_edge_hash(client, sandbox.url, [edge_hash(i) for i in range(6)])
    assert reply.status_code == 200
    body = reply.json()
    assert body["Status"] == {
        "Code": 3209,
        "Description": "Request Size Exceeded",
        "Exception": None,
    }
    assert "MatchResults" not in body
    assert set(body) == {"Status", "TrackingId", "CMRequestId"}


def test_rate_limit_answers_429_with_retry_after(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """Beyond `rate` requests in a second: 429, APIM's body, an integer Retry-After >= 1."""
    sandbox = make_sandbox(rate=2)
    statuses = [match_edge_hash(client, sandbox.url, [edge_hash(1)]).status_code for _ in range(2)]
    limited = match_edge_hash(client, sandbox.url, [edge_hash(1)])
    assert statuses == [200, 200]
    assert limited.status_code == 429
    retry_after = int(limited.headers["Retry-After"])
    assert retry_after == 1
    assert limited.json() == {
        "statusCode": 429,
        "message": f"Rate limit is exceeded. Try again in {retry_after} seconds.",
    }
    stats = sandbox.stats()
    assert stats["max_accepted_in_any_1s_window"] == 2
    assert stats["by_http_status"] == {"200": 2, "429": 1}


def test_stats_count_requests_items_and_matches(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """GET /_sandbox/stats counts statuses, items by code, matches and batch sizes; reset clears."""
    sandbox = make_sandbox()
    match_edge_hash(client, sandbox.url, [KNOWN, edge_hash(1), b""])
    match_edge_hash(client, sandbox.url, [edge_hash(2)])
    match_edge_hash(client, sandbox.url, [edge_hash(2)], key="wrong")
    stats = client.get(f"{sandbox.root_url}/_sandbox/stats").json()
    assert stats["requests_total"] == 3
    assert stats["by_http_status"] == {"200": 2, "401": 1}
    assert stats["items_total"] == 4
    assert stats["items_by_code"] == {"3000": 3, "3002": 1}
    assert stats["matches_total"] == 1
    assert stats["files_per_request"] == {"1": 1, "2": 0, "3": 1, "4": 0, "5": 0}
    assert stats["accepted_timestamps"] == 2
    assert stats["max_accepted_in_any_1s_window"] == 2
    assert client.post(f"{sandbox.root_url}/_sandbox/reset").status_code == 200
    cleared = client.get(f"{sandbox.root_url}/_sandbox/stats").json()
    assert cleared["requests_total"] == 0
    assert cleared["accepted_timestamps"] == 0


def test_force_status_fails_everything_until_cleared(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """force_status 503 set at runtime answers 503 to every request; null restores 200."""
    sandbox = make_sandbox()
    admin = f"{sandbox.root_url}/_sandbox/faults"
    config = client.post(admin, json={"force_status": 503}).json()
    assert config["force_status"] == 503
    for _ in range(3):
        failed = match_edge_hash(client, sandbox.url, [edge_hash(1)])
        assert failed.status_code == 503
        assert failed.json()["statusCode"] == 503
    assert client.post(admin, json={"force_status": None}).json()["force_status"] is None
    assert match_edge_hash(client, sandbox.url, [edge_hash(1)]).status_code == 200


def test_throttle_answers_the_next_requests_429_with_the_retry_after_asked(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """throttle_next 1 with throttle_retry_after_s 3600 answers exactly one request 429 with
    ``Retry-After: 3600`` and API Management's body; the next one is answered as usual."""
    sandbox = make_sandbox()
    admin = f"{sandbox.root_url}/_sandbox/faults"
    config = client.post(admin, json={"throttle_next": 1, "throttle_retry_after_s": 3600}).json()
    assert (config["throttle_next"], config["throttle_retry_after_s"]) == (1, 3600)
    refused = match_edge_hash(client, sandbox.url, [edge_hash(1)])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    assert refused.json() == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 3600 seconds.",
    }
    assert match_edge_hash(client, sandbox.url, [edge_hash(1)]).status_code == 200
    assert client.get(f"{sandbox.root_url}/_sandbox/config").json()["throttle_next"] == 0
    assert client.post(admin, json={"throttle_next": -1}).status_code == 400


def test_key_changed_at_runtime(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """After the accepted key changes, the old key gets 401 and the new one 200."""
    sandbox = make_sandbox()
    reply = client.post(f"{sandbox.root_url}/_sandbox/faults", json={"key": "rotated"})
    assert reply.status_code == 200
    assert "rotated" not in reply.text
    assert match_edge_hash(client, sandbox.url, [edge_hash(1)]).status_code == 401
    assert match_edge_hash(client, sandbox.url, [edge_hash(1)], key="rotated").status_code == 200


def test_invalid_fault_change_is_refused(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """An out-of-range fault value gets 400 and leaves the config unchanged."""
    sandbox = make_sandbox()
    reply = client.post(f"{sandbox.root_url}/_sandbox/faults", json={"fail_rate": 3})
    assert reply.status_code == 400
    assert client.get(f"{sandbox.root_url}/_sandbox/config").json()["fail_rate"] == 0.0


def test_drop_closes_the_connection_without_a_response(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """drop_rate=1 closes the socket with no response, which httpx reports as an error."""
    sandbox = make_sandbox(drop_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        match_edge_hash(client, sandbox.url, [edge_hash(1)])
    assert sandbox.stats()["dropped_total"] == 1


def test_fail_slow_and_item_faults(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """fail_rate=1 answers 5xx, slow answers wait slow_s, item_3004_rate=1 marks items 3004."""
    sandbox = make_sandbox(fail_rate=1.0)
    assert match_edge_hash(client, sandbox.url, [edge_hash(1)]).status_code in (500, 503)
    sandbox.configure(fail_rate=0.0, slow_rate=1.0, slow_s=0.2, item_3004_rate=1.0)
    started = time.monotonic()
    reply = match_edge_hash(client, sandbox.url, [KNOWN, edge_hash(1)])
    assert time.monotonic() - started >= 0.2
    assert [(r["Status"]["Code"], r["IsMatch"]) for r in reply.json()["MatchResults"]] == [
        (3004, False),
        (3004, False),
    ]


def test_conflicting_answers_are_never_taken_for_verdicts(
    make_sandbox: SandboxFactory, client: httpx.Client
) -> None:
    """conflict_rate=1, set over /_sandbox/faults: every item is answered twice, the opposite
    verdict first; edgematch's client gives no item a verdict and keeps the match signal."""
    sandbox = make_sandbox()
    reply = client.post(f"{sandbox.root_url}/_sandbox/faults", json={"conflict_rate": 1})
    assert reply.json()["conflict_rate"] == 1.0

    with PhotoDNAClient(sandbox.url, Secret(KEY)) as api:
        response = api.match([HashItem("hit", KNOWN), HashItem("miss", edge_hash(1))])

    assert sandbox.stats()["conflicts_total"] == 2
    for outcome in response.outcomes.values():
        assert isinstance(outcome.error, ItemTransient) and not outcome.is_match
        assert outcome.match_signalled and outcome.match_ids == ()


def test_known_digests_added_at_runtime(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """POST /_sandbox/known turns a miss into a match."""
    sandbox = make_sandbox()
    fresh = edge_hash(9)
    assert (
        match_edge_hash(client, sandbox.url, [fresh]).json()["MatchResults"][0]["IsMatch"] is False
    )
    digest = hashlib.sha256(fresh).hexdigest()
    reply = client.post(f"{sandbox.root_url}/_sandbox/known", json={"sha256": [digest]})
    assert reply.json() == {"known_sha256_count": 2}
    assert (
        match_edge_hash(client, sandbox.url, [fresh]).json()["MatchResults"][0]["IsMatch"] is True
    )


def test_match_hash_json_variant(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """MatchHash answers in request order, echoing ContentId or using the index."""
    sandbox = make_sandbox()
    entries: list[dict[str, str]] = [
        {"DataRepresentation": "Hash", "Value": base64.b64encode(edge_hash(1)).decode()},
        {
            "DataRepresentation": "Hash",
            "Value": base64.b64encode(KNOWN).decode(),
            "ContentId": "known-one",
        },
    ]
    reply = client.post(f"{sandbox.url}/MatchHash", json=entries, headers=AUTH)
    results = reply.json()["MatchResults"]
    assert [(r["ContentId"], r["IsMatch"]) for r in results] == [("0", False), ("known-one", True)]
    too_many = client.post(f"{sandbox.url}/MatchHash", json=entries * 3, headers=AUTH)
    assert too_many.json()["Status"]["Code"] == 3209


def test_report_is_recorded(make_sandbox: SandboxFactory, client: httpx.Client) -> None:
    """POST Report answers 3000 with a ReportId, and the body shows up in /_sandbox/reports."""
    sandbox = make_sandbox()
    report = {"ContentId": "item-0.bin", "MatchId": "abc"}
    reply = client.post(f"{sandbox.url}/Report", json=report, headers=AUTH)
    body = reply.json()
    assert body["Status"] == {"Code": 3000, "Description": "OK"}
    assert body["ReportId"]
    assert client.get(f"{sandbox.root_url}/_sandbox/reports").json() == {"reports": [report]}
    assert sandbox.stats()["reports_received"] == 1


def test_connection_is_kept_alive_between_requests(make_sandbox: SandboxFactory) -> None:
    """HTTP/1.1 keep-alive: two requests travel over one socket, each with Content-Length."""
    sandbox = make_sandbox()
    host, port = sandbox.root_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("GET", "/healthz")
        first = connection.getresponse()
        assert first.read() == b"ok"
        assert first.getheader("Content-Length") == "2"
        sock = connection.sock
        connection.request("GET", "/_sandbox/config")
        second = connection.getresponse()
        second.read()
        assert second.status == 200
        assert connection.sock is sock
    finally:
        connection.close()


def test_main_prints_the_listening_line_and_exits_0_on_sigterm() -> None:
    """`python -m devtools.sandbox --port 0` prints one line, serves, exits 0 on TERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.sandbox", "--port", "0", "--key", KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "no listening line within 10 s"
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"sandbox listening on (http://127\.0\.0\.1:(\d+)/photodna/v1\.0)\n", line
        )
        assert match is not None, line
        reply = httpx.get(f"http://127.0.0.1:{match.group(2)}/healthz", timeout=5)
        assert reply.text == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
