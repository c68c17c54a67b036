"""moto's server, counting the requests it serves by S3 or SQS operation:
``GET /_bench/requests`` answers the counts since the last ``POST /_bench/requests/reset``.

Served with HTTP/1.1 keep-alive, as S3 and SQS serve: moto's own server (werkzeug's
development server, ``python -m moto.server``) closes every connection after one answer,
so each request would cost its client a new TCP connection that production never pays
(0.15–0.22 ms of the client's CPU a lean call here: ``closing_costs`` of ``bench.s3calls``).
The same moto is served here by waitress, a threaded WSGI server that keeps connections
open. ``--closing-port`` serves the same moto (one process, the same buckets and queues)
with moto's own server too, for runs that show what the closing costs side by side
(``python -m bench --moto-closing``).

The count is made on the server side, one dictionary increment a request, so it sees every
client (edgematch's processes, the benchmark's own) and costs moto almost nothing. S3
operations are named from the method, the path and the query's sub-resource (path-style
addressing, as edgematch and the benchmark use against moto); SQS's from the
``X-Amz-Target`` header (JSON protocol) or the ``Action`` parameter (query protocol).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bench.prices import SQS_OPERATIONS
from devtools.devstack import MotoServer, free_port, wait_for_port

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: waitress's threads: more than the requests a benchmark run has in flight at once.
THREADS = 32

#: S3 sub-resources that name an operation on their own (``?tagging`` …).
_SUBRESOURCES = ("tagging", "versions", "uploads", "uploadId", "delete", "notification", "acl")


def s3_operation(method: str, path: str, query: str, headers: dict[str, str]) -> str:
    """The S3 operation of a path-style request. Pure."""
    parts = [p for p in path.split("/") if p]
    params = parse_qs(query, keep_blank_values=True)
    on_object = len(parts) >= 2
    sub = next((s for s in _SUBRESOURCES if s in params), "")
    target = "Object" if on_object else "Bucket"
    if sub == "tagging":
        verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
        return f"{verb}{target}Tagging"
    if not on_object:
        if method == "GET":
            if sub == "versions":
                return "ListObjectVersions"
            return "ListObjectsV2" if params.get("list-type") == ["2"] else "ListObjects"
        if method == "POST" and sub == "delete":
            return "DeleteObjects"
        return f"{method}Bucket{sub.capitalize()}"
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "CopyObject"
        return "UploadPart" if "partNumber" in params else "PutObject"
    return {
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "DELETE": "DeleteObject",
        "POST": "PostObject",
    }.get(method, method)


def sqs_operation(headers: dict[str, str], query: str, body: bytes) -> str | None:
    """The SQS operation of a request, or None when it is not one. Pure."""
    target = headers.get("x-amz-target", "")
    if target.startswith("AmazonSQS."):
        return target.split(".", 1)[1]
    for source in (query, body.decode("utf-8", "replace")):
        action = parse_qs(source).get("Action", [""])[0]
        if action in SQS_OPERATIONS:
            return action
    return None


class Counting:
    """WSGI middleware: count each request's operation, then hand it to moto."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/requests"):
            return self._admin(environ, start_response)
        # moto reads the request's path as sent from RAW_URI, which werkzeug sets and
        # waitress names REQUEST_URI: without it moto decodes PATH_INFO once more, and a key
        # with "%20" in its name would be another key.
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        name = self._classify(environ)
        with self._lock:
            self.counts[name] += 1
        return self.app(environ, start_response)

    def _classify(self, environ: dict[str, Any]) -> str:
        headers = {
            k[5:].replace("_", "-").lower(): str(v)
            for k, v in environ.items()
            if k.startswith("HTTP_")
        }
        query = environ.get("QUERY_STRING", "")
        body = b""
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        sqs = sqs_operation(headers, query, body)
        if sqs is not None:
            return f"sqs:{sqs}"
        method = environ.get("REQUEST_METHOD", "GET")
        return "s3:" + s3_operation(method, environ.get("PATH_INFO", ""), query, headers)

    def _admin(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            body = json.dumps(dict(self.counts)).encode()
            if environ.get("REQUEST_METHOD") == "POST":
                self.counts.clear()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]


class CountingMotoServer(MotoServer):
    """:class:`devtools.devstack.MotoServer` run as this module: the same moto, counted,
    kept alive at :attr:`url`, and closing every connection at :attr:`closing_url`."""

    def __init__(self) -> None:
        super().__init__()
        self.closing_port = free_port()

    @property
    def closing_url(self) -> str:
        """The same moto behind moto's own server, which closes every connection."""
        return f"http://127.0.0.1:{self.closing_port}"

    def start(self) -> CountingMotoServer:
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "bench.motocount", "-H", "127.0.0.1"),
                *("-p", str(self.port), "--closing-port", str(self.closing_port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 30.0)
        wait_for_port(self.closing_port, 30.0)
        return self


def _lean_retention_check() -> None:
    """moto (5.x) reads a message's retention period, for every message a receive looks at,
    through ``get_queue_attributes``, which computes every attribute of the queue — counting
    all its messages three times: a receive from a queue of n messages costs O(n²), and
    moto spent four fifths of its CPU there under a backlog of 1,100 events. Read the one
    attribute instead: the same answer (a message past the queue's retention is not
    handed out), without the quadratic cost."""
    from moto.core.utils import unix_time  # noqa: PLC0415
    from moto.sqs.models import Message, SQSBackend  # noqa: PLC0415

    def within_retention(self: SQSBackend, queue_name: str, message: Message) -> bool:
        queue = self.get_queue(queue_name)
        period = int(queue.message_retention_period)  # type: ignore[attr-defined]
        return bool(period + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    SQSBackend.is_message_valid_based_on_retention_period = within_retention  # type: ignore[method-assign]


def main() -> None:
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from waitress import serve  # type: ignore[import-untyped, import-not-found, unused-ignore]  # noqa: PLC0415
    from werkzeug.serving import make_server  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m bench.motocount")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True, help="kept alive (waitress)")
    parser.add_argument(
        "--closing-port", type=int, help="the same moto with its own server (closes connections)"
    )
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    _lean_retention_check()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # type: ignore[attr-defined]
    counted = Counting(app)
    if args.closing_port:
        closing = make_server(
            args.host,
            args.closing_port,
            counted,
            threaded=True,
            request_handler=MotoRequestHandler,
        )
        threading.Thread(target=closing.serve_forever, name="closing", daemon=True).start()
    # Threads enough for every client of a run (a worker's flights, intake's polls) at once.
    serve(counted, host=args.host, port=args.port, threads=THREADS, _quiet=True)


if __name__ == "__main__":
    main()
