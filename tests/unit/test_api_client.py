"""Unit tests for edgematch.photodna.client: pure parsing, request building, and the client over
httpx.MockTransport (no network)."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from edgematch.config.settings import Secret, Settings
from edgematch.errors import (
    ConfigurationError,
    CredentialError,
    EdgematchError,
    ItemRejected,
    ItemTransient,
    PermanentError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransientError,
    TransportError,
)
from edgematch.photodna import client as api_module
from edgematch.photodna.client import (
    DEFAULT_RETRY_AFTER_S,
    KEY_HEADER,
    RETRY_AFTER_CAP_S,
    STATUS_TABLE,
    BatchResponse,
    HashItem,
    PhotoDNAClient,
    build_edge_request,
    build_hash_request,
    classify_item_status,
    parse_response,
    parse_retry_after,
)

KEY = "KEY-0123456789abcdef"
BASE = "https://api.example.test/photodna/v1.0"
Handler = Callable[[httpx.Request], httpx.Response]


def _items(*ids: str) -> list[HashItem]:
    return [HashItem(cid, f"hash-of-{cid}".encode() + b"\x00\r\n\xff") for cid in ids]


@pytest.fixture
def make_client() -> Iterator[Callable[..., PhotoDNAClient]]:
    clients: list[PhotoDNAClient] = []

    def make(handler: Handler, **kwargs: Any) -> PhotoDNAClient:
        client = PhotoDNAClient(BASE, Secret(KEY), transport=httpx.MockTransport(handler), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _ok(content_id: str | None, *, is_match: bool = False, flags: Any = ()) -> dict[str, Any]:
    result: dict[str, Any] = {
        "Status": {"Code": 3000, "Description": "OK", "Exception": None},
        "IsMatch": is_match,
        "MatchDetails": {"AdvancedInfo": [], "MatchFlags": list(flags)},
    }
    if content_id is not None:
        result["ContentId"] = content_id
    return result


def _status(content_id: str, code: int, description: str) -> dict[str, Any]:
    return {
        "Status": {"Code": code, "Description": description, "Exception": None},
        "ContentId": content_id,
        "IsMatch": False,
        "MatchDetails": {"AdvancedInfo": [], "MatchFlags": []},
    }


def _flag(source: str, violations: list[str], *match_ids: str) -> dict[str, Any]:
    return {
        "AdvancedInfo": [{"Key": "MatchId", "Value": mid} for mid in match_ids],
        "Source": source,
        "Violations": violations,
    }


def _answer(*results: dict[str, Any]) -> dict[str, Any]:
    return {"TrackingId": "track-1", "MatchResults": list(results), "CMRequestId": "cm-1"}


def _multipart(request: httpx.Request) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart body by hand so that the payload bytes are compared exactly."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    body = request.read()
    assert body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        assert chunk.startswith(b"\r\n") and chunk.endswith(b"\r\n")
        head, payload = chunk[2:-2].split(b"\r\n\r\n", 1)
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n") if line.strip())
        parts.append((headers, payload))
    return parts


# --------------------------------------------------------------------------- the happy paths


def test_mixed_five_item_answer_is_classified(make_client: Callable[..., PhotoDNAClient]) -> None:
    """A 5-item answer (2-flag match, no match, 3002, 3004, 3206) maps to the right outcomes."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json=_answer(
                _ok(
                    "a",
                    is_match=True,
                    flags=[
                        _flag("Test", ["A1"], "117721"),
                        _flag("NCMEC", ["A1", "B2"], "88", "117721"),
                    ],
                ),
                _ok("b"),
                _status("c", 3002, "Invalid or missing request parameter(s)"),
                _status("d", 3004, "Unknown scenario or unhandled error"),
                _status("e", 3206, "Could not be verified"),
            ),
        )

    response = make_client(handler).match(_items("a", "b", "c", "d", "e"))

    assert isinstance(response, BatchResponse)
    assert (response.tracking_id, response.request_id, response.http_status) == (
        "track-1",
        "cm-1",
        200,
    )
    assert response.elapsed_s >= 0
    assert list(response.outcomes) == ["a", "b", "c", "d", "e"]
    a, b, c, d, e = (response.outcomes[k] for k in "abcde")
    assert a.is_match and a.error is None and a.status_code == 3000
    assert [f.source for f in a.flags] == ["Test", "NCMEC"]
    assert a.flags[1].violations == ("A1", "B2") and a.flags[1].match_ids == ("88", "117721")
    assert a.match_ids == ("117721", "88")
    assert a.sources == ("Test", "NCMEC")
    assert a.violations == ("A1", "B2")
    assert not b.is_match and b.error is None and b.flags == () and b.match_ids == ()
    assert isinstance(c.error, ItemRejected) and c.error.status_code == 3002 and not c.is_match
    assert isinstance(d.error, ItemTransient) and d.error.status_code == 3004
    assert isinstance(e.error, ItemRejected) and e.error.status_code == 3206
    assert e.description == "Could not be verified"

    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/MatchEdgeHash"
    assert request.headers[KEY_HEADER] == KEY
    assert request.headers["user-agent"].startswith("edgematch/")


