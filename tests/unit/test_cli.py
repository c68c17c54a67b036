"""The ``edgematch`` command line: every command's help and parsing, and its errors.

Run in-process with click's CliRunner; nothing here reaches Redis, S3 or Celery (commands
whose body needs them are only parsed, with :func:`cli.parse`). The on-call commands
against a real Redis are in tests/integration/test_oncall_cli.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgematch import __version__
from edgematch.names import QUEUE_STEPS
from edgematch.ops import cli

ROOT = Path(__file__).resolve().parents[2]
COMMAND_MODULES = sorted((ROOT / "edgematch" / "ops" / "commands").glob("*.py"))


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command and group under ``command``, itself first."""
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from walk(sub, (*path, name))


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli.edgematch
    for name in path:
        assert isinstance(command, click.Group)
        found = command.get_command(click.Context(command), name)
        assert found is not None, path
        command = found
    return command


PATHS = list(walk(cli.edgematch))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _no_edgematch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGEMATCH_* variable of the machine's reaches the commands."""
    for name in list(os.environ):
        if name.startswith("EDGEMATCH_"):
            monkeypatch.delenv(name)


# --- help -------------------------------------------------------------------------------


def test_every_command_is_walked() -> None:
    """The walk reaches each command of COMMANDS and the actions of the groups."""
    assert {p[0] for p in PATHS if p} == set(cli.COMMANDS)
    assert {("dlq", a) for a in ("list", "show", "stats", "replay", "purge")} <= set(PATHS)
    assert {("reports", "list"), ("reports", "show")} <= set(PATHS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "edgematch")
def test_help_documents_every_option_and_argument(runner: CliRunner, path: tuple[str, ...]) -> None:
    """`--help` (and `-h`) exits 0 with a description, every option with its own help
    text, and every argument named in the description, not only in the usage line."""
    result = runner.invoke(cli.edgematch, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli.edgematch, [*path, "-h"]).output == result.output
    command = command_at(path)
    description = command.help or ""
    assert len(description.split()) >= 5, f"{path}: no description"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path}: {param.opts} has no help"
            for opt in param.opts:
                assert opt in result.output, f"{path}: {opt} not in --help"
        else:
            name = re.sub(r"[\[\].]", "", param.metavar or (param.name or "").upper())
            assert name in description, f"{path}: argument {name} not described"


@pytest.mark.integration  # a fresh interpreter, to see what `--help` imports
def test_root_help_lists_every_command_by_section_without_loading_them() -> None:
    """`edgematch --help` names each command with its summary and imports none of their
    modules, nor Redis, boto3, httpx or Celery: it stays fast."""
    code = (
        "import sys\n"
        "from edgematch.ops import cli\n"
        "code = cli.main(['--help'])\n"
        "heavy = ('redis', 'boto3', 'httpx', 'celery', 'prometheus_client')\n"
        "heavy = [m for m in sys.modules if m.startswith('edgematch.ops.commands')\n"
        "         or m.split('.')[0] in heavy]\n"
        "print('LOADED', code, sorted(heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.splitlines()[-1] == "LOADED 0 []"
    for section in (cli.PROCESSES, cli.ONCALL, cli.PROBES):
        assert section in proc.stdout
    for name, entry in cli.COMMANDS.items():
        assert re.search(rf"^  {name} +{re.escape(entry.summary[:30])}", proc.stdout, re.M), name


def test_without_a_command_the_help_and_exit_2(runner: CliRunner) -> None:
    """`edgematch` and `edgematch dlq` alone print their help and exit 2, as before."""
    for args in ([], ["dlq"], ["reports"]):
        result = runner.invoke(cli.edgematch, args)
        assert result.exit_code == 2, args
        assert result.stdout.startswith("Usage: edgematch"), args


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli.edgematch, ["--version"])
    assert (result.exit_code, result.stdout) == (0, f"edgematch {__version__}\n")


# --- the registry -----------------------------------------------------------------------


def test_every_command_module_command_is_registered() -> None:
    """Each click command defined at the top of a module in edgematch/ops/commands/ is
    reachable from `edgematch` (listed in COMMANDS, or an action of a listed group)."""
    reachable = {id(command_at(p)) for p in PATHS}
    for path in COMMAND_MODULES:
        module = f"edgematch.ops.commands.{path.stem}"
        namespace = vars(__import__(module, fromlist=["_"]))
        defined = [n for n, v in namespace.items() if isinstance(v, click.Command)]
        for name in defined:
            if getattr(namespace[name], "__module__", module) != module:
                continue
            assert id(namespace[name]) in reachable, f"{module}:{name} is not in COMMANDS"


