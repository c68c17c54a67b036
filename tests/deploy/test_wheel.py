"""What ships: the wheel built from this checkout holds the application and nothing else.

The sandbox, the local stack and the demo live in devtools/, for scripts/, tests and
bench from a source checkout: they need moto and redis-server, which a production install
has not, and a stand-in for PhotoDNA has no place on a production path. The image is
built from the same package (the Dockerfile copies edgematch/ alone and installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Not part of the source a wheel is built from.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "results"
)
DEV_ONLY = ("sandbox", "demo", "localstack", "devstack", "devtools")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The file names in a wheel built by `pip wheel .` from a copy of this checkout."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out = base / "out"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = out.glob("edgematch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.integration  # builds the wheel with pip, a process
def test_the_wheel_holds_the_application(wheel_files: list[str]) -> None:
    """Every module of edgematch/ is in the wheel, with the Lua scripts and py.typed."""
    expected = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "edgematch").rglob("*")
        if p.suffix in {".py", ".lua"} or p.name == "py.typed"
    }
    assert expected <= set(wheel_files)
    assert any(name.startswith("edgematch/infra/lua/") for name in wheel_files)


@pytest.mark.integration  # builds the wheel with pip, a process
def test_the_wheel_holds_no_dev_tools(wheel_files: list[str]) -> None:
    """No sandbox, demo, local-stack or devtools file, and only one top-level package."""
    dev = [n for n in wheel_files if any(word in n.lower() for word in DEV_ONLY)]
    assert dev == []
    top = {n.split("/")[0] for n in wheel_files if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"edgematch"}


def test_the_image_copies_the_application_package_alone(
    dockerfile: list[tuple[str, str]],
) -> None:
    """The build stage copies edgematch/ and what installing it needs, no dev tools; the
    final stage takes only the installed venv."""
    copied = set()
    for ins, args in dockerfile:
        if ins == "COPY" and not args.startswith("--from"):
            *sources, _dest = args.split()
            copied.update(sources)
    assert copied == {"pyproject.toml", "README.md", "requirements/dev.lock", "edgematch"}
    final = [args for ins, args in dockerfile if ins == "COPY" and args.startswith("--from")]
    assert final == ["--from=build /opt/edgematch /opt/edgematch"]
