"""The sandbox's pure rules: rate window, hash classification, bodies, request parsing."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.sandbox.cli import build_parser
from devtools.sandbox.multipart import (
    MultipartError,
    boundary_from_content_type,
    header_params,
    parse_multipart,
)
from devtools.sandbox.ratelimit import (
    SlidingWindowLimiter,
    max_in_window,
    retry_after_header,
    window_for_rate,
)
from devtools.sandbox.rules import (
    CONFLICT_MATCH_ID,
    Item,
    RequestRefused,
    Verdict,
    classify_hash,
    items_from_match_hash,
    items_from_multipart,
    match_response,
    match_result,
    normalize_digest,
    parse_known_lines,
    rate_limited_body,
    request_status_response,
    unauthorized_body,
)
from devtools.sandbox.server import Gate, SandboxConfig, SandboxState
from tests.support.hashes import HASH


def edge_hash(seed: int) -> bytes:
    """A deterministic 924-byte hash, with CR, LF and '-' bytes in it."""
    return bytes((seed * 31 + i * 7) % 256 for i in range(HASH))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def multipart_body(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode parts exactly as the worker's httpx client would."""
    files = [(name, (f"{name}.bin", data, "application/octet-stream")) for name, data in parts]
    request = httpx.Request("POST", "http://sandbox.invalid/MatchEdgeHash", files=files)
    return request.read(), request.headers["Content-Type"]


# --- rate window ---------------------------------------------------------------------------


def test_limiter_admits_exactly_rate_per_second_then_frees_at_the_window_edge() -> None:
    """Ten requests pass in the first second, the eleventh waits until the first expires."""
    limiter = SlidingWindowLimiter(10)
    for i in range(10):
        assert limiter.try_acquire(0.05 * i).admitted
    refused = limiter.try_acquire(0.6)
    assert not refused.admitted
    assert refused.wait_s == pytest.approx(0.4)
    assert refused.retry_after == 1
    assert not limiter.try_acquire(0.999).admitted
    assert limiter.try_acquire(1.0).admitted  # the t=0 request stops counting at exactly 1.0


def test_refused_requests_do_not_use_up_the_window() -> None:
    """A 429 is not logged: hammering does not push the next free slot further away."""
    limiter = SlidingWindowLimiter(2)
    assert limiter.try_acquire(0.0).admitted
    assert limiter.try_acquire(0.1).admitted
    for step in range(1, 9):
        assert not limiter.try_acquire(0.1 + step * 0.1).admitted
    assert limiter.try_acquire(1.0).admitted
    assert not limiter.try_acquire(1.05).admitted
    assert limiter.try_acquire(1.1).admitted


def test_retry_after_is_rounded_up_and_at_least_one_second() -> None:
    """Retry-After is whole seconds, ceil of the wait, never 0."""
    assert retry_after_header(0.0001) == 1
    assert retry_after_header(1.0) == 1
    assert retry_after_header(1.01) == 2
    limiter = SlidingWindowLimiter(0.25)  # one request per 4 s
    assert limiter.try_acquire(0.0).admitted
    refused = limiter.try_acquire(0.5)
    assert refused.wait_s == pytest.approx(3.5)
    assert refused.retry_after == 4


def test_zero_or_negative_rate_is_unlimited() -> None:
    """rate <= 0 admits everything, and window_for_rate says so with None."""
    assert window_for_rate(0) is None
    assert window_for_rate(-1) is None
    limiter = SlidingWindowLimiter(0)
    assert all(limiter.try_acquire(0.0).admitted for _ in range(1000))


def test_fractional_rates_round_down_to_whole_requests_per_second() -> None:
    """A rate of 2.5 admits two per second: never more than the rate in any window."""
    assert window_for_rate(2.5) == (2, 1.0)
    assert window_for_rate(0.5) == (1, 2.0)
    with pytest.raises(ValueError):
        window_for_rate(math.nan)


