"""The ``edgematch`` command: the process types an operator runs, and the tools around them.

Exit status: 0 success, 1 failure or not found, 2 bad configuration or usage, 130
interrupted. Every error is one line on stderr, ``edgematch <command>: …``, never a
traceback.

Each command is a click command in the module of its concern under
``edgematch/ops/commands/`` and has one line in :data:`COMMANDS` below: where it is and
what ``edgematch --help`` says of it. A command's module is imported only when that
command runs or shows its own help: the commands need Redis, boto3 and httpx (about four
times what ``edgematch --help`` costs without them), and the probes that run
``edgematch health`` every few seconds should not pay for what ``dlq replay`` needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from edgematch import __version__
from edgematch.errors import ConfigurationError, EdgematchError
from edgematch.ops.support import CONTEXT, Group, Refused, printable, safe_streams

if TYPE_CHECKING:
    from edgematch.config.settings import Settings

__all__ = ["COMMANDS", "Entry", "Parsed", "edgematch", "main", "needs_subscription_key", "parse"]

PROCESSES = "Process types (see Procfile)"
ONCALL = "On call (see deploy/runbooks/)"
PROBES = "Probes and settings"


@dataclass(frozen=True)
class Entry:
    """One command of ``edgematch``: the click command at ``target`` (``module:name``)."""

    target: str
    summary: str  # its line in `edgematch --help`
    section: str


_C = "edgematch.ops.commands"
COMMANDS: dict[str, Entry] = {
    "intake": Entry(f"{_C}.intake:intake", "long-poll SQS and enqueue ingest tasks", PROCESSES),
    "webhook": Entry(
        f"{_C}.webhook:webhook",
        "receive bucket notifications over HTTP (MinIO, Ceph RGW) and enqueue ingest tasks",
        PROCESSES,
    ),
    "worker": Entry(
        f"{_C}.workers:worker",
        "run a Celery worker (extra arguments go to celery worker)",
        PROCESSES,
    ),
    "beat": Entry(
        f"{_C}.workers:beat", "run the periodic sweep (exactly one per deployment)", PROCESSES
    ),
    "status": Entry(
        f"{_C}.status:status",
        "is the pipeline healthy, and where is it stuck (exit 1 if not)",
        ONCALL,
    ),
    "dlq": Entry(f"{_C}.dlq:dlq", "list, show, replay and purge dead letters", ONCALL),
    "backfill": Entry(
        f"{_C}.backfill:backfill", "scan hash files already in a bucket, resumably", ONCALL
    ),
    "result": Entry(
        f"{_C}.records:result",
        "the result of a hash or content object: its tag, the hot window, the verdict log",
        ONCALL,
    ),
    "verdicts": Entry(
        f"{_C}.records:verdicts",
        "count the verdict log's results by verdict, lane, bucket and day",
        ONCALL,
    ),
    "migrate-results": Entry(
        f"{_C}.records:migrate_results",
        "once, after an upgrade: move results kept in Redis to the verdict log",
        ONCALL,
    ),
    "reports": Entry(f"{_C}.records:reports", "find the reports of matched content", ONCALL),
    "review": Entry(
        f"{_C}.review:review",
        "review held reports: show the evidence, confirm (submit) or reject",
        ONCALL,
    ),
    "release": Entry(
        f"{_C}.release:release",
        "put back the content of a rejected report, verified, and mark it released",
        ONCALL,
    ),
    "allow": Entry(
        f"{_C}.allow:allow",
        "the allowlist of match ids and hashes found wrong: add, list, remove",
        ONCALL,
    ),
    "health": Entry(
        f"{_C}.checks:health",
        "liveness or readiness of a process on this host (exit 0 or 1), for probes",
        PROBES,
    ),
    "config": Entry(
        f"{_C}.checks:config",
        "print the effective settings (secrets masked) and check them",
        PROBES,
    ),
}

EPILOG = """Configuration comes from EDGEMATCH_* environment variables (docs/configuration.md);
S3 and SQS endpoints from boto3's own AWS_ENDPOINT_URL* variables. Each command has --help.

