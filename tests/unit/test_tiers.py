"""The test suite's own rules: the fast tier starts nothing, ports are never granted twice,
the process tiers run longest first."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import ports, schedule


def test_an_unmarked_test_cannot_start_a_process() -> None:
    """This test is in the fast tier: subprocess, fork and spawn fail it, with what to do."""
    with pytest.raises(pytest.fail.Exception, match="starts a process, but it is not marked"):
        subprocess.run(["true"], check=False)
    with pytest.raises(pytest.fail.Exception, match="not marked integration, e2e or chaos"):
        os.fork()
    with pytest.raises(pytest.fail.Exception, match="starts a process"):
        os.posix_spawn("/bin/true", ["true"], {})


def test_an_unmarked_test_cannot_listen() -> None:
    """Nor can it serve: listening on a socket is a server, bound or not."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(pytest.fail.Exception, match="listens on a socket"):
            sock.listen()


def test_a_granted_port_is_not_granted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel may offer a port twice before its server binds it: the book refuses the
    second grant and asks again."""
    book = tmp_path / "ports.json"
    offers = iter([40001, 40001, 40003])
    monkeypatch.setattr(ports, "_kernel_port", lambda: next(offers))
    assert ports.free_port(book) == 40001
    assert ports.free_port(book) == 40003


def test_a_grant_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the reservation the port may be granted again, and the book forgets it."""
    book = tmp_path / "ports.json"
    monkeypatch.setattr(ports, "_kernel_port", lambda: 40001)
    assert ports.free_port(book, reserved_s=0.0) == 40001
    assert ports.free_port(book, reserved_s=0.0) == 40001
    assert book.read_text(encoding="utf-8").count("40001") == 1


def test_real_grants_are_distinct(tmp_path: Path) -> None:
    """Ports from the kernel, through the book: a hundred grants, a hundred ports."""
    book = tmp_path / "ports.json"
    granted = [ports.free_port(book) for _ in range(100)]
    assert len(set(granted)) == 100


def test_estimates_prefer_the_record_then_siblings_then_the_tier() -> None:
    """A recorded test takes its time; a new parametrization its siblings' mean; a new
    test its tier's typical length."""
    known = {"t.py::a": 7.0, "t.py::b[x]": 10.0, "t.py::b[y]": 20.0}
    assert schedule.estimate("t.py::a", ["integration"], known) == 7.0
    assert schedule.estimate("t.py::b[z]", ["integration"], known) == 15.0
    assert schedule.estimate("t.py::c", ["e2e"], known) == schedule.TYPICAL_S["e2e"]
    assert schedule.estimate("t.py::d", [], known) == schedule.UNMARKED_S


def test_merge_keeps_tests_not_run_and_rounds() -> None:
    """A partial run (one file) updates its tests and leaves the others' times alone."""
    merged = schedule.merge({"b": 1.0, "a": 2.0}, {"a": 3.14159, "c": 0.04})
    assert merged == {"a": 3.1, "b": 1.0, "c": 0.0}
    assert list(merged) == ["a", "b", "c"]


def test_the_committed_durations_are_read() -> None:
    """tests/durations.json parses (a broken file would silently lose the order)."""
    known = schedule.load()
    assert known, "tests/durations.json is missing or unreadable"
    assert all("::" in nodeid and seconds >= 0 for nodeid, seconds in known.items())
