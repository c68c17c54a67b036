"""No module uses another module's private names.

A leading underscore says "only this module relies on this": a module that imports one
(``from edgematch.tasks.steps import _guarded``) or reaches into one
(``storage._translated``) ties itself to code its owner may change at will. A name other
modules need is made public, with a docstring, or moved where both can import it. The
test reads the application, the dev tools and the benchmarks; tests may still exercise a
module's private helpers directly.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("edgematch", "devtools", "bench")
SOURCES = sorted(p for d in PROJECT for p in (ROOT / d).rglob("*.py"))


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _ours(module: str) -> bool:
    return module.split(".", maxsplit=1)[0] in PROJECT


def borrowed(source: str, module: str) -> Iterator[str]:
    """Private names of other project modules that ``source`` (the text of ``module``)
    imports or reads as ``alias._name``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> project module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and _ours(node.module):
            for alias in node.names:
                if _private(alias.name) and node.module != module:
                    yield f"line {node.lineno}: from {node.module} import {alias.name}"
                # `from edgematch.pipeline import match` binds a module, too.
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and aliases[node.value.id] != module
        ):
            yield f"line {node.lineno}: {node.value.id}.{node.attr}"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_the_scan_reads_the_project() -> None:
    """Every package is read (so an empty glob cannot pass)."""
    assert {_module(p).split(".")[0] for p in SOURCES} == set(PROJECT)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    """Only a module itself uses its ``_private`` names."""
    assert list(borrowed(path.read_text(encoding="utf-8"), _module(path))) == []


def test_the_reader_sees_imports_and_attribute_reads() -> None:
    """Both ways of borrowing are found; a module's own names and dunders are not."""
    source = (
        "from edgematch.tasks.steps import _guarded, guarded\n"
        "from edgematch.infra import storage\n"
        "import edgematch.infra.keys as k\n"
        "from edgematch.probe import _own\n"
        "storage._translated(k._x, storage.__name__)\n"
    )
    found = list(borrowed(source, "edgematch.probe"))
    assert [f.split(": ", 1)[1] for f in found] == [
        "from edgematch.tasks.steps import _guarded",
        "storage._translated",
        "k._x",
    ]