def test_multipart_body_has_names_filenames_and_exact_bytes(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """Each part is form name <id>, filename <id>.bin, octet-stream, carrying the exact bytes."""
    items = [HashItem("x-1", bytes(range(256)) + b"\r\n--"), HashItem("y_2", b"\x00\x01")]
    captured: list[list[tuple[dict[str, str], bytes]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        captured.append(_multipart(request))
        return httpx.Response(200, json=_answer(_ok("x-1"), _ok("y_2")))

    make_client(handler).match(items)

    (parts,) = captured
    assert len(parts) == 2
    for item, (headers, payload) in zip(items, parts, strict=True):
        assert headers["Content-Disposition"] == (
            f'form-data; name="{item.content_id}"; filename="{item.content_id}.bin"'
        )
        assert headers["Content-Type"] == "application/octet-stream"
        assert payload == item.data


def test_match_hash_sends_json_array_and_maps_by_content_id(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """MatchHash posts a JSON array of base64 values; results in any order map by ContentId."""
    items = _items("p", "q")
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.read()))
        assert str(request.url) == f"{BASE}/MatchHash"
        assert request.headers["content-type"] == "application/json"
        # Deliberately out of order: the ContentId, not the position, must decide.
        return httpx.Response(
            200, json=_answer(_ok("q", is_match=True, flags=[_flag("S", ["A1"], "7")]), _ok("p"))
        )

    response = make_client(handler, operation="MatchHash").match(items)

    assert bodies == [
        [
            {
                "DataRepresentation": "Hash",
                "Value": base64.b64encode(item.data).decode(),
                "ContentId": item.content_id,
            }
            for item in items
        ]
    ]
    assert response.outcomes["q"].is_match and response.outcomes["q"].match_ids == ("7",)
    assert not response.outcomes["p"].is_match


def test_answer_without_content_ids_maps_by_position(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """Results with no ContentId are given to the requested items in order."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json=_answer(
                _ok(None), _ok(None, is_match=True, flags=[_flag("S", ["A1"], "9")]), _ok(None)
            ),
        )

    response = make_client(handler, operation="MatchHash").match(_items("p", "q", "r"))

    assert [o.is_match for o in response.outcomes.values()] == [False, True, False]
    assert response.outcomes["q"].match_ids == ("9",)


def test_item_missing_from_answer_is_transient(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """A requested id the answer does not mention gets an ItemTransient outcome, status 0;
    the items it names by id keep their answers."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_answer(_ok("a"), _ok("c")))

    response = make_client(handler).match(_items("a", "b", "c"))

    assert response.outcomes["a"].error is None and response.outcomes["c"].error is None
    missing = response.outcomes["b"]
    assert isinstance(missing.error, ItemTransient)
    assert missing.status_code == 0 and not missing.is_match and not missing.match_signalled
    assert "missing" in str(missing.error)


def test_filename_echo_is_accepted_as_content_id() -> None:
    """An answer echoing '<id>.bin' instead of the form name still maps to the item."""
    body = json.dumps(_answer(_ok("a.bin", is_match=True))).encode()
    response = parse_response(200, {}, body, ["a"])
    assert response.outcomes["a"].is_match


def test_match_without_readable_is_match_is_retried_not_reported_clean() -> None:
    """A 3000 result whose IsMatch is not a boolean becomes ItemTransient, never 'no match'."""
    result = _ok("a")
    result["IsMatch"] = "yes"
    response = parse_response(200, {}, json.dumps(_answer(result)).encode(), ["a"])
    assert isinstance(response.outcomes["a"].error, ItemTransient)


@pytest.fixture
def captured_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    # A logger cached by an earlier structlog.configure(cache_logger_on_first_use=True)
    # would bypass capture_logs: give the module a fresh proxy inside the capture.
    with capture_logs() as logs:
        monkeypatch.setattr(api_module, "_log", structlog.get_logger(api_module.__name__))
        yield logs


def test_one_debug_event_per_request_without_secrets(
    make_client: Callable[..., PhotoDNAClient], captured_logs: list[MutableMapping[str, Any]]
) -> None:
    """Exactly one debug event with the agreed fields; no key and no hash bytes in it."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_answer(_ok("a")))

    make_client(handler).match(_items("a"))

    assert len(captured_logs) == 1
    (event,) = captured_logs
    assert event["log_level"] == "debug"
    assert set(event) == {
        "event",
        "log_level",
        "operation",
        "items",
        "http_status",
        "elapsed_s",
        "tracking_id",
    }
    assert (event["operation"], event["items"], event["http_status"], event["tracking_id"]) == (
        "MatchEdgeHash",
        1,
        200,
        "track-1",
    )
    assert KEY not in repr(event) and "hash-of-a" not in repr(event)


def test_failed_request_also_logs_one_event(
    make_client: Callable[..., PhotoDNAClient], captured_logs: list[MutableMapping[str, Any]]
) -> None:
    """A transport failure still logs one event, with no HTTP status."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(TransportError):
        make_client(handler).match(_items("a"))
    assert len(captured_logs) == 1 and captured_logs[0]["http_status"] is None


# --------------------------------------------------------------------------- whole-request errors


def test_request_size_exceeded_under_http_200_is_rejected(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """A 200 carrying top-level Status 3209 and no MatchResults raises RequestRejected."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "TrackingId": "t",
                "Status": {"Code": 3209, "Description": "Request Size Exceeded"},
            },
        )

    with pytest.raises(RequestRejected, match="3209") as info:
        make_client(handler).match(_items("a", "b", "c", "d", "e"))
    assert info.value.status_code == 3209
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize(
    ("code", "expected"), [(3004, ServerError), (3999, RequestRejected), (3002, RequestRejected)]
)
def test_top_level_status_follows_the_table(code: int, expected: type[EdgematchError]) -> None:
    """A top-level Status without MatchResults is transient or permanent as the table says."""
    body = json.dumps({"Status": {"Code": code, "Description": "x"}}).encode()
    with pytest.raises(expected):
        parse_response(200, {}, body, ["a"])


def test_rate_limited_with_retry_after_header(make_client: Callable[..., PhotoDNAClient]) -> None:
    """429 with 'Retry-After: 7' raises RateLimited(retry_after_s=7)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"Retry-After": "7"},
            json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 3 seconds."},
        )

    with pytest.raises(RateLimited) as info:
        make_client(handler).match(_items("a"))
    assert info.value.retry_after_s == 7.0
    assert isinstance(info.value, TransientError)


def test_rate_limited_with_message_only(make_client: Callable[..., PhotoDNAClient]) -> None:
    """429 without the header takes N from 'Try again in N seconds.'."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            json={"statusCode": 429, "message": "Rate limit is exceeded. Try again in 12 seconds."},
        )

    with pytest.raises(RateLimited) as info:
        make_client(handler).match(_items("a"))
    assert info.value.retry_after_s == 12.0


def test_rate_limited_with_http_date(make_client: Callable[..., PhotoDNAClient]) -> None:
    """429 with an HTTP-date Retry-After waits until that date."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": when}, content=b"")

    with pytest.raises(RateLimited) as info:
        make_client(handler).match(_items("a"))
    # The date has one-second resolution and the clock moves while the test runs.
    assert 27.0 <= info.value.retry_after_s <= 30.0