def test_command_modules_import_celery_only_when_a_command_runs() -> None:
    """No module under edgematch/ops/commands imports edgematch.tasks at its top: that
    would configure Celery for `edgematch result` and before `worker` checks its key."""
    for path in COMMAND_MODULES:
        tree = ast.parse(path.read_text("utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("edgematch.tasks"), path.name


# --- parsing ----------------------------------------------------------------------------


def test_worker_passes_what_it_does_not_know_to_celery() -> None:
    """Unknown options and their values go to `celery worker` in order, wherever
    --queues and --metrics-port are."""
    parsed = cli.parse(
        ["worker", "-c", "1", "--queues", "ingest,match", "--pool", "solo", "--concurrency=4",
         "--metrics-port", "9100", "-Ofair"]
    )  # fmt: skip
    assert parsed.path == ("worker",)
    assert parsed.params["queues"] == ("ingest", "match")
    assert parsed.params["metrics_port"] == 9100
    assert parsed.params["celery_args"] == (
        "-c", "1", "--pool", "solo", "--concurrency=4", "-Ofair"
    )  # fmt: skip
    assert cli.parse(["worker"]).params["queues"] == QUEUE_STEPS
    assert cli.parse(["beat", "--schedule", "/tmp/s"]).params["celery_args"] == (
        "--schedule",
        "/tmp/s",
    )


@pytest.mark.parametrize(
    ("argv", "params"),
    [
        (["intake", "--metrics-port", "9100"], {"metrics_port": 9100}),
        (["health", "--readiness", "--process", "intake", "--max-age", "5"],
         {"readiness": True, "liveness": False, "process": "intake", "max_age": 5.0}),
        (["result", "s3://up/photos/a b.jpg.bin"], {"uri": ("up", "photos/a b.jpg.bin")}),
        (["reports", "list", "--status", "failed", "--limit", "3", "--json"],
         {"status": "failed", "limit": 3, "as_json": True}),
        (["reports", "show", "r-1"], {"report_id": "r-1"}),
        (["review", "list"], {"status": "pending_review", "limit": 100, "match_id": None}),
        (["review", "list", "--status", "any", "--match-id", "m1", "--json"],
         {"status": "any", "match_id": "m1", "as_json": True}),
        (["review", "show", "r-1", "--reviewer", "alice"],
         {"report_id": "r-1", "reviewer": "alice", "no_link": False}),
        (["review", "confirm", "r-1", "--reviewer", "alice", "--note", "seen"],
         {"report_id": "r-1", "reviewer": "alice", "note": "seen"}),
        (["review", "reject", "r-1", "--reviewer", "bob", "--reason", "a logo"],
         {"report_id": "r-1", "reviewer": "bob", "reason": "a logo"}),
        (["status", "--json"], {"as_json": True}),
        (["dlq", "list", "--state", "replaying", "--limit", "0", "--queue", "sqs"],
         {"state": "replaying", "limit": 0, "queue": "sqs"}),
        (["dlq", "show", "item:a"], {"entry_id": "item:a"}),
        (["dlq", "stats", "--json"], {"as_json": True}),
        (["dlq", "replay", "a", "b", "--dry-run", "--rate", "2.5"],
         {"ids": ("a", "b"), "dry_run": True, "rate": 2.5, "every": False}),
        (["dlq", "purge", "--older-than", "1h30m", "--reason", "poison", "--yes"],
         {"older_than": 5400.0, "reason": "poison", "yes": True, "ids": ()}),
        (["backfill", "s3://up/", "--rescan", "--no-count", "--page-size", "10"],
         {"uri": ("up", ""), "rescan": True, "no_count": True, "page_size": 10}),
        (["config"], {}),
    ],
)  # fmt: skip
def test_each_command_parses_its_options(argv: list[str], params: dict[str, object]) -> None:
    """Names, types and defaults of every command's options, as scripts use them."""
    parsed = cli.parse(argv)
    depth = 2 if argv[0] in ("dlq", "reports", "review") else 1
    assert parsed.path == tuple(argv[:depth])
    assert params.items() <= parsed.params.items()


def test_times_are_read_as_epoch_seconds() -> None:
    """--since takes a date or a duration back from now; --older-than a duration."""
    since = cli.parse(["dlq", "list", "--since", "2024-05-01T12:30Z"]).params["since"]
    assert since == 1714566600.0
    parsed = cli.parse(["backfill", "s3://up/p", "--since", "2024-05-01"]).params["since"]
    assert parsed == 1714521600.0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["dql"], ["edgematch: error:", "did you mean 'dlq'"]),
        (["dlq", "lsit"], ["edgematch dlq: error:", "did you mean 'list'"]),
        (["status", "--jsno"], ["edgematch status: error:", "--json"]),
        (["health"], ["one of --liveness and --readiness"]),
        (["health", "--liveness", "--readiness"], ["one of --liveness and --readiness"]),
        (["health", "--liveness", "--process", "scheduler"], ["--process", "scheduler"]),
        (["worker", "--queues", "ingest,nope"], ["--queues", "unknown step 'nope'"]),
        (["worker", "--metrics-port", "http"], ["--metrics-port"]),
        (["result"], ["URI"]),
        (["result", "https://up/a.bin"], ["expected s3://bucket/key"]),
        (["reports", "list", "--status", "lost"], ["--status", "lost"]),
        (["reports", "list", "--since", "2024-13-01"], ["--since"]),
        (["review", "show", "r-1"], ["--reviewer NAME is required"]),
        (["review", "confirm", "r-1"], ["--reviewer"]),
        (["review", "confirm", "r-1", "--reviewer", " "], ["--reviewer", "must not be empty"]),
        (["review", "reject", "r-1", "--reviewer", "bob"], ["--reason"]),
        (["review", "reject", "r-1", "--reviewer", "bob", "--reason", ""], ["--reason"]),
        (["review", "list", "--status", "maybe"], ["--status", "maybe"]),
        (["dlq", "list", "--limit", "-1"], ["--limit"]),
        (["dlq", "list", "--since", "yesterday"], ["--since", "yesterday"]),
        (["dlq", "list", "--state", "dead"], ["--state"]),
        (["dlq", "list", "extra"], ["unexpected extra argument"]),
        (["dlq", "replay"], ["say what to replay"]),
        (["dlq", "replay", "a", "--all"], ["not both"]),
        (["dlq", "replay", "--all", "--reason", "poison"], ["drop it"]),
        (["dlq", "replay", "--all", "--rate", "0"], ["positive number"]),
        (["dlq", "replay", "--all", "--rate", "inf"], ["positive number"]),
        (["dlq", "purge"], ["one of the two"]),
        (["dlq", "purge", "a", "--older-than", "7d"], ["one of the two"]),
        (["dlq", "purge", "a", "--reason", "poison"], ["narrow --older-than"]),
        (["dlq", "purge", "--older-than", "7"], ["--older-than"]),
        (["backfill", "not-a-uri"], ["expected s3://bucket/key"]),
        (["backfill", "s3://up/p", "--page-size", "5000"], ["--page-size"]),
        (["backfill", "s3://up/p", "--page-size", "0"], ["--page-size"]),
        (["backfill", "s3://up/p", "--since", "soon"], ["--since"]),
        (["allow", "add", "--reviewer", "ana", "--reason", "x"], ["--match-id", "--hash-sha256"]),
        (
            [
                "allow",
                "add",
                "--match-id",
                "m",
                "--hash-sha256",
                "ab",
                "--reviewer",
                "a",
                "--reason",
                "x",
            ],
            ["exactly one"],
        ),
        (
            ["allow", "remove", "--hash-sha256", "abc", "--reviewer", "ana", "--reason", "x"],
            ["64 hexadecimal"],
        ),
        (["allow", "add", "--match-id", "m", "--reviewer", " ", "--reason", "x"], ["--reviewer"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    runner: CliRunner, argv: list[str], words: list[str]
) -> None:
    """Bad commands, options, values and selections: exit 2, one line on stderr that
    names the command and the problem, nothing on stdout, no traceback. None of these
    reaches Redis (the refusals come before a command opens a client)."""
    result = runner.invoke(cli.edgematch, argv)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert re.match(r"edgematch( [a-z-]+)*: error: ", lines[0]), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


# --- commands that need no server --------------------------------------------------------


def test_config_prints_the_settings_with_secrets_masked(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config` prints JSON; the key never appears; a bad setting exits 2 naming it."""
    monkeypatch.setenv("EDGEMATCH_SUBSCRIPTION_KEY", "cli-test-key-0123456789")
    result = runner.invoke(cli.edgematch, ["config"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["namespace"] == "edgematch"
    assert "cli-test-key-0123456789" not in result.stdout
    monkeypatch.setenv("EDGEMATCH_BATCH_SIZE", "lots")
    bad = runner.invoke(cli.edgematch, ["config"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("edgematch: configuration error: ")
    assert "EDGEMATCH_BATCH_SIZE" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_health_liveness_reads_the_heartbeat_file(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exit 1 `unhealthy:` without a heartbeat, exit 0 `ok:` with a fresh one."""
    monkeypatch.setenv("EDGEMATCH_HEARTBEAT_DIR", str(tmp_path))
    args = ["health", "--liveness", "--process", "intake"]
    first = runner.invoke(cli.edgematch, args)
    assert first.exit_code == 1 and first.stdout.startswith("unhealthy: ")
    (tmp_path / "edgematch-intake.heartbeat").touch()
    second = runner.invoke(cli.edgematch, args)
    assert second.exit_code == 0 and second.stdout.startswith("ok: ")


def test_main_returns_the_exit_status() -> None:
    """The console script's main() returns the status instead of exiting."""
    assert cli.main(["dlq", "replay"]) == 2
    assert cli.main(["--version"]) == 0


def test_a_bad_celery_option_is_one_line_too(runner: CliRunner) -> None:
    """What `celery worker` refuses (it parses with click as well) is reported the same way,
    before the worker connects anywhere."""
    result = runner.invoke(cli.edgematch, ["worker", "--queues", "ingest", "--pool", "bogus"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "error: Invalid value for '-P' / '--pool'" in lines[0], lines
