"""``edgematch status``: the pipeline at a glance, and what needs attention.

Exit status: 0 healthy, 1 something needs attention (each problem is named, with its
runbook) or Redis cannot be read.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from edgematch.errors import TransientError
from edgematch.ops.problems import Problem, assess
from edgematch.ops.screen import render
from edgematch.ops.status import collect
from edgematch.ops.support import CONTEXT
from edgematch.ops.tool import tool_runtime


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print the whole snapshot as JSON.")
def status(as_json: bool) -> int:
    """One screen: queue depths per step, hashes waiting in the batch buffer (per lane),
    batches in flight, requests used against the rate limit, cooldown and circuit
    breaker, dead letters by reason, live processes (worker, intake, beat) with the age of
    their last heartbeat, and backfills. Exits 0 when healthy, 1 when something needs
    attention: each problem is named with the runbook to follow (deploy/runbooks/).

    \b
      edgematch status
      edgematch status --json | jq '.problems'
    """
    rt = tool_runtime()
    try:
        snap = collect(rt)
    except TransientError as exc:
        problem = Problem(f"cannot read Redis at EDGEMATCH_REDIS_URL: {exc}", "redis-lost.md")
        if as_json:
            click.echo(json.dumps({"healthy": False, "problems": [asdict(problem)]}, indent=2))
        else:
            click.echo("edgematch status: NEEDS ATTENTION")
            click.echo(f"  ! {problem.what}  [deploy/runbooks/{problem.runbook}]")
        return 1
    problems = assess(snap)
    if as_json:
        doc = {"healthy": not problems, "problems": [asdict(p) for p in problems], **snap.to_dict()}
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(render(snap, problems))
    return 1 if problems else 0