def test_rate_limited_without_any_hint_waits_one_second() -> None:
    """429 with neither header nor message defaults to 1 s."""
    with pytest.raises(RateLimited) as info:
        parse_response(429, {}, b"<html>busy</html>", ["a"])
    assert info.value.retry_after_s == DEFAULT_RETRY_AFTER_S == 1.0


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "5"}, b"", 5.0),
        ({"retry-after": "2.5"}, b"", 2.5),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, b"", 10.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"}, b"", 0.0),  # already past
        ({"Retry-After": "soon"}, b'{"message": "Try again in 4 seconds."}', 4.0),
        ({"Retry-After": "-3"}, b"", DEFAULT_RETRY_AFTER_S),
        ({"Retry-After": "99999999"}, b"", RETRY_AFTER_CAP_S),
        ({}, b"not json at all", DEFAULT_RETRY_AFTER_S),
    ],
)
def test_parse_retry_after_cases(headers: dict[str, str], body: bytes, expected: float) -> None:
    """Seconds, dates relative to now, the message, bad values, and the cap, all in seconds."""
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after(headers, body, now=now) == expected


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_refused(make_client: Callable[..., PhotoDNAClient], status: int) -> None:
    """401 and 403 raise CredentialError carrying the HTTP status."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            json={
                "statusCode": status,
                "message": "Access denied due to invalid subscription key.",
            },
        )

    with pytest.raises(CredentialError) as info:
        make_client(handler).match(_items("a"))
    assert info.value.status_code == status
    assert "Access denied" in str(info.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors(make_client: Callable[..., PhotoDNAClient], status: int) -> None:
    """5xx raises ServerError (transient) carrying the HTTP status."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text="upstream trouble")

    with pytest.raises(ServerError) as info:
        make_client(handler).match(_items("a"))
    assert info.value.status_code == status


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b"",
        b"[]",
        b'{"TrackingId": "t"}',
        b'{"MatchResults": {"not": "a list"}}',
        b'{"Status": {"Code": 3000}}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
    ],
)
def test_unreadable_200_is_server_error(
    make_client: Callable[..., PhotoDNAClient], body: bytes
) -> None:
    """A 200 whose body is not JSON, or lacks MatchResults, raises ServerError."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    with pytest.raises(ServerError):
        make_client(handler).match(_items("a"))


def test_oversized_answer_is_server_error(make_client: Callable[..., PhotoDNAClient]) -> None:
    """An answer larger than the read cap raises ServerError instead of filling memory."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b" " * (2 << 20))

    with pytest.raises(ServerError, match="larger"):
        make_client(handler).match(_items("a"))


