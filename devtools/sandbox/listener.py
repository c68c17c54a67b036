"""The sandbox's listening socket: a threading HTTP/1.1 server that tracks its connections.

Tracking lets :meth:`SandboxHTTPServer.close_connections` wake every handler blocked on an
idle keep-alive connection, so stopping a sandbox is prompt.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.sandbox.state import SandboxState

__all__ = ["SandboxHTTPServer"]


class SandboxHTTPServer(ThreadingHTTPServer):
    """One thread per connection; ``state`` is what every handler answers by."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        state: SandboxState,
        handler: type[BaseHTTPRequestHandler],
        *,
        verbose: bool,
    ) -> None:
        self.state = state
        self.verbose = verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._log_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds on
        # hosts without working reverse DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake every handler blocked on an idle keep-alive connection, so stop() is prompt."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Already closed by the client: nothing left to wake.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-answer are routine (timeouts, chaos tests); only real bugs
        # deserve a traceback on stderr.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def log(self, line: str) -> None:
        with self._log_lock:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