\b
  edgematch worker --queues match --concurrency 4
  edgematch status
  edgematch dlq list --since 6h
"""


class Root(Group):
    """``edgematch``: loads a command's module when it is asked for; one error policy."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, _, name = entry.target.partition(":")
        command = getattr(importlib.import_module(module), name)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # From COMMANDS, without importing a single command's module.
        for section in (PROCESSES, ONCALL, PROBES):
            rows = [(name, e.summary) for name, e in COMMANDS.items() if e.section == section]
            with formatter.section(section):
                formatter.write_dl(rows)

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        """Run a command; return its exit status (or exit with it, in standalone mode)."""
        code = _run(self, args, prog_name or "edgematch", complete_var, **extra)
        if standalone_mode:
            raise SystemExit(code)
        return code


def _run(
    root: Root, args: Sequence[str] | None, prog_name: str, complete_var: str | None, **extra: Any
) -> int:
    try:
        rv = click.Group.main(root, args, prog_name, complete_var, standalone_mode=False, **extra)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else prog_name
        hint = "" if isinstance(exc, Refused) else f" (see '{where} --help')"
        message = " ".join(exc.format_message().split())
        click.echo(f"{where}: error: {printable(message)}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo(f"{prog_name}: interrupted", err=True)
        return 130
    except ConfigurationError as exc:
        click.echo(f"{prog_name}: configuration error: {exc}", err=True)
        return 2
    except EdgematchError as exc:
        # Redis or S3 unreachable, a refusal translated at a boundary: the message says it.
        click.echo(f"{prog_name}: error: {printable(str(exc))}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


@click.group(
    "edgematch",
    cls=Root,
    context_settings=CONTEXT,
    epilog=EPILOG,
    subcommand_metavar="COMMAND [ARGS]...",
)
@click.version_option(
    __version__, "--version", prog_name="edgematch", message="%(prog)s %(version)s"
)
def edgematch() -> None:
    """Scan PhotoDNA edge hashes from object-storage uploads with PhotoDNA Cloud Service."""


@dataclass(frozen=True)
class Parsed:
    """A command line as ``edgematch`` reads it: the command's path and its parameters."""

    path: tuple[str, ...]  # ("dlq", "list")
    params: dict[str, Any]


def parse(argv: Sequence[str]) -> Parsed:
    """Read ``argv`` (without the program name) as running it would, and run nothing.

    For checking a command line written elsewhere (a manifest, a unit file). Raises
    click.UsageError for one ``edgematch`` would refuse.
    """
    command: click.Command = edgematch
    ctx = click.Context(command, info_name="edgematch")
    args, path = list(argv), list[str]()
    while isinstance(command, click.Group):
        if not args:
            raise click.UsageError("missing command", ctx)
        name, found, args = command.resolve_command(ctx, args)
        if name is None or found is None:
            raise click.UsageError("no such command", ctx)
        command, path = found, [*path, name]
        ctx = click.Context(command, info_name=name, parent=ctx)
    final = command.make_context(path[-1], args, parent=ctx.parent)
    return Parsed(tuple(path), dict(final.params))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``edgematch`` console script: run ``argv`` (default: ``sys.argv[1:]``)."""
    safe_streams()
    return edgematch.main(argv, "edgematch", standalone_mode=False)


def needs_subscription_key(steps: Collection[str], settings: Settings) -> bool:
    """:func:`edgematch.ops.commands.workers.needs_subscription_key`, for the deployment
    tests; imported when called, like the command itself."""
    from edgematch.ops.commands.workers import needs_subscription_key as needs  # noqa: PLC0415

    return needs(steps, settings)


if __name__ == "__main__":
    raise SystemExit(main())
