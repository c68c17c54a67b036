"""Only the processes that call the PhotoDNA API need the subscription key to start.

Those are the workers that consume ``match`` (MatchEdgeHash) and those that consume
``reports`` with the ``photodna`` reporter (the Report operation). Intake, beat and the
other workers start without it. Nothing here starts Celery or talks to Redis, SQS or S3:
``edgematch.tasks`` is replaced by a stand-in that records the Celery command line.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import pytest

from edgematch.config.settings import Settings
from edgematch.names import QUEUE_STEPS
from edgematch.ops import cli

KEY = "cli-test-key-0123456789"
PHOTODNA_REPORTER = {
    "EDGEMATCH_REPORTER": "photodna",
    "EDGEMATCH_REPORT_USER": "reporting-user",
    "EDGEMATCH_REPORT_PASSWORD": "reporting-password",
    "EDGEMATCH_REPORT_ORG_NAME": "Example Org",
    "EDGEMATCH_REPORT_REPORTER_NAME": "Example Reporter",
}
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/edgematch-events"
#: docs/configuration.md: a worker that consumes results needs a bucket for the verdict log.
REPORTS_BUCKET = {"EDGEMATCH_REPORTS_BUCKET": "edgematch-reports"}


class _CeleryStandIn:
    """Takes the place of the Celery app: records what `edgematch worker` would run."""

    def __init__(self) -> None:
        self.argv: list[str] | None = None

    def run_celery(self, app: object, argv: list[str]) -> int:
        self.argv = argv
        return 0


@pytest.fixture(autouse=True)
def _no_edgematch_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGEMATCH_* variable of the machine's (above all no key) reaches the CLI."""
    for name in list(os.environ):
        if name.startswith("EDGEMATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture
def celery(monkeypatch: pytest.MonkeyPatch) -> _CeleryStandIn:
    stand_in = _CeleryStandIn()
    module = types.ModuleType("edgematch.tasks")
    module.__dict__["app"] = stand_in
    module.__dict__["run_celery"] = stand_in.run_celery
    monkeypatch.setitem(sys.modules, "edgematch.tasks", module)
    return stand_in


def _settings(reporter: str) -> Settings:
    return Settings(reporter=reporter)


@pytest.mark.parametrize(
    ("steps", "reporter", "needed"),
    [
        (["ingest", "results", "quarantine"], "record", False),
        (["ingest", "results", "quarantine"], "photodna", False),
        (["ingest", "background"], "photodna", False),
        (["reports"], "record", False),
        (["reports"], "webhook", False),
        (["match"], "record", True),
        (["reports"], "photodna", True),
        (["quarantine", "reports"], "photodna", True),
        (list(QUEUE_STEPS), "record", True),  # the default --queues: every step
    ],
)
def test_needs_subscription_key(steps: list[str], reporter: str, needed: bool) -> None:
    """match always calls the API; reports only with the photodna reporter; nothing else."""
    assert cli.needs_subscription_key(steps, _settings(reporter)) is needed


@pytest.mark.parametrize(
    ("queues", "env"),
    [
        ("ingest,results,quarantine", REPORTS_BUCKET),
        ("ingest,background", PHOTODNA_REPORTER),
        ("reports", {}),  # the record reporter sends nothing anywhere
    ],
)
def test_worker_that_never_calls_the_api_starts_without_the_key(
    queues: str,
    env: dict[str, str],
    celery: _CeleryStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No key set, and the worker still hands its queues to Celery."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cli.main(["worker", "--queues", queues])
    assert capsys.readouterr().err == ""
    assert celery.argv is not None
    expected = ",".join(f"edgematch.{step}" for step in queues.split(","))
    assert celery.argv[celery.argv.index("--queues") + 1] == expected


@pytest.mark.parametrize(
    ("queues", "env", "why"),
    [
        ("match", {}, "consumes match"),
        ("match,results", PHOTODNA_REPORTER, "consumes match"),
        ("reports", PHOTODNA_REPORTER, "consumes reports with EDGEMATCH_REPORTER=photodna"),
    ],
)
def test_worker_that_calls_the_api_refuses_to_start_without_the_key(
    queues: str,
    env: dict[str, str],
    why: str,
    celery: _CeleryStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit status 2 (a configuration error) naming the variable, before Celery starts."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["worker", "--queues", queues]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgematch: configuration error: EDGEMATCH_SUBSCRIPTION_KEY or ")
    assert "EDGEMATCH_SUBSCRIPTION_KEY_FILE is required" in err
    assert why in err
    assert celery.argv is None, "Celery started"


@pytest.mark.parametrize(("queues", "env"), [("match", {}), ("reports", PHOTODNA_REPORTER)])
def test_worker_that_calls_the_api_starts_with_the_key(
    queues: str, env: dict[str, str], celery: _CeleryStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**env, "EDGEMATCH_SUBSCRIPTION_KEY": KEY}.items():
        monkeypatch.setenv(name, value)
    cli.main(["worker", "--queues", queues])
    assert celery.argv is not None


@pytest.mark.parametrize("queues", ["results", "ingest,results,quarantine"])
def test_worker_that_records_results_refuses_to_start_without_a_log_bucket(
    queues: str, celery: _CeleryStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 2 naming both variables, before Celery starts: results would have nowhere
    to go but Redis."""
    assert cli.main(["worker", "--queues", queues]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgematch: configuration error: EDGEMATCH_VERDICT_LOG_BUCKET")
    assert "EDGEMATCH_REPORTS_BUCKET" in err
    assert celery.argv is None, "Celery started"


def test_intake_starts_without_the_key(
    celery: _CeleryStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """intake reads SQS and enqueues tasks: it needs the queue URL, never the key."""
    ran: list[str] = []
    settings = Settings.from_env({"EDGEMATCH_SQS_QUEUE_URL": QUEUE_URL})
    assert settings.subscription_key is None

    class Intake:
        def __init__(self, rt: Any, sqs: Any, enqueue: Any) -> None:
            pass

        def install_signal_handlers(self) -> None:
            pass

        def run(self) -> None:
            ran.append("intake")

    class Heartbeat:
        def __init__(self, *args: Any) -> None:
            pass

        def start(self) -> Heartbeat:
            return self

        def stop(self) -> None:
            pass

    enqueue = types.ModuleType("edgematch.tasks.enqueue")
    enqueue.__dict__["enqueue_events"] = lambda *args: None
    monkeypatch.setitem(sys.modules, "edgematch.tasks.enqueue", enqueue)
    rt = types.SimpleNamespace(settings=settings, redis=None)
    # Patched where `edgematch intake` looks them up (its module imports them at the top).
    command = "edgematch.ops.commands.intake"
    monkeypatch.setattr(f"{command}.runtime", lambda: rt)
    monkeypatch.setattr("edgematch.infra.logs.configure", lambda *args, **kwargs: None)
    monkeypatch.setattr(f"{command}.make_sqs_client", lambda settings: None)
    monkeypatch.setattr(f"{command}.Intake", Intake)
    monkeypatch.setattr(f"{command}.Heartbeat", Heartbeat)
    assert cli.main(["intake"]) == 0
    assert ran == ["intake"]
    assert celery.argv is None