@pytest.mark.parametrize("status", [400, 404, 413, 415])
def test_other_4xx_rejects_the_request(
    make_client: Callable[..., PhotoDNAClient], status: int
) -> None:
    """A 4xx other than 401/403/408/429 raises RequestRejected (permanent)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"statusCode": status, "message": "nope"})

    with pytest.raises(RequestRejected) as info:
        make_client(handler).match(_items("a"))
    assert info.value.status_code == status


def test_redirect_is_not_followed(make_client: Callable[..., PhotoDNAClient]) -> None:
    """A 302 is not followed (it would resend the key) and raises ServerError."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": "https://elsewhere.test/steal"})

    with pytest.raises(ServerError):
        make_client(handler).match(_items("a"))
    assert calls == [f"{BASE}/MatchEdgeHash"]


@pytest.mark.parametrize(
    "exc_type",
    [
        httpx.ConnectTimeout,
        httpx.ReadTimeout,
        httpx.WriteTimeout,
        httpx.PoolTimeout,
        httpx.ConnectError,
        httpx.ReadError,
        httpx.RemoteProtocolError,
    ],
)
def test_transport_failures_become_transport_error(
    make_client: Callable[..., PhotoDNAClient], exc_type: type[httpx.RequestError]
) -> None:
    """Timeouts and connection errors raised by httpx become TransportError from the cause."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    with pytest.raises(TransportError) as info:
        make_client(handler).match(_items("a"))
    assert isinstance(info.value.__cause__, exc_type)
    assert not isinstance(info.value, httpx.HTTPError)


def test_http_408_is_transport_error() -> None:
    """HTTP 408 (the request timed out on the way) is transient, not a rejection."""
    with pytest.raises(TransportError):
        parse_response(408, {}, b"", ["a"])


# --------------------------------------------------------------------------- secrets


def _echo_key_responses() -> list[httpx.Response]:
    """Answers of every kind whose server text echoes the key, as a broken proxy might."""
    message = {"statusCode": 0, "message": f"echo {KEY}"}
    return [
        httpx.Response(429, json=message),
        httpx.Response(429, headers={"Retry-After": KEY}, json=message),
        httpx.Response(401, json=message),
        httpx.Response(403, json=message),
        httpx.Response(400, json=message),
        httpx.Response(404, text=KEY),
        httpx.Response(408, text=KEY),
        httpx.Response(500, text=KEY),
        httpx.Response(503, json=message),
        httpx.Response(302, headers={"Location": f"https://x.test/{KEY}"}),
        httpx.Response(200, text=f"not json {KEY}"),
        httpx.Response(200, json={"Status": {"Code": 3209, "Description": KEY}}),
        httpx.Response(200, json={"Status": {"Code": 3004, "Description": KEY}}),
        httpx.Response(200, json={"Status": {"Code": 3000, "Description": KEY}}),
        httpx.Response(200, json={"TrackingId": KEY}),
        httpx.Response(200, content=KEY.encode() * 60_000),
    ]


def _replying(response: httpx.Response) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return response

    return handler


def _raising(exc_type: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed with {KEY}", request=request)

    return handler


def test_key_appears_in_no_error_message_and_no_repr(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """Across every error path the key is absent from str(exc), repr(exc) and repr(client)."""
    handlers: list[Handler] = [_replying(response) for response in _echo_key_responses()]
    handlers += [
        _raising(t)
        for t in (httpx.ConnectTimeout, httpx.ReadTimeout, httpx.ConnectError, httpx.ReadError)
    ]
    handlers.append(_raising(httpx.RemoteProtocolError))

    raised: list[EdgematchError] = []
    for handler in handlers:
        client = make_client(handler)
        assert KEY not in repr(client) and KEY not in str(client)
        with pytest.raises(EdgematchError) as info:
            client.match(_items("a"))
        raised.append(info.value)

    assert len(raised) == len(handlers)
    kinds = {type(exc) for exc in raised}
    assert kinds >= {RateLimited, CredentialError, RequestRejected, ServerError, TransportError}
    for exc in raised:
        assert KEY not in str(exc), exc
        assert KEY not in repr(exc), exc
        assert KEY not in repr(exc.args)


def test_key_echoed_in_item_descriptions_is_redacted(
    make_client: Callable[..., PhotoDNAClient],
) -> None:
    """Server text kept in outcomes (descriptions, errors, ids) never carries the key."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = _answer(_status("a", 3002, f"bad {KEY}"), _status("b", 4321, KEY))
        answer["TrackingId"] = KEY
        return httpx.Response(200, json=answer)

    response = make_client(handler).match(_items("a", "b"))
    assert KEY not in repr(response)
    for outcome in response.outcomes.values():
        assert KEY not in str(outcome.error) and KEY not in outcome.description