def test_lowering_the_rate_at_runtime_keeps_the_logged_requests() -> None:
    """After 5 → 2, the next request waits for all but one of the 5 logged ones to expire."""
    limiter = SlidingWindowLimiter(5)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4):
        assert limiter.try_acquire(t).admitted
    limiter.set_rate(2)
    refused = limiter.try_acquire(0.5)
    assert not refused.admitted
    assert refused.wait_s == pytest.approx(0.8)  # the request at 0.3 expires at 1.3
    assert not limiter.try_acquire(1.29).admitted
    assert limiter.try_acquire(1.31).admitted


arrivals = st.lists(
    st.floats(min_value=0.0, max_value=5.0, allow_nan=False), min_size=0, max_size=60
).map(sorted)


@given(arrivals, st.integers(min_value=1, max_value=6))
def test_limiter_never_exceeds_the_rate_and_refuses_only_when_full(
    times: list[float], rate: int
) -> None:
    """For any arrivals: at most `rate` accepted per 1 s window; a refusal means a full window."""
    limiter = SlidingWindowLimiter(rate)
    accepted: list[float] = []
    for t in times:
        decision = limiter.try_acquire(t)
        in_window = sum(1 for a in accepted if t - a < 1.0)
        if decision.admitted:
            accepted.append(t)
        else:
            assert in_window == rate
            assert 0 < decision.wait_s <= 1.0
    assert max_in_window(accepted, 1.0) <= rate


@given(arrivals)
def test_max_in_window_matches_a_brute_force_count(times: list[float]) -> None:
    """The two-pointer sweep equals counting every window ending on a timestamp."""
    brute = max((sum(1 for s in times if 0 <= t - s < 1.0) for t in times), default=0)
    assert max_in_window(times, 1.0) == brute


def test_max_in_window_treats_windows_as_half_open() -> None:
    """Two requests exactly 1.0 s apart are never in the same window."""
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([0.0, 0.5, 0.999, 1.0]) == 3
    assert max_in_window([]) == 0


# --- classification and bodies -------------------------------------------------------------


def test_malformed_hash_is_3002() -> None:
    """A hash of the wrong size, an empty one or an unreadable one gets per-item 3002."""
    for data in (b"", None, edge_hash(1)[:-1], edge_hash(1) + b"\0"):
        verdict = classify_hash(data, hash_size=HASH, known=set())
        assert verdict.code == 3002
        assert not verdict.is_match


def test_known_hash_matches_with_a_deterministic_id() -> None:
    """The SHA-256 of a known hash's bytes makes a match whose MatchId is its first 16 hex."""
    data = edge_hash(7)
    digest = hashlib.sha256(data).hexdigest()
    verdict = classify_hash(data, hash_size=HASH, known={digest})
    assert verdict.code == 3000
    assert verdict.match_id == digest[:16]
    assert verdict.is_match
    other = classify_hash(edge_hash(8), hash_size=HASH, known={digest})
    assert other.code == 3000
    assert not other.is_match


def test_match_result_bodies_have_the_service_shape() -> None:
    """A hit carries one MatchFlags entry; a miss has IsMatch false and empty MatchFlags."""
    hit = match_result(Verdict("a.bin", 3000, "0123456789abcdef"))
    assert hit == {
        "Status": {"Code": 3000, "Description": "OK", "Exception": None},
        "ContentId": "a.bin",
        "IsMatch": True,
        "MatchDetails": {
            "AdvancedInfo": [],
            "MatchFlags": [
                {
                    "AdvancedInfo": [{"Key": "MatchId", "Value": "0123456789abcdef"}],
                    "Source": "sandbox",
                    "Violations": ["A1"],
                }
            ],
        },
    }
    miss = match_result(Verdict("b.bin", 3000))
    assert miss["IsMatch"] is False
    assert miss["MatchDetails"] == {"AdvancedInfo": [], "MatchFlags": []}
    body = match_response([Verdict("x", 3004)], tracking_id="T", request_id="R")
    assert list(body) == ["TrackingId", "MatchResults", "CMRequestId"]


