"""The Procfile, the manifests and the systemd units start the same commands."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from edgematch.names import QUEUE_STEPS
from edgematch.ops import cli

Unit = dict[str, list[tuple[str, str]]]
#: Queue sets deploy/README.md tells operators to start as worker@ instances.
DOCUMENTED_INSTANCES = ("ingest,background", "match", "results", "quarantine,reports")


def _exec_start(unit: Unit) -> list[str]:
    (line,) = [v for k, v in unit["Service"] if k == "ExecStart"]
    argv = shlex.split(line)
    assert Path(argv[0]).name == "edgematch", line
    return ["edgematch", *argv[1:]]


def _container_commands(
    containers: dict[str, dict[str, Any]], entrypoint: list[str]
) -> dict[str, list[str]]:
    """Deployment -> the full command its container runs (ENTRYPOINT + args)."""
    out = {}
    for name, c in containers.items():
        assert "command" not in c, f"{name}: overriding the ENTRYPOINT"
        out[name] = [*entrypoint, *(str(a) for a in c["args"])]
    return out


def _process_type(argv: list[str], procfile: dict[str, list[str]]) -> str:
    """The Procfile process whose command ``argv`` starts with (its own arguments may follow)."""
    matches = [p for p, cmd in procfile.items() if argv[: len(cmd)] == cmd]
    assert len(matches) == 1, f"{argv} starts no Procfile command"
    return matches[0]


def test_procfile_names_the_process_types(procfile: dict[str, list[str]]) -> None:
    """intake (or webhook), worker and beat, each an `edgematch` subcommand."""
    assert procfile == {
        "intake": ["edgematch", "intake"],
        "webhook": ["edgematch", "webhook"],
        "worker": ["edgematch", "worker"],
        "beat": ["edgematch", "beat"],
    }


def test_manifests_start_the_procfile_commands(
    containers: dict[str, dict[str, Any]],
    image_entrypoint: list[str],
    procfile: dict[str, list[str]],
) -> None:
    """Every container runs a Procfile command, and every process type has a Deployment."""
    commands = _container_commands(containers, image_entrypoint)
    types = {_process_type(argv, procfile) for argv in commands.values()}
    assert types == set(procfile)


def test_units_start_the_procfile_commands(
    units: dict[str, Unit], procfile: dict[str, list[str]]
) -> None:
    """Every unit's ExecStart runs a Procfile command, and every process type has a unit."""
    types = {_process_type(_exec_start(unit), procfile) for unit in units.values()}
    assert types == set(procfile)


def test_every_command_parses_with_the_real_cli(
    containers: dict[str, dict[str, Any]],
    image_entrypoint: list[str],
    units: dict[str, Unit],
) -> None:
    """The CLI accepts each command line, and every --queues value names real steps."""
    argvs = list(_container_commands(containers, image_entrypoint).values())
    template = _exec_start(units["edgematch-worker@.service"])
    for instance in DOCUMENTED_INSTANCES:
        argvs.append([a.replace("%I", instance) for a in template])
    argvs += [_exec_start(u) for n, u in units.items() if n != "edgematch-worker@.service"]
    for argv in argvs:
        parsed = cli.parse(argv[1:])  # raises click.UsageError as `edgematch` would refuse
        assert parsed.path == (argv[1],), argv
        rest = parsed.params.get("celery_args", ())
        if parsed.path == ("worker",):
            steps = parsed.params["queues"]
            assert steps and set(steps) <= set(QUEUE_STEPS), argv
            assert not rest or rest[0] == "--concurrency", f"{argv}: passed on to celery"
        else:
            assert not rest, argv


def test_documented_worker_instances_cover_every_queue() -> None:
    """The worker@ instances deploy/README.md starts consume every queue, none twice."""
    steps = [s for instance in DOCUMENTED_INSTANCES for s in instance.split(",")]
    assert sorted(steps) == sorted(QUEUE_STEPS)
    readme = (Path(__file__).resolve().parents[2] / "deploy" / "README.md").read_text("utf-8")
    for instance in DOCUMENTED_INSTANCES:
        assert instance in readme, instance
