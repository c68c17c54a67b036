"""The tree draws the flow, and imports point one way: down.

config, errors and names at the bottom; infra (the Redis and S3 boundaries, logs, metrics)
above them; photodna, pipeline, downstream and recovery above infra; tasks and ops at the
top. Dev tools (devtools/) are outside the application: nothing in edgematch imports them,
so the package works where they are not installed. These tests read the source (imports
inside functions count too), so a wrong arrow fails here, not as an import cycle later.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "edgematch").rglob("*.py"))
MIDDLE = ("photodna", "pipeline", "downstream", "recovery")

#: layer -> layers it must never import. Each rule holds at every layer, so transitively too.
FORBIDDEN: dict[str, frozenset[str]] = {
    "config": frozenset({"infra", *MIDDLE, "tasks", "ops", "runtime"}),
    "infra": frozenset({*MIDDLE, "tasks", "ops"}),
    **{layer: frozenset({"tasks", "ops"}) for layer in MIDDLE},
}


def module_of(path: Path) -> str:
    """``edgematch/pipeline/match.py`` -> ``edgematch.pipeline.match``."""
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imported(source: str, module: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Every module the source of ``module`` imports, absolute, with its line; a name taken
    from a package (``from edgematch import pipeline``) counts as that submodule too."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "edgematch" and len(parts) > 1 else None


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    source = path.read_text(encoding="utf-8")
    return imported(source, module_of(path), is_package=path.name == "__init__.py")


def test_the_scan_reads_every_layer() -> None:
    """The scan covers each layer the rules name (so an empty glob cannot pass)."""
    layers = {layer_of(module_of(p)) for p in SOURCES}
    assert {*FORBIDDEN, "tasks", "ops", "names", "errors", "runtime"} <= layers


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_point_down(path: Path) -> None:
    """A module imports only from its own layer or the layers below it."""
    layer = layer_of(module_of(path))
    forbidden = FORBIDDEN.get(layer or "", frozenset())
    wrong = [f"line {n}: {name}" for n, name in _imports(path) if layer_of(name) in forbidden]
    assert wrong == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_application_never_imports_the_dev_tools(path: Path) -> None:
    """Nothing under edgematch/ imports devtools (the sandbox, the local stack, the demo):
    they are in neither the wheel nor the image."""
    wrong = [f"line {n}: {name}" for n, name in _imports(path) if name.split(".")[0] == "devtools"]
    assert wrong == []


def test_the_reader_sees_every_kind_of_import() -> None:
    """Absolute, relative and function-local imports are all read, resolved to full names."""
    source = (
        "from edgematch.tasks import app\n"
        "from . import keys\n"
        "from ..ops import cli\n"
        "def later() -> None:\n"
        "    import devtools.demo\n"
    )
    names = {name for _, name in imported(source, "edgematch.infra.probe")}
    assert {
        "edgematch.tasks",
        "edgematch.infra.keys",
        "edgematch.ops.cli",
        "devtools.demo",
    } <= names
    assert {layer_of(n) for n in names} >= {"tasks", "infra", "ops"}
