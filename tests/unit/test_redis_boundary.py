"""Redis is reached through one boundary (edgematch/infra/redisclient.py), and only there.

A module that builds its own client, or catches redis-py's exceptions itself, is how a
Redis error escaped untranslated and became an ``unexpected`` dead letter: these tests
read the source and fail on either, like httpx's test that no upstream exception is left
unmapped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOUNDARY = ROOT / "edgematch" / "infra" / "redisclient.py"
#: The application, the dev tools and the benchmarks; tests inspect Redis with plain
#: clients on purpose.
SOURCES = sorted(
    p for d in ("edgematch", "devtools", "bench") for p in (ROOT / d).rglob("*.py") if p != BOUNDARY
)


def _problems(path: Path) -> list[str]:
    """What in ``path`` reaches past the boundary: redis-py's exceptions, submodules, or
    a client built by hand. Only ``redis.Redis`` as a type is allowed."""
    source = path.read_text(encoding="utf-8")
    found: list[str] = []
    for word in ("RedisError", "redis.exceptions", "LockError", "LockNotOwnedError"):
        if word in source:
            found.append(f"mentions {word}")
    for node in ast.walk(ast.parse(source, str(path))):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "redis":
            found.append(f"{where}: from {node.module} import …")
        elif isinstance(node, ast.Import):
            found += [
                f"{where}: import {a.name}" for a in node.names if a.name.startswith("redis.")
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "redis"
            and node.attr != "Redis"
        ):
            found.append(f"{where}: redis.{node.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "redis"
        ):
            found.append(f"{where}: redis.{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "redis.Redis":
            found.append(f"{where}: redis.Redis(…) builds a client by hand")
    return found


def test_the_scan_covers_the_modules_that_use_redis() -> None:
    """The scan reads the modules that talk to Redis (so an empty glob cannot pass)."""
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"edgematch/pipeline/buffer.py", "edgematch/tasks/steps.py", "bench/stack.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_reaches_past_the_redis_boundary(path: Path) -> None:
    """No module but the boundary names redis-py's exceptions, imports from redis-py, or
    builds a client: every Redis error reaches it as ``RedisUnavailable``."""
    assert _problems(path) == []


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """Each way past the boundary that the scan claims to catch is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import redis\n"
        "import redis.lock\n"
        "from redis.exceptions import ConnectionError\n"
        "def f(url: str) -> redis.Redis:\n"
        "    client = redis.Redis.from_url(url)\n"
        "    try:\n"
        "        client.ping()\n"
        "    except redis.ConnectionError:\n"
        "        pass\n"
        "    return redis.Redis(port=1)\n",
        encoding="utf-8",
    )
    problems = "\n".join(_problems(bad))
    for what in (
        "import redis.lock",
        "from redis.exceptions",
        "redis.Redis.from_url",
        "redis.ConnectionError",
        "builds a client by hand",
    ):
        assert what in problems
