"""The test tiers, enforced: a test that starts a process must say so with its marker.

``scripts/test --fast`` runs the tests marked neither ``integration``, ``e2e`` nor
``chaos`` and expects them to start nothing. Nobody has to remember that: while an
unmarked test runs (its setup, call and teardown), starting a process (``subprocess``,
``os.fork``, ``os.posix_spawn``, ``os.system``) or listening on a socket fails it, and so
does asking for a fixture that starts a server. A test under ``tests/integration``,
``tests/e2e`` or ``tests/chaos`` must carry that directory's marker, and a test marked
``alone`` (run by itself after the parallel phase) must be in one of those tiers.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

#: The markers of the tiers that start processes; everything else is the fast tier.
PROCESS_MARKERS = ("integration", "e2e", "chaos")
#: Fixtures that start a server (directly, or through the fixtures they use: the check
#: looks at every fixture a test needs, so ``redis_client`` and ``make_settings`` count).
SERVER_FIXTURES = frozenset({"redis_server", "rabbit_server", "make_pipeline"})


def process_tier(item: pytest.Item) -> str | None:
    """The process tier ``item`` is marked with, or None for the fast tier."""
    return next((m for m in PROCESS_MARKERS if item.get_closest_marker(m)), None)


def misplaced(item: pytest.Item, tests_root: Path) -> str | None:
    """Why ``item`` is not marked as its directory says (None when it is)."""
    parts = item.path.relative_to(tests_root).parts
    wanted = parts[0] if parts and parts[0] in PROCESS_MARKERS else None
    if wanted is not None and item.get_closest_marker(wanted) is None:
        return (
            f"{item.nodeid} is in tests/{wanted} but not marked {wanted}: "
            f"add `pytestmark = pytest.mark.{wanted}` to its module"
        )
    if item.get_closest_marker("alone") is not None and process_tier(item) is None:
        return f"{item.nodeid} is marked alone but is in no process tier (the fast tier)"
    return None


def server_fixtures(item: pytest.Item) -> list[str]:
    """The server-starting fixtures an unmarked ``item`` needs (empty when marked)."""
    if process_tier(item) is not None:
        return []
    names: list[str] = getattr(item, "fixturenames", [])
    return sorted(SERVER_FIXTURES.intersection(names))


def _refuse(nodeid: str, what: str) -> Callable[..., NoReturn]:
    def refuse(*_: Any, **__: Any) -> NoReturn:
        pytest.fail(
            f"{nodeid} {what}, but it is not marked integration, e2e or chaos: mark it "
            "(the fast tier starts no process), or keep it pure",
            pytrace=True,
        )

    return refuse


@contextmanager
def no_processes(nodeid: str) -> Iterator[None]:
    """While inside: starting a process or listening on a socket fails the test ``nodeid``.

    pytest.fail raises an exception outside ``Exception``: code under test that catches
    ``OSError`` or ``Exception`` cannot swallow it.
    """
    patch = pytest.MonkeyPatch()
    starts = _refuse(nodeid, "starts a process")
    try:
        patch.setattr(subprocess.Popen, "_execute_child", starts)
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "popen"):
            if hasattr(os, name):
                patch.setattr(os, name, starts)
        patch.setattr(socket.socket, "listen", _refuse(nodeid, "listens on a socket"))
        yield
    finally:
        patch.undo()


class TierGuard:
    """The pytest plugin: fails a test that breaks the rules above, with what to do."""

    def __init__(self, tests_root: Path) -> None:
        self.tests_root = tests_root

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        problem = misplaced(item, self.tests_root)
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        servers = server_fixtures(item)
        if servers:
            pytest.fail(
                f"{item.nodeid} uses {', '.join(servers)}, which starts a server, but it is "
                "not marked integration, e2e or chaos",
                pytrace=False,
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        # Setup, call and teardown alike: a fixture may start what the test body does not.
        if process_tier(item) is not None:
            return (yield)
        with no_processes(item.nodeid):
            return (yield)
