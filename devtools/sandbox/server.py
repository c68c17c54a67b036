"""A local stand-in for PhotoDNA Cloud Service, over real HTTP, for the demo, tests and benchmarks.

Standard library only: ``http.server.ThreadingHTTPServer`` speaking HTTP/1.1 with
keep-alive (the worker uses a pooled httpx client), one thread per connection.

Reproduced from the real service, as public material documents it:

* ``POST {base}/MatchEdgeHash`` (``multipart/form-data``, up to 5 parts, each part's form
  name echoed as ``ContentId``) and ``POST {base}/MatchHash`` (a JSON array of up to 5
  ``{"DataRepresentation": "Hash", "Value": base64}``), where ``{base}`` is
  ``/photodna/v1.0`` or the server root. Answers are HTTP 200 with ``TrackingId``,
  ``MatchResults`` in request order and ``CMRequestId``; a match carries one ``MatchFlags``
  entry (``MatchId``, ``Source``, ``Violations``).
* Per-item status 3000 OK, 3002 for a malformed hash (wrong size or empty), 3004 when
  injected; a top-level 3209 "Request Size Exceeded" for more than 5 items, a top-level
  3002 for a body with no items or that cannot be read.
* ``POST {base}/Report``: any JSON body is recorded in memory (never logged) and
  acknowledged with a ``ReportId``.
* Azure API Management in front: the ``Ocp-Apim-Subscription-Key`` header is checked
  first (401 with APIM's body), then a sliding-window rate limit of ``rate`` requests per
  second (429 with ``Retry-After``); refused requests do not use up the window.

Beyond the service, for tests: a hash is a match when the SHA-256 of its bytes is in a
known set (``--known FILE``), and seeded fault injection (5xx answers, slow answers, 3004
items, items answered twice with opposite verdicts, connections closed without an answer, a
forced status for every request). Faults,
the key, the rate and the known set can also be changed at runtime through a small JSON
admin API under ``/_sandbox/`` that needs no key, and counters are served there
(``GET /_sandbox/stats``), including the busiest one-second window of accepted requests,
computed exactly from their arrival times.

Neither the subscription key nor hash bytes nor report bodies are ever logged.

This module is the sandbox's lifecycle (:class:`Sandbox`: bind, serve in a thread, stop);
its config, state, HTTP and command line have modules of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from devtools.sandbox.config import SandboxConfig
from devtools.sandbox.handler import BASE_PATH, SandboxHandler
from devtools.sandbox.listener import SandboxHTTPServer
from devtools.sandbox.state import Gate, SandboxState

# The config (config.py), the state (state.py), the HTTP (handler.py, listener.py) and the
# command line (cli.py) have modules of their own; what callers name through the server
# is re-exported here.
__all__ = ["BASE_PATH", "Gate", "Sandbox", "SandboxConfig", "SandboxState"]

# How often serve_forever checks for shutdown: bounds stop() latency at near-zero idle CPU.
POLL_INTERVAL_S = 0.1


class Sandbox:
    """One sandbox server. Binds on creation (so ``url`` is known), serves after ``start``.

    ``with Sandbox(SandboxConfig()) as sandbox:`` serves in a daemon thread for the block.
    """

    def __init__(
        self,
        config: SandboxConfig,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = SandboxState(config, clock=clock)
        self._server = SandboxHTTPServer((host, port), self.state, SandboxHandler, verbose=verbose)
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def root_url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:54321`` (admin paths hang off it)."""
        host, port = self._server.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:54321/photodna/v1.0``."""
        return self.root_url + BASE_PATH

    def start(self) -> Sandbox:
        """Serve in a daemon thread; returns self. Calling it twice is harmless."""
        if self._stopped:
            raise RuntimeError("a stopped sandbox cannot be restarted")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL_S},
                name="edgematch-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the listening socket. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.close_connections()
        self._server.server_close()

    def stats(self) -> dict[str, object]:
        return self.state.stats()

    def configure(self, **changes: object) -> dict[str, object]:
        """Change faults, key or rate at runtime, as ``POST /_sandbox/faults`` does."""
        return self.state.configure(changes)

    def add_known(self, digests: Iterable[str]) -> int:
        return self.state.add_known(digests)

    def reset(self) -> None:
        self.state.reset()

    def reports(self) -> list[object]:
        return self.state.reports()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