def test_more_than_five_files_is_a_top_level_3209_without_results() -> None:
    """Six parts refuse the whole request with 3209 and no MatchResults."""
    body, content_type = multipart_body([(f"f{i}", edge_hash(i)) for i in range(6)])
    with pytest.raises(RequestRefused) as refused:
        items_from_multipart(body, content_type)
    assert refused.value.code == 3209
    assert refused.value.item_count == 6
    answer = request_status_response(3209, tracking_id="T", request_id="R")
    assert answer == {
        "Status": {"Code": 3209, "Description": "Request Size Exceeded", "Exception": None},
        "TrackingId": "T",
        "CMRequestId": "R",
    }
    assert "MatchResults" not in answer


def test_empty_or_unreadable_upload_is_a_top_level_3002() -> None:
    """No parts, no boundary or a wrong Content-Type refuse the request with 3002."""
    cases = [
        (b"--b--\r\n", "multipart/form-data; boundary=b"),
        (b"anything", "application/json"),
        (b"anything", None),
        (b"--b\r\nno terminator", "multipart/form-data; boundary=b"),
    ]
    for body, content_type in cases:
        with pytest.raises(RequestRefused) as refused:
            items_from_multipart(body, content_type)
        assert refused.value.code == 3002


def test_api_management_error_bodies() -> None:
    """401 and 429 bodies are API Management's, word for word."""
    assert unauthorized_body() == {
        "statusCode": 401,
        "message": "Access denied due to invalid subscription key. "
        "Make sure to provide a valid key for an active subscription.",
    }
    assert rate_limited_body(3) == {
        "statusCode": 429,
        "message": "Rate limit is exceeded. Try again in 3 seconds.",
    }


# --- multipart -----------------------------------------------------------------------------


def test_multipart_keeps_binary_data_with_crlf_and_dashes_intact() -> None:
    """Several httpx-encoded parts come back in order, byte for byte, CRLF bytes included."""
    tricky = b"\r\n--\r\n\r\n" + bytes(range(256)) + b"\r\n"
    parts = [("first", edge_hash(1)), ("second", tricky), ("empty", b""), ("4th", b"\r\n")]
    body, content_type = multipart_body(parts)
    parsed = parse_multipart(body, boundary_from_content_type(content_type))
    assert [(p.name, p.data) for p in parsed] == parts
    assert parsed[0].filename == "first.bin"
    assert parsed[0].content_type == "application/octet-stream"


def test_multipart_accepts_preamble_epilogue_quoted_names_and_headerless_parts() -> None:
    """RFC 2046 framing details: preamble, epilogue, padding, escapes, no part headers."""
    body = (
        b"preamble\r\n"
        b"--XyZ  \r\n"
        b'Content-Disposition: form-data; name="a \\"q\\"; b"; filename="x.bin"\r\n'
        b"\r\n"
        b"one\r\n"
        b"--XyZ\r\n"
        b"\r\n"
        b"two\r\n"
        b"--XyZ--\r\n"
        b"epilogue"
    )
    parsed = parse_multipart(
        body, boundary_from_content_type('multipart/form-data; boundary="XyZ"')
    )
    assert [(p.name, p.filename, p.data) for p in parsed] == [
        ('a "q"; b', "x.bin", b"one"),
        (None, None, b"two"),
    ]