def test_reprs_hide_key_and_hash_bytes() -> None:
    """HashItem's repr omits the bytes; the client's repr omits the key."""
    item = HashItem("a", b"SECRET-HASH-BYTES")
    assert "SECRET-HASH-BYTES" not in repr(item)
    with PhotoDNAClient(BASE, Secret(KEY)) as client:
        assert KEY not in repr(client)
        assert "MatchEdgeHash" in repr(client)
        assert not any(isinstance(value, str) and KEY in value for value in vars(client).values())


# --------------------------------------------------------------------------- local refusals


@pytest.mark.parametrize("count", [0, 6])
def test_wrong_item_counts_are_refused_locally(
    make_client: Callable[..., PhotoDNAClient], count: int
) -> None:
    """0 or 6 items raise ValueError before anything is sent."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=_answer())

    items = _items(*(f"id{n}" for n in range(count)))
    with pytest.raises(ValueError, match="1 to 5"):
        make_client(handler).match(items)
    with pytest.raises(ValueError):
        build_edge_request(items)
    with pytest.raises(ValueError):
        build_hash_request(items)
    assert calls == []


def test_configured_batch_size_is_enforced(make_client: Callable[..., PhotoDNAClient]) -> None:
    """With max_batch=2, a 3-item request raises ValueError."""
    client = make_client(lambda request: httpx.Response(500), max_batch=2)
    with pytest.raises(ValueError, match="1 to 2"):
        client.match(_items("a", "b", "c"))


@pytest.mark.parametrize(
    "items",
    [
        [HashItem("a", b"1"), HashItem("a", b"2")],
        [HashItem('bad"id', b"1")],
        [HashItem("line\r\nbreak", b"1")],
        [HashItem("", b"1")],
        [HashItem("a", b"")],
    ],
)
def test_bad_items_are_refused(items: list[HashItem]) -> None:
    """Duplicate, unsafe or empty content ids and empty bytes raise ValueError."""
    with pytest.raises(ValueError):
        build_edge_request(items)
    with pytest.raises(ValueError):
        build_hash_request(items)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"operation": "Match"},
        {"max_batch": 0},
        {"max_batch": 6},
        {"timeout_s": 0.0},
        {"connect_timeout_s": -1.0},
    ],
)
def test_bad_client_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    """An unknown operation, a batch size outside 1..5 or a non-positive timeout raise."""
    with pytest.raises(ValueError):
        PhotoDNAClient(BASE, Secret(KEY), **kwargs)


def test_from_settings_uses_operation_batch_size_and_key() -> None:
    """from_settings takes the operation, batch size and key from Settings."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=_answer(_ok("a")))

    settings = Settings(
        subscription_key=Secret(KEY), api_operation="MatchHash", batch_size=3, api_url=BASE
    )
    with PhotoDNAClient.from_settings(settings, transport=httpx.MockTransport(handler)) as client:
        assert (client.operation, client.max_batch) == ("MatchHash", 3)
        client.match(_items("a"))
    assert str(seen[0].url) == f"{BASE}/MatchHash"
    assert seen[0].headers[KEY_HEADER] == KEY


