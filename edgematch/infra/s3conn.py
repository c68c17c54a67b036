"""The lean S3 path's HTTP connections: kept alive per origin, over ``http.client`` directly.

botocore sends through urllib3 (a pool manager, its URL parsing and header classes, then
``http.client``); for the lean path's three small requests that layering was most of a
call's CPU. Here a request goes straight to an ``http.client`` connection kept for its
origin (scheme, host, port; the ``MAX_ORIGINS`` most recently used). With the signature of
infra/sigv4.py, a tag GET costs 0.42 of boto3's CPU, against 0.58 before both
(``bench.s3calls``; docs/benchmark.md, "Cost per hash, 2026-12-04 (afternoon)").

Everything is taken from the boto3 client's own HTTP session, so the wire and the security
are the client's: TLS verified against the client's CA bundle (``AWS_CA_BUNDLE``, its
``verify``; verification is off only where the client's is), its connect and read
timeouts, its socket options (TCP_NODELAY, keep-alive), at most ``max_pool_connections``
idle connections an origin. A URL the client would send through a proxy, or a client with
a client certificate, stays with the client's session (``Connections.handles``).

Errors are botocore's, as its session raises them (``EndpointConnectionError``,
``ConnectTimeoutError``, ``ReadTimeoutError``, ``SSLError``, ``ConnectionClosedError``),
so botocore's retries and s3errors.translated see what they always saw. A kept connection
the server closed while it was idle is found on its next request, before any answer: that
request goes once more on a new connection (S3 closes idle connections after a while).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    BotoCoreError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.httpsession import get_cert_path

__all__ = ["Connections"]

_DEFAULT_TIMEOUT_S: Final = 60.0
#: Origins whose idle connections are kept, the most recently used (as urllib3's pool
#: manager keeps botocore's pools): one origin a bucket where buckets are virtual hosts.
MAX_ORIGINS: Final = 10
#: A failure of a reused connection before any answer: it was closed while idle.
_STALE: Final = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
_Origin = tuple[str, str, int]


class Connections:
    """Connections kept per origin for one boto3 client's HTTP session. Thread-safe: a
    connection serves one request at a time, taken from the idle ones or made."""

    def __init__(self, session: Any) -> None:
        """``session``: the client's ``URLLib3Session`` (``client._endpoint.http_session``)."""
        timeout = getattr(session, "_timeout", _DEFAULT_TIMEOUT_S)
        self._connect_s = float(getattr(timeout, "connect_timeout", timeout) or _DEFAULT_TIMEOUT_S)
        self._read_s = float(getattr(timeout, "read_timeout", timeout) or _DEFAULT_TIMEOUT_S)
        self._max_idle = int(getattr(session, "_max_pool_connections", 10))
        self._socket_options: list[tuple[int, int, int]] = list(
            getattr(session, "_socket_options", None) or []
        )
        self._verify: bool | str = getattr(session, "_verify", True)
        self._proxies = getattr(session, "_proxy_config", None)
        self._client_cert = getattr(session, "_cert_file", None)
        self._context: ssl.SSLContext | None = None
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def handles(self, url: str) -> bool:
        """Whether a request to ``url`` can go here: the client would send it straight to
        its host, without a proxy or a client certificate."""
        if self._client_cert or urlsplit(url).scheme not in ("http", "https"):
            return False
        return self._proxies is None or not self._proxies.proxy_url_for(url)

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, *, stream: bool
    ) -> AWSResponse:
        """Send one request; the answer's body is read here unless ``stream`` (then the
        connection comes back when the caller's read ends it: ``raw.release_conn()``)."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin: _Origin = (parts.scheme, parts.hostname or "", port)
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        conn, reused = self._take(origin, url)
        try:
            try:
                reply = self._exchange(conn, method, target, headers, body)
            except _STALE:
                if not reused:
                    raise
                conn.close()  # closed while idle: once more on a new connection
                conn, reused = self._make(origin, url), False
                reply = self._exchange(conn, method, target, headers, body)
        except BotoCoreError:
            raise  # the new connection's own failure, botocore's already (some are OSErrors)
        except ssl.SSLError as exc:
            conn.close()
            raise SSLError(endpoint_url=url, error=exc) from exc
        except TimeoutError as exc:
            conn.close()
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise ConnectionClosedError(endpoint_url=url) from exc
        raw = _Raw(reply, conn, url, lambda c: self._give_back(origin, c))
        response = AWSResponse(url, reply.status, _headers(reply), raw)
        if not stream:
            _ = response.content  # read whole: the connection goes back now
        return response

    # -- connections -------------------------------------------------------------------------
    def _take(self, origin: _Origin, url: str) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's sockets are not ours
                self._idle.clear()
                self._pid = os.getpid()
            idle = self._idle.get(origin)
            if idle:
                return idle.pop(), True
        return self._make(origin, url), False

    def _give_back(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        dropped: list[http.client.HTTPConnection] = []
        with self._lock:
            idle = self._idle.pop(origin, [])
            self._idle[origin] = idle  # the most recently used last
            if len(idle) < self._max_idle and self._pid == os.getpid():
                idle.append(conn)
            else:
                dropped.append(conn)
            while len(self._idle) > MAX_ORIGINS:
                dropped += self._idle.pop(next(iter(self._idle)))
        for stale in dropped:
            stale.close()

    def _make(self, origin: _Origin, url: str) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._connect_s, context=self._tls()
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._connect_s)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise SSLError(endpoint_url=url, error=exc) from exc
        except TimeoutError as exc:
            conn.close()
            raise ConnectTimeoutError(endpoint_url=url, error=exc) from exc
        except OSError as exc:
            conn.close()
            raise EndpointConnectionError(endpoint_url=url, error=exc) from exc
        sock = conn.sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in self._socket_options:
            sock.setsockopt(*option)
        sock.settimeout(self._read_s)
        return conn

    def _tls(self) -> ssl.SSLContext:
        """The client's TLS: its CA bundle, or no verification where the client has none."""
        if self._context is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                verify: Any = self._verify  # True (its default bundle) or a bundle's path
                context = ssl.create_default_context(cafile=get_cert_path(verify))
            self._context = context
        return self._context

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | None,
    ) -> http.client.HTTPResponse:
        conn.request(method, target, body=body, headers=headers)
        return conn.getresponse()