def test_multipart_rejects_truncated_bodies() -> None:
    """A body cut before its closing boundary raises MultipartError, never returns half."""
    body, content_type = multipart_body([("a", edge_hash(1)), ("b", edge_hash(2))])
    boundary = boundary_from_content_type(content_type)
    for cut in (len(body) - 10, len(body) // 2, 5):
        with pytest.raises(MultipartError):
            parse_multipart(body[:cut], boundary)


def test_header_params_and_boundary_validation() -> None:
    """Parameters are unquoted and lowercased; a missing boundary is an error."""
    assert header_params('Form-Data; NAME="n"; filename=f.bin') == (
        "form-data",
        {"name": "n", "filename": "f.bin"},
    )
    with pytest.raises(MultipartError):
        boundary_from_content_type("multipart/form-data")
    with pytest.raises(MultipartError):
        boundary_from_content_type("multipart/form-data; boundary=" + "x" * 71)


def test_nameless_part_is_answered_3002_under_its_index() -> None:
    """A part without a form name cannot be echoed, so it becomes an unreadable item."""
    body = b"--b\r\nContent-Type: x\r\n\r\n" + edge_hash(1) + b"\r\n--b--\r\n"
    items = items_from_multipart(body, "multipart/form-data; boundary=b")
    assert [(i.content_id, i.data) for i in items] == [("0", None)]


# --- MatchHash -----------------------------------------------------------------------------


def test_match_hash_items_echo_content_ids_or_use_the_index() -> None:
    """ContentId is echoed when given, else the zero-based index; bad entries carry no data."""
    good = base64.b64encode(edge_hash(1)).decode()
    payload = [
        {"DataRepresentation": "Hash", "Value": good, "ContentId": "mine"},
        {"DataRepresentation": "Hash", "Value": good},
        {"DataRepresentation": "Hash", "Value": "not base64!"},
        {"DataRepresentation": "URL", "Value": good},
        "not an object",
    ]
    items = items_from_match_hash(json.dumps(payload).encode())
    assert [i.content_id for i in items] == ["mine", "1", "2", "3", "4"]
    assert [i.data is not None for i in items] == [True, True, False, False, False]
    assert items[0].data == edge_hash(1)


def test_match_hash_request_level_refusals() -> None:
    """Not a JSON array or empty → 3002; more than five entries → 3209."""
    entry = {"DataRepresentation": "Hash", "Value": "AA=="}
    for body, code in [
        (b"{}", 3002),
        (b"not json", 3002),
        (b"[]", 3002),
        (json.dumps([entry] * 6).encode(), 3209),
    ]:
        with pytest.raises(RequestRefused) as refused:
            items_from_match_hash(body)
        assert refused.value.code == code


# --- known hashes --------------------------------------------------------------------------


def test_known_file_lines_skip_comments_and_normalize_case() -> None:
    """Blank lines and # comments are skipped, digests lowercased, junk names its line."""
    digest = hashlib.sha256(b"x").hexdigest()
    assert parse_known_lines(["# benign test images", "", f"  {digest.upper()}  "]) == {digest}
    with pytest.raises(ValueError, match="line 2"):
        parse_known_lines([digest, "not-a-digest"])
    with pytest.raises(ValueError):
        normalize_digest(digest[:-1])


# --- state: the decisions behind the HTTP layer --------------------------------------------


def test_key_is_checked_before_the_rate_limit() -> None:
    """Requests with a bad key are refused 401 and do not consume the rate window."""
    clock = FakeClock()
    state = SandboxState(SandboxConfig(key="k", rate=1), clock=clock)
    assert state.admit("MatchEdgeHash", "wrong").gate is Gate.UNAUTHORIZED
    assert state.admit("MatchEdgeHash", None).gate is Gate.UNAUTHORIZED
    assert state.admit("MatchEdgeHash", "k").gate is Gate.PROCEED
    limited = state.admit("MatchEdgeHash", "k")
    assert limited.gate is Gate.RATE_LIMITED
    assert limited.retry_after == 1
    stats = state.stats()
    assert stats["requests_total"] == 4
    assert stats["accepted_timestamps"] == 1


def test_fault_draws_are_reproducible_for_a_seed() -> None:
    """Two states with the same seed and faults make the same decisions in the same order."""

    def run(seed: int) -> list[Gate]:
        config = SandboxConfig(rate=0, fail_rate=0.3, drop_rate=0.2, seed=seed)
        state = SandboxState(config, clock=FakeClock())
        return [state.admit("MatchEdgeHash", "sandbox-key").gate for _ in range(60)]

    first = run(7)
    assert first == run(7)
    assert {Gate.FAIL, Gate.DROP, Gate.PROCEED} <= set(first)
    assert first != run(8)


def test_configure_applies_all_or_nothing() -> None:
    """An unknown or invalid field raises and leaves the config as it was."""
    state = SandboxState(SandboxConfig(), clock=FakeClock())
    with pytest.raises(ValueError, match="unknown"):
        state.configure({"fail_rate": 0.5, "nonsense": 1})
    with pytest.raises(ValueError, match="drop_rate"):
        state.configure({"fail_rate": 0.5, "drop_rate": 2})
    assert state.config.fail_rate == 0.0
    view = state.configure({"fail_rate": 1, "force_status": 503, "key": "new"})
    assert view["fail_rate"] == 1.0
    assert view["force_status"] == 503
    assert "key" not in view
    assert state.admit("MatchHash", "new").gate is Gate.FORCED


def test_item_3004_rate_answers_items_3004() -> None:
    """With item_3004_rate=1 every item is 3004 and none is a match, even a known one."""
    data = edge_hash(3)
    config = SandboxConfig(item_3004_rate=1.0, known_sha256={hashlib.sha256(data).hexdigest()})
    state = SandboxState(config, clock=FakeClock())
    items = items_from_match_hash(
        json.dumps(
            [{"DataRepresentation": "Hash", "Value": base64.b64encode(data).decode()}]
        ).encode()
    )
    verdicts = state.judge(items)
    assert [(v.code, v.is_match) for v in verdicts] == [(3004, False)]


def test_cli_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--help documents every flag the brief names."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--host",
        "--port",
        "--rate",
        "--key",
        "--known",
        "--hash-size",
        "--fail-rate",
        "--slow-rate",
        "--slow-s",
        "--item-3004-rate",
        "--drop-rate",
        "--conflict-rate",
        "--force-status",
        "--seed",
        "--verbose",
    ):
        assert flag in text


