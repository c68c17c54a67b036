"""infra/s3conn.py over real sockets: connections kept alive and reused, one closed while
idle replaced without the caller seeing it, TLS verified against the client's CA bundle,
the client's timeouts, botocore's errors, and what stays with the client's session."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import URLLib3Session

from devtools import devstack
from edgematch.config.settings import Settings
from edgematch.infra import s3conn
from edgematch.infra.s3answers import UnreadableAnswer, object_answer
from edgematch.infra.s3conn import Connections
from edgematch.infra.storage import make_s3_client

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive unless told otherwise
    connections: ClassVar[list[int]] = []
    #: Close the connection after each answer without saying so (as an idle timeout does).
    drop_after: ClassVar[bool] = False
    delay_s: ClassVar[float] = 0.0

    def setup(self) -> None:
        super().setup()
        type(self).connections.append(self.client_address[1])

    def do_GET(self) -> None:
        time.sleep(type(self).delay_s)
        body = f"{self.path} on {self.client_address[1]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if type(self).drop_after:
            self.close_connection = True

    def log_message(self, *_: Any) -> None:
        return None


def _serve(
    handler: type[_Handler], tls: tuple[Path, Path] | None = None
) -> Generator[str, None, None]:
    server = ThreadingHTTPServer(("127.0.0.1", devstack.free_port()), handler)
    scheme = "http"
    if tls is not None:
        import ssl  # noqa: PLC0415

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def handler() -> type[_Handler]:
    class Handler(_Handler):
        connections: ClassVar[list[int]] = []

    return Handler


@pytest.fixture
def url(handler: type[_Handler]) -> Iterator[str]:
    yield from _serve(handler)


def _session(**config: Any) -> Any:
    """The HTTP session botocore gives a client of that configuration."""
    return URLLib3Session(**config)


def _get(conns: Connections, url: str) -> bytes:
    response = conns.send("GET", url, {"X-Test": "1"}, None, stream=False)
    assert response.status_code == 200
    body: bytes = response.content
    return body


def test_requests_to_one_origin_share_one_kept_connection(
    url: str, handler: type[_Handler]
) -> None:
    conns = Connections(URLLib3Session())
    bodies = [_get(conns, f"{url}/b/k{i}?tagging") for i in range(20)]
    assert len(handler.connections) == 1
    assert bodies[3].startswith(b"/b/k3?tagging on ")


def test_a_streamed_answer_gives_its_connection_back_only_once_read_to_the_end(
    url: str, handler: type[_Handler]
) -> None:
    conns = Connections(URLLib3Session())
    streamed = conns.send("GET", f"{url}/b/k", {}, None, stream=True)
    _get(conns, f"{url}/b/other")  # the streamed one still holds its connection
    assert len(handler.connections) == 2
    assert streamed.raw.read(1 << 16).startswith(b"/b/k on ")
    streamed.raw.release_conn()
    _get(conns, f"{url}/b/again")
    _get(conns, f"{url}/b/again")
    assert len(handler.connections) == 2
    fresh = Connections(URLLib3Session())
    half = fresh.send("GET", f"{url}/b/k", {}, None, stream=True)
    half.raw.read(2)
    half.raw.release_conn()  # not read to the end: dropped, never reused
    assert _get(fresh, f"{url}/b/last")
    assert len(handler.connections) == 4


def test_a_connection_closed_while_idle_is_replaced_unseen(
    url: str, handler: type[_Handler]
) -> None:
    handler.drop_after = True
    conns = Connections(URLLib3Session())
    for i in range(5):
        assert _get(conns, f"{url}/b/k{i}").startswith(f"/b/k{i} on ".encode())
    assert len(handler.connections) == 5


def test_errors_are_botocores(url: str, handler: type[_Handler]) -> None:
    port = devstack.free_port()  # nothing listens there
    with pytest.raises(EndpointConnectionError):
        _get(Connections(URLLib3Session()), f"http://127.0.0.1:{port}/b/k")
    # edgematch's S3 client: its read timeout is EDGEMATCH_API_TIMEOUT_S, default 10 s.
    settings = Settings()
    handler.delay_s = settings.api_timeout_s + 1
    session = make_s3_client(settings)._endpoint.http_session  # type: ignore[attr-defined]
    with pytest.raises(ReadTimeoutError):
        _get(Connections(session), f"{url}/b/slow")


def test_a_header_sent_twice_is_joined_and_two_lengths_are_unreadable() -> None:
    """Two Content-Lengths that disagree are never read as either: the GET's answer is
    refused (retried, then unscannable), as through urllib3."""

    class Twice(_Handler):
        connections: ClassVar[list[int]] = []

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.send_header("content-length", "7")
            self.send_header("x-amz-meta-a", "1")
            self.end_headers()
            self.wfile.write(b"hash!")
            self.close_connection = True

    for url in _serve(Twice):
        response = Connections(URLLib3Session()).send("GET", f"{url}/b/k", {}, None, stream=True)
        assert response.headers["Content-Length"] == "5, 7"
        with pytest.raises(UnreadableAnswer):
            object_answer(response, checksums=False)
        response.raw.close()


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 20"])
def test_a_server_closing_before_its_answer_is_connection_closed(sent: bytes) -> None:
    class Cut(_Handler):
        connections: ClassVar[list[int]] = []

        def do_GET(self) -> None:
            self.wfile.write(sent)
            self.close_connection = True

    for url in _serve(Cut):
        with pytest.raises(ConnectionClosedError):
            _get(Connections(URLLib3Session()), f"{url}/b/k")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: its file (the CA bundle too) and key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_is_verified_against_the_clients_ca_bundle(
    certificate: tuple[Path, Path], handler: type[_Handler]
) -> None:
    for url in _serve(handler, tls=certificate):
        # The default bundle does not trust a self-signed certificate: refused, not read.
        with pytest.raises(SSLError):
            _get(Connections(URLLib3Session()), f"{url}/b/k")
        # The client's bundle (AWS_CA_BUNDLE, Config/verify=path) trusts it.
        trusted = Connections(_session(verify=str(certificate[0])))
        assert _get(trusted, f"{url}/b/k").startswith(b"/b/k on ")
        assert _get(trusted, f"{url}/b/k2").startswith(b"/b/k2 on ")
        # Verification off only where the client's is (--no-verify-ssl).
        assert _get(Connections(URLLib3Session(verify=False)), f"{url}/b/k")


def test_a_proxy_or_a_client_certificate_stays_with_the_clients_session(
    certificate: tuple[Path, Path],
) -> None:
    url = "https://uploads.s3.us-east-1.amazonaws.com/k"
    assert Connections(URLLib3Session()).handles(url)
    proxied = Connections(URLLib3Session(proxies={"https": "http://127.0.0.1:3128"}))
    assert not proxied.handles(url)
    assert proxied.handles("http://127.0.0.1:9000/b/k")  # no proxy for that scheme
    with_cert = Connections(URLLib3Session(client_cert=str(certificate[0])))
    assert not with_cert.handles(url)


def test_a_stale_connection_whose_server_is_gone_is_endpoint_connection_error(
    handler: type[_Handler],
) -> None:
    """The kept connection was closed while idle, and the new one is refused: the caller
    sees the refusal, as botocore raises it, not the closed connection."""
    handler.drop_after = True
    serving = _serve(handler)
    url = next(serving)
    conns = Connections(URLLib3Session())
    assert _get(conns, f"{url}/b/k")
    serving.close()  # the server is gone: nothing listens on its port any more
    with pytest.raises(EndpointConnectionError):
        _get(conns, f"{url}/b/k")


def test_idle_connections_are_kept_for_the_most_recent_origins_only(
    handler: type[_Handler],
) -> None:
    """One origin a bucket where buckets are virtual hosts: only the ``MAX_ORIGINS`` most
    recently used keep their idle connections, the others' are closed."""
    servings = [_serve(handler) for _ in range(s3conn.MAX_ORIGINS + 2)]
    try:
        urls = [next(serving) for serving in servings]
        conns = Connections(URLLib3Session())
        for url in urls:
            assert _get(conns, f"{url}/b/k")
        kept = conns._idle
        assert len(kept) == s3conn.MAX_ORIGINS
        ports = [int(url.rsplit(":", 1)[1]) for url in urls]
        assert [origin[2] for origin in kept] == ports[2:]  # the two oldest dropped
        assert all(len(idle) == 1 for idle in kept.values())
        assert _get(conns, f"{urls[0]}/b/k")  # a dropped origin connects again
        assert len(handler.connections) == len(urls) + 1
    finally:
        for serving in servings:
            serving.close()
