"""Shared fixtures: real parts on 127.0.0.1, never the machine's shared services.

And the hooks that keep the tiers honest (tests/support/tiers.py) and spread the process
tiers over pytest-xdist workers, longest first (tests/support/schedule.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog

from devtools import devstack, rabbitserver
from devtools.devstack import RedisServer
from devtools.localstack import LocalPipeline
from devtools.rabbitserver import RabbitServer
from edgematch.config.settings import Secret, Settings
from edgematch.infra.redisclient import redis_client as build_redis_client
from tests.support import ports, schedule, tiers
from tests.support.pipelines import MakePipeline, discard

TESTS = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help="merge each test's time into tests/durations.json (the order xdist runs them in)",
    )


_WORKER_TMP = pytest.StashKey[Path]()
#: The pipelines a test made, for the failure report's process logs.
_PIPELINES = pytest.StashKey[list[LocalPipeline]]()
#: How many of each process log's last lines a failed test's report shows.
LOG_TAIL_LINES = 25


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that ran the real processes shows the end of each one's log: a
    failure on a CI machine is otherwise all that is left of them."""
    report = yield
    if report.failed and call.when == "call":
        made: list[LocalPipeline] = item.stash.get(_PIPELINES, [])
        for i, pipe in enumerate(made):
            for name in sorted(pipe.processes.procs if pipe.processes else ()):
                tail = "\n".join(pipe.log_lines(name)[-LOG_TAIL_LINES:])
                report.sections.append((f"pipeline {i}: {name}.log (last lines)", tail))
    return report


def pytest_configure(config: pytest.Config) -> None:
    # Every server a test starts (devstack's RedisServer, MotoServer, SandboxServer, and so
    # LocalPipeline) takes its port from the book all test processes share.
    devstack.free_port = ports.free_port
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker is not None:
        # Each pytest-xdist worker, and every process its tests start, gets a temp dir of
        # its own: what lives in the temp dir by default (the processes' heartbeat files,
        # which `edgematch health --liveness` reads) must not be touched by the pipeline
        # another worker runs at the same time.
        private = Path(tempfile.mkdtemp(prefix=f"edgematch-tests-{worker}-"))
        config.stash[_WORKER_TMP] = private
        os.environ["TMPDIR"] = str(private)
        tempfile.tempdir = str(private)
    config.pluginmanager.register(tiers.TierGuard(TESTS), "edgematch-tiers")
    if config.getoption("record_durations") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(schedule.Recorder(), "edgematch-durations")


def pytest_unconfigure(config: pytest.Config) -> None:
    private = config.stash.get(_WORKER_TMP, None)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):  # collected by a pytest-xdist worker
        schedule.longest_first(items, schedule.load())


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") == "load":
        return schedule.LongestFirst(config, log)
    return None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port for the whole session."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def rabbit_server() -> Iterator[RabbitServer]:
    """A private RabbitMQ node on free ports for the whole session (per xdist worker),
    started on first use: it takes seconds. Each pipeline gets a virtual host of its own."""
    if not rabbitserver.installed():
        pytest.skip("rabbitmq-server is not installed: run scripts/bootstrap")
    server = RabbitServer().start()
    yield server
    server.close()


#: The brokers a broker-dependent test runs on (docs/development.md).
BROKERS = ("redis", "rabbitmq")


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    """Run the test once per broker: pass it to ``make_pipeline(broker=...)``."""
    return str(request.param)


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """The client every process builds (redisclient.py), of the private server, emptied
    after each test (it is ours alone)."""
    client = build_redis_client(redis_server.url)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def make_settings(redis_server: RedisServer) -> Iterator[object]:
    def make(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "redis_url": redis_server.url,
            "broker_url": redis_server.url,
            "subscription_key": Secret("test-key-0123456789"),
            "api_url": "http://127.0.0.1:9/photodna/v1.0",
        }
        base.update(overrides)
        return Settings(**base).validated()  # type: ignore[arg-type]

    yield make


@pytest.fixture
def make_pipeline(request: pytest.FixtureRequest) -> Iterator[MakePipeline]:
    """Start LocalPipelines (LocalPipeline's keyword arguments, ``redis_server`` to use
    instead of a plain private one, and ``broker``: ``redis`` by default, or ``rabbitmq``
    for a virtual host of the session's private RabbitMQ node); all closed after the test."""
    made: list[LocalPipeline] = []
    request.node.stash[_PIPELINES] = made

    def make(
        *, redis_server: RedisServer | None = None, broker: str = "redis", **kwargs: Any
    ) -> LocalPipeline:
        if broker == "rabbitmq":
            kwargs["broker_url"] = request.getfixturevalue("rabbit_server").vhost_url()
        pipe = LocalPipeline(**kwargs)
        if redis_server is not None:  # e.g. one that speaks TLS
            pipe.redis.close()
            pipe.redis = redis_server
        made.append(pipe)
        return pipe.start()

    yield make
    for pipe in made:
        discard(pipe)


@pytest.fixture(autouse=True)
def _clear_log_context() -> Iterator[None]:
    """No log context leaks from one test into the next."""
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region for in-process moto; no endpoint override leaks in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