def test_conflict_rate_answers_an_item_twice_with_the_opposite_verdict_first() -> None:
    """conflict_rate=1: a known hit is answered clean and then match, a miss a made-up
    match and then clean, both under the item's own ContentId; 3002 items stay single."""
    known = edge_hash(3)
    config = SandboxConfig(conflict_rate=1.0, known_sha256={hashlib.sha256(known).hexdigest()})
    state = SandboxState(config, clock=FakeClock())
    verdicts = state.judge([Item("hit", known), Item("miss", edge_hash(4)), Item("bad", b"x")])
    assert [v.conflict for v in verdicts] == [True, True, False]
    assert state.stats()["conflicts_total"] == 2

    body = match_response(verdicts, tracking_id="T", request_id="R")
    results: list[dict[str, Any]] = body["MatchResults"]  # type: ignore[assignment]
    assert [(r["ContentId"], r["Status"]["Code"], r["IsMatch"]) for r in results] == [
        ("hit", 3000, False),
        ("hit", 3000, True),
        ("miss", 3000, True),
        ("miss", 3000, False),
        ("bad", 3002, False),
    ]
    made_up = results[2]["MatchDetails"]["MatchFlags"][0]["AdvancedInfo"][0]["Value"]
    assert made_up == CONFLICT_MATCH_ID


def test_conflict_rate_zero_leaves_the_fault_sequence_alone() -> None:
    """Off by default, and off it draws nothing: seeded runs of the other faults are the same."""
    assert SandboxConfig().conflict_rate == 0.0
    with_it = SandboxState(SandboxConfig(item_3004_rate=0.5, seed=7), clock=FakeClock())
    without = SandboxState(SandboxConfig(item_3004_rate=0.5, seed=7), clock=FakeClock())
    without.configure({"conflict_rate": 0.0})
    items = [Item(str(n), edge_hash(n)) for n in range(5)]
    assert [v.code for v in with_it.judge(items)] == [v.code for v in without.judge(items)]
