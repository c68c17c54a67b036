"""What tests/deploy reads: the files under deploy/, the Dockerfile and the Procfile, parsed once.

Every fixture is plain data from the repository; nothing here talks to a cluster or a
network. Test modules get everything through fixtures (tests/ is not a package).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
#: Example Secrets for operators to copy; never applied, so not in kustomization.yaml.
SECRETS_EXAMPLE = "secrets.example.yaml"


def _load_manifest_files() -> dict[str, list[dict[str, Any]]]:
    """deploy/k8s file name -> its documents, for every *.yaml but kustomization.yaml."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        with path.open(encoding="utf-8") as fh:
            out[path.name] = [body for body in yaml.safe_load_all(fh) if body is not None]
    return out


def _name(doc: dict[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("name", ""))


def _parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit as section -> [(key, value)], keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections.setdefault(current, []).append((key.strip(), value.strip()))
    return sections


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def _entrypoint() -> list[str]:
    """The image's ENTRYPOINT, which must be in exec (JSON) form."""
    values = [args for ins, args in _dockerfile_instructions() if ins == "ENTRYPOINT"]
    assert len(values) == 1, "one ENTRYPOINT"
    parsed = json.loads(values[0])
    assert isinstance(parsed, list)
    return [str(a) for a in parsed]


def _procfile() -> dict[str, list[str]]:
    """Procfile process type -> its command line."""
    out: dict[str, list[str]] = {}
    for raw in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        out[name.strip()] = shlex.split(command)
    return out


@pytest.fixture(scope="session")
def manifest_files() -> dict[str, list[dict[str, Any]]]:
    return _load_manifest_files()


@pytest.fixture(scope="session")
def manifests(manifest_files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every document of deploy/k8s, in file order."""
    return [doc for docs in manifest_files.values() for doc in docs]


@pytest.fixture(scope="session")
def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {_name(d): d for d in manifests if d.get("kind") == "Deployment"}


@pytest.fixture(scope="session")
def scaled_objects(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {_name(d): d for d in manifests if d.get("kind") == "ScaledObject"}


@pytest.fixture(scope="session")
def configmap(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the edgematch ConfigMap."""
    found = [d for d in manifests if d.get("kind") == "ConfigMap" and _name(d) == "edgematch"]
    assert len(found) == 1, "one ConfigMap named edgematch"
    return {str(k): str(v) for k, v in found[0]["data"].items()}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container"
    found: dict[str, Any] = containers[0]
    return found


@pytest.fixture(scope="session")
def containers(deployments: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deployment name -> its pod's one container."""
    return {name: _container(body) for name, body in deployments.items()}


@pytest.fixture(scope="session")
def queues_of(containers: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Worker Deployment name -> the steps it consumes (its --queues)."""
    out: dict[str, list[str]] = {}
    for name, c in containers.items():
        args = [str(a) for a in c.get("args", [])]
        if args and args[0] == "worker":
            assert "--queues" in args, f"{name}: a worker without --queues consumes everything"
            out[name] = args[args.index("--queues") + 1].split(",")
    return out


@pytest.fixture(scope="session")
def units() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """deploy/systemd unit file name -> section -> [(key, value)]."""
    return {p.name: _parse_unit(p) for p in sorted(SYSTEMD.glob("*.service"))}


@pytest.fixture(scope="session")
def dockerfile() -> list[tuple[str, str]]:
    return _dockerfile_instructions()


@pytest.fixture(scope="session")
def image_entrypoint() -> list[str]:
    return _entrypoint()


@pytest.fixture(scope="session")
def procfile() -> dict[str, list[str]]:
    return _procfile()