def _headers(reply: http.client.HTTPResponse) -> Any:
    """The answer's headers, a header sent twice joined with ", " as urllib3 joins it: two
    Content-Lengths or checksums that disagree are never read as one of them."""
    joined: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in reply.getheaders():
        first = names.setdefault(name.lower(), name)
        joined[first] = f"{joined[first]}, {value}" if first in joined else value
    return joined  # AWSResponse keeps them case-insensitively


class _Raw:
    """What AWSResponse and s3answers read of a response (urllib3's ``read``, ``stream``,
    ``release_conn``, ``close``), over ``http.client``'s, with botocore's errors."""

    def __init__(
        self,
        reply: http.client.HTTPResponse,
        conn: http.client.HTTPConnection,
        url: str,
        give_back: Any,
    ) -> None:
        self._reply = reply
        self._conn: http.client.HTTPConnection | None = conn
        self._url = url
        self._give_back = give_back

    def read(self, amt: int | None = None) -> bytes:
        try:
            return self._reply.read(amt)
        except TimeoutError as exc:
            self.close()
            raise ReadTimeoutError(endpoint_url=self._url, error=exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise ResponseStreamingError(error=exc) from exc

    def stream(self, amt: int = 2**16) -> Iterator[bytes]:
        while data := self.read(amt):
            yield data
        self.release_conn()

    def release_conn(self) -> None:
        """Keep the connection when its answer was read to the end and it stays open."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._reply.isclosed() and not self._reply.will_close:
            self._give_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._reply.close()
        if conn is not None:
            conn.close()
