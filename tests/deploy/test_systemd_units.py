"""deploy/systemd: units systemd accepts, hardened, draining on SIGTERM like the pods."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgematch.config.settings import known_names

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/edgematch/bin/edgematch"
UNITS = (
    "edgematch-intake.service",
    "edgematch-webhook.service",
    "edgematch-worker@.service",
    "edgematch-beat.service",
)
#: Default of EDGEMATCH_SHUTDOWN_GRACE_S when the environment file does not set it.
DEFAULT_SHUTDOWN_GRACE_S = 30
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
    "KillSignal": "SIGTERM",
    "KillMode": "mixed",
}

Unit = dict[str, list[tuple[str, str]]]


def _values(unit: Unit, key: str) -> list[str]:
    return [v for k, v in unit.get("Service", []) if k == key]


def _one(unit: Unit, key: str) -> str:
    values = _values(unit, key)
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def _env(unit: Unit) -> dict[str, str]:
    pairs = (v.partition("=") for v in _values(unit, "Environment"))
    return {k: v for k, _, v in pairs}


def _env_file() -> dict[str, str]:
    out = {}
    for raw in (SYSTEMD / "edgematch.env.example").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _copies_for_verify(tmp_path: Path) -> list[str]:
    """The units with ExecStart pointing at this venv's edgematch, and two worker instances."""
    here = str(Path(sys.executable).parent / "edgematch")
    for name in UNITS:
        text = (SYSTEMD / name).read_text(encoding="utf-8").replace(INSTALLED, here)
        (tmp_path / name).write_text(text, encoding="utf-8")
    escaped = subprocess.run(
        ["systemd-escape", "--template", "edgematch-worker@.service", "ingest,background"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [
        "edgematch-intake.service",
        "edgematch-webhook.service",
        "edgematch-beat.service",
        "edgematch-worker@match.service",
        escaped,
    ]


def test_the_process_types_have_units(units: dict[str, Unit]) -> None:
    """intake, webhook, a worker template (instance = queue set) and beat, each with an
    [Install]."""
    assert set(units) == set(UNITS)
    for name, unit in units.items():
        assert unit["Install"] == [("WantedBy", "multi-user.target")], name


def test_units_run_as_a_dedicated_user_with_hardening(units: dict[str, Unit]) -> None:
    """User edgematch, an EnvironmentFile, and the sandboxing directives issue 5 lists."""
    for name, unit in units.items():
        assert _one(unit, "User") == "edgematch", name
        assert _one(unit, "Group") == "edgematch", name
        assert _one(unit, "EnvironmentFile") == "/etc/edgematch/edgematch.env", name
        for key, value in HARDENING.items():
            assert _one(unit, key) == value, f"{name}: {key}"
        assert "@system-service" in _values(unit, "SystemCallFilter"), name


def test_stop_waits_longer_than_the_drain(units: dict[str, Unit]) -> None:
    """TimeoutStopSec exceeds EDGEMATCH_SHUTDOWN_GRACE_S, so SIGKILL never cuts a drain short."""
    grace = float(_env_file().get("EDGEMATCH_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S))
    for name, unit in units.items():
        assert float(_one(unit, "TimeoutStopSec")) > grace, name
        assert _one(unit, "RestartPreventExitStatus") == "2", f"{name}: config errors loop"


def test_the_key_is_a_credential_never_in_the_environment_file(units: dict[str, Unit]) -> None:
    """Only the worker template loads the key (LoadCredential); the env file has no secret.

    Its instances may consume match, which calls the API; intake and beat never do.
    """
    worker = units["edgematch-worker@.service"]
    assert _one(worker, "LoadCredential").startswith("subscription-key:/etc/edgematch/")
    assert _env(worker)["EDGEMATCH_SUBSCRIPTION_KEY_FILE"] == "%d/subscription-key"
    for name in ("edgematch-intake.service", "edgematch-beat.service"):
        unit = units[name]
        assert not _values(unit, "LoadCredential"), name
        assert not [k for k in _env(unit) if k.startswith("EDGEMATCH_SUBSCRIPTION_KEY")], name
    # The webhook's token is its own credential, the same way; it gets no subscription key.
    webhook = units["edgematch-webhook.service"]
    assert _one(webhook, "LoadCredential").startswith("webhook-token:/etc/edgematch/")
    assert _env(webhook)["EDGEMATCH_WEBHOOK_TOKEN_FILE"] == "%d/webhook-token"
    assert not [k for k in _env(webhook) if k.startswith("EDGEMATCH_SUBSCRIPTION_KEY")]
    assert not [k for k in _env_file() if k.startswith("EDGEMATCH_WEBHOOK_TOKEN")]
    env = _env_file()
    assert "EDGEMATCH_SUBSCRIPTION_KEY" not in env
    assert "EDGEMATCH_SUBSCRIPTION_KEY_FILE" not in env
    assert not [k for k in env if k.startswith("AWS_") and "KEY" in k]


def test_per_unit_variables_stay_out_of_the_shared_file(units: dict[str, Unit]) -> None:
    """intake and beat have their own metrics ports, worker instances get theirs in drop-ins."""
    ports = {name: _env(unit).get("EDGEMATCH_METRICS_PORT") for name, unit in units.items()}
    assert ports.pop("edgematch-worker@.service") is None, "instances on one host would collide"
    assert None not in ports.values() and len(set(ports.values())) == len(ports), ports
    # deploy/README.md gives worker instances 9102 and up on a host.
    assert not {int(p) for p in ports.values() if p} & set(range(9102, 9110))
    per_unit = {k for unit in units.values() for k in _env(unit)} | {"EDGEMATCH_METRICS_PORT"}
    assert not per_unit & set(_env_file())


def test_unit_variables_are_read_by_the_code(units: dict[str, Unit]) -> None:
    """Every EDGEMATCH_* variable the units and the env file set is one the code reads."""
    names = {k for unit in units.values() for k in _env(unit)} | set(_env_file())
    assert not [n for n in names if n.startswith("EDGEMATCH_") and n not in known_names()]


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` loads every unit (and two worker instances) without a word."""
    names = _copies_for_verify(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_rates_the_units_exposure_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates each unit's exposure at most 2.0 ("OK")."""
    for name in _copies_for_verify(tmp_path)[:3]:
        result = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", "--threshold=20", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        level = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
        assert result.returncode == 0 and level, f"{name}: {result.stdout[-300:]}"
        assert float(level.group(1)) <= 2.0, name
