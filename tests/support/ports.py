"""Free ports for the servers the tests start, safe when several test processes ask at once.

The kernel hands out a free port for ``bind(("127.0.0.1", 0))``, and the server that is to
listen there starts a moment later. In that moment another pytest-xdist worker (or another
test run on the machine) asking the kernel may be handed the same port, and one of the two
servers fails to start. So every grant is written in a small book shared by every test
process on the machine, under a file lock: a port granted in the last ``RESERVED_S`` seconds
is not granted again. The book holds only the grants of those seconds, so it stays small.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import tempfile
import time
from pathlib import Path

#: Shared by every test process on the machine (the servers bind 127.0.0.1 of all of them):
#: read when this module is imported, before tests/conftest.py gives each xdist worker a
#: temp dir of its own.
BOOK = Path(tempfile.gettempdir()) / "edgematch-test-ports.json"
#: Long enough for any server to start and bind; a restarted server keeps its own port.
RESERVED_S = 120.0


def _kernel_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port(book: Path = BOOK, reserved_s: float = RESERVED_S) -> int:
    """A port free on 127.0.0.1 now and granted to no other test process in the last
    ``reserved_s`` seconds. Raises RuntimeError if the kernel keeps offering granted ones."""
    with book.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        handle.seek(0)
        try:
            granted: dict[str, float] = json.loads(handle.read() or "{}")
        except ValueError:
            granted = {}  # a book cut short by a killed process: start a new one
        now = time.time()
        granted = {port: at for port, at in granted.items() if now - at < reserved_s}
        for _ in range(100):
            port = _kernel_port()
            if str(port) not in granted:
                break
        else:
            raise RuntimeError("the kernel offered only ports granted to other tests")
        granted[str(port)] = now
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(granted))
        return port