def test_from_settings_without_key_is_a_configuration_error() -> None:
    """Without a subscription key, from_settings raises ConfigurationError."""
    with pytest.raises(ConfigurationError):
        PhotoDNAClient.from_settings(Settings())


# --------------------------------------------------------------------------- the status table


def test_every_table_code_maps_to_its_kind() -> None:
    """Each code in STATUS_TABLE classifies as the kind the table names."""
    expected: dict[str, type[EdgematchError] | None] = {
        "ok": None,
        "transient": ItemTransient,
        "permanent": ItemRejected,
    }
    assert {kind for kind, _ in STATUS_TABLE.values()} <= set(expected)
    for code, (kind, description) in STATUS_TABLE.items():
        error = classify_item_status(code, description)
        wanted = expected[kind]
        if wanted is None:
            assert error is None, code
        else:
            assert type(error) is wanted, code
            assert getattr(error, "status_code", None) == code


def test_documented_codes_have_the_documented_kind() -> None:
    """3000 ok, 3004 transient, 3002/3206/3208/3209 permanent, an unknown code permanent."""
    assert classify_item_status(3000, "OK") is None
    assert isinstance(classify_item_status(3004, ""), ItemTransient)
    for code in (3002, 3206, 3208, 3209):
        assert isinstance(classify_item_status(code, ""), ItemRejected)
    unknown = classify_item_status(3123, "")
    assert isinstance(unknown, ItemRejected) and "unknown status 3123" in str(unknown)


@given(code=st.integers(), description=st.text())
def test_any_code_classifies_into_exactly_one_kind(code: int, description: str) -> None:
    """Any int gives exactly one of None / transient / permanent and never raises."""
    error = classify_item_status(code, description)
    kinds = [error is None, isinstance(error, TransientError), isinstance(error, PermanentError)]
    assert kinds.count(True) == 1
    if code not in STATUS_TABLE:
        assert isinstance(error, ItemRejected)
    if error is not None:
        assert len(str(error)) < 300  # server text is truncated


@given(
    value=st.one_of(st.text(), st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,3})?\Z")),
    body=st.binary(max_size=200),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_parse_retry_after_is_bounded_and_total(value: str, body: bytes, now: float) -> None:
    """Any header and body give a delay in [0, cap] seconds without raising."""
    delay = parse_retry_after({"Retry-After": value}, body, now=now)
    assert 0.0 <= delay <= RETRY_AFTER_CAP_S


@given(seconds=st.integers(min_value=0, max_value=int(RETRY_AFTER_CAP_S)))
def test_parse_retry_after_reads_integer_seconds(seconds: int) -> None:
    """A delta-seconds header is returned as is."""
    assert parse_retry_after({"Retry-After": str(seconds)}, b"") == float(seconds)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["MatchResults", "Status", "Code", "ContentId", "IsMatch", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(status=st.integers(min_value=100, max_value=599), document=_json)
def test_parse_response_raises_only_our_errors(status: int, document: object) -> None:
    """Any status and JSON body give a full BatchResponse or one of our exceptions."""
    requested = ["a", "b"]
    try:
        response = parse_response(status, {}, json.dumps(document).encode(), requested)
    except EdgematchError:
        return
    assert list(response.outcomes) == requested
    for outcome in response.outcomes.values():
        assert (outcome.error is None) == (outcome.status_code == 3000)
        assert not (outcome.is_match and outcome.error is not None)
