"""Unit tests for edgematch.infra.logs: JSON lines, correlation ids, secrets masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from edgematch.infra import logs

SECRET = "KEY-abcdef123456"
NOISY = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer", "kombu")


def _is_pytest_handler(handler: logging.Handler) -> bool:
    return type(handler).__module__.startswith("_pytest")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put back the root handlers and level, structlog's config and the secret registry."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if not _is_pytest_handler(h)]
    level = root.level
    levels = {name: logging.getLogger(name).level for name in NOISY}
    config = structlog.get_config()
    secrets = set(logs._secrets)
    yield
    # pytest's own capture handlers of the current phase stay; it removes them itself.
    root.handlers[:] = handlers + [h for h in root.handlers if _is_pytest_handler(h)]
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
    structlog.configure(**config)
    logs._secrets.clear()
    logs._secrets.update(secrets)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    docs = []
    for line in _lines(capsys):
        doc = json.loads(line)
        assert isinstance(doc, dict)
        docs.append(doc)
    return docs


def _setup() -> None:
    logs.configure("INFO", "json")
    logs.register_secret(SECRET)


def test_structlog_event_is_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A structlog event renders as one JSON object with event, level, logger and timestamp."""
    logs.configure("INFO", "json")
    logs.get_logger("edgematch.test").info("item_buffered", item_id="i1", attempts=2)
    (doc,) = _json_lines(capsys)
    assert doc["event"] == "item_buffered"
    assert doc["level"] == "info"
    assert doc["logger"] == "edgematch.test"
    assert doc["item_id"] == "i1"
    assert doc["attempts"] == 2
    assert "timestamp" in doc


def test_stdlib_record_is_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A stdlib record (kombu) renders through the same JSON renderer."""
    logs.configure("INFO", "json")
    logging.getLogger("kombu").warning("connection lost to %s", "broker")
    (doc,) = _json_lines(capsys)
    assert doc["event"] == "connection lost to broker"
    assert doc["level"] == "warning"
    assert doc["logger"] == "kombu"


def test_level_filters_lower_records(capsys: pytest.CaptureFixture[str]) -> None:
    """Below the configured level nothing is written."""
    logs.configure("WARNING", "json")
    logs.get_logger("edgematch.test").info("chatter")
    logging.getLogger("kombu").info("chatter")
    logs.get_logger("edgematch.test").warning("kept")
    assert [doc["event"] for doc in _json_lines(capsys)] == ["kept"]


def test_process_name_is_added(capsys: pytest.CaptureFixture[str]) -> None:
    """configure(process=...) adds the process name to every line."""
    logs.configure("INFO", "json", process="intake")
    logs.get_logger("edgematch.test").info("started")
    logging.getLogger("kombu").warning("stdlib")
    docs = _json_lines(capsys)
    assert [doc["process"] for doc in docs] == ["intake", "intake"]


def test_correlation_id_is_in_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A correlation id bound in contextvars appears in structlog and stdlib lines."""
    logs.configure("INFO", "json")
    structlog.contextvars.bind_contextvars(correlation_id="c1")
    logs.get_logger("edgematch.test").info("ingest_buffered")
    logging.getLogger("kombu").warning("from kombu")
    docs = _json_lines(capsys)
    assert len(docs) == 2
    assert all(doc["correlation_id"] == "c1" for doc in docs)
    structlog.contextvars.clear_contextvars()
    logs.get_logger("edgematch.test").info("unbound")
    (doc,) = _json_lines(capsys)
    assert "correlation_id" not in doc


def test_secret_in_structlog_message_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret in a structlog event's message is masked."""
    _setup()
    logs.get_logger("edgematch.test").info(f"calling with key {SECRET}")
    out = capsys.readouterr().err
    assert SECRET not in out
    doc = json.loads(out)
    assert doc["event"] == "calling with key **********"


def test_secret_in_structlog_field_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret in a structlog field is masked, the rest of the field kept."""
    _setup()
    logs.get_logger("edgematch.test").warning(
        "api_call", header=f"Ocp-Apim-Subscription-Key: {SECRET}", key=SECRET
    )
    out = capsys.readouterr().err
    assert SECRET not in out
    doc = json.loads(out)
    assert doc["header"] == "Ocp-Apim-Subscription-Key: **********"
    assert doc["key"] == "**********"


def test_secret_in_nested_structures_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret inside a nested dict, list or bytes field is masked, the
    structure kept as JSON."""
    _setup()
    logs.get_logger("edgematch.test").info(
        "request",
        headers={"outer": {"Ocp-Apim-Subscription-Key": SECRET}},
        args=["x", ("y", SECRET)],
        raw=SECRET.encode(),
        clean={"a": 1},
    )
    out = capsys.readouterr().err
    assert SECRET not in out
    doc = json.loads(out)
    assert doc["headers"] == {"outer": {"Ocp-Apim-Subscription-Key": "**********"}}
    assert doc["args"] == ["x", ["y", "**********"]]
    assert "**********" in doc["raw"]
    assert doc["clean"] == {"a": 1}


def test_secret_in_exception_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret in an exception (as a field and as exc_info) is masked."""
    _setup()
    log = logs.get_logger("edgematch.test")
    try:
        try:
            raise KeyError(SECRET)
        except KeyError as inner:
            raise RuntimeError(f"request with key {SECRET} failed") from inner
    except RuntimeError as exc:
        log.error("api_failed", error=exc)
        log.exception("api_failed_tb")
    out = capsys.readouterr().err
    assert SECRET not in out
    first, second = (json.loads(line) for line in out.splitlines())
    assert "**********" in first["error"]
    assert "RuntimeError" in second["exception"]
    assert "**********" in second["exception"]


def test_secret_in_stdlib_record_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A registered secret in a kombu warning's message, args and exception is masked."""
    _setup()
    kombu = logging.getLogger("kombu")
    kombu.warning(f"connect with {SECRET}")
    kombu.warning("retrying with %s and %r", SECRET, {"password": SECRET})
    try:
        raise ConnectionError(f"auth {SECRET} refused")
    except ConnectionError:
        kombu.warning("broker down", exc_info=True)
    out = capsys.readouterr().err
    assert SECRET not in out
    docs = [json.loads(line) for line in out.splitlines()]
    assert [doc["logger"] for doc in docs] == ["kombu", "kombu", "kombu"]
    assert docs[0]["event"] == "connect with **********"
    assert docs[1]["event"] == "retrying with ********** and {'password': '**********'}"
    assert "ConnectionError" in docs[2]["exception"]
    assert "**********" in docs[2]["exception"]


def test_secret_in_stdlib_extra_field_never_shows(capsys: pytest.CaptureFixture[str]) -> None:
    """A secret passed in a stdlib record's extra fields does not appear in the line."""
    _setup()
    logging.getLogger("kombu").warning("with extra", extra={"detail": SECRET})
    out = capsys.readouterr().err
    assert SECRET not in out
    assert json.loads(out)["event"] == "with extra"


def test_secret_registered_after_configure_is_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A secret registered after configure() is masked from then on."""
    logs.configure("INFO", "json")
    log = logs.get_logger("edgematch.test")
    log.info("before", key=SECRET)
    logs.register_secret(SECRET)
    log.info("after", key=SECRET)
    before, after = _json_lines(capsys)
    assert before["key"] == SECRET
    assert after["key"] == "**********"


def test_short_values_are_not_registered(capsys: pytest.CaptureFixture[str]) -> None:
    """Values shorter than six characters, and None, are not masked (too common to mask)."""
    logs.configure("INFO", "json")
    logs.register_secret("abc")
    logs.register_secret(None)
    logs.register_secret("")
    logs.get_logger("edgematch.test").info("event abc", field="abcde")
    (doc,) = _json_lines(capsys)
    assert doc["event"] == "event abc"
    assert doc["field"] == "abcde"


def test_configure_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """Calling configure() again replaces the handler: each event is written once."""
    logs.configure("INFO", "json")
    logs.configure("INFO", "json")
    logging.getLogger("kombu").warning("once")
    assert len(_json_lines(capsys)) == 1


def test_noisy_libraries_are_held_at_warning() -> None:
    """HTTP and AWS libraries log at WARNING or above even when the level is DEBUG."""
    logs.configure("DEBUG", "json")
    assert logging.getLogger().level == logging.DEBUG
    for name in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer"):
        assert logging.getLogger(name).level == logging.WARNING


def test_console_format_masks_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    """The console format masks a registered secret as well."""
    logs.configure("INFO", "console")
    logs.register_secret(SECRET)
    logs.get_logger("edgematch.test").info("console_event", key=SECRET)
    logging.getLogger("kombu").warning(f"kombu {SECRET}")
    lines = _lines(capsys)
    assert any("console_event" in line for line in lines)
    assert all(SECRET not in line for line in lines)


def test_secret_with_escaped_characters_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """A secret holding characters JSON escapes is masked in its escaped form as well."""
    logs.configure("INFO", "json")
    secret = 'pa"ss\\word-\u00e9'
    logs.register_secret(secret)
    logs.get_logger("edgematch.test").info("login", password=secret, nested={"p": secret})
    (doc,) = _json_lines(capsys)
    assert doc["password"] == "**********"
    assert doc["nested"] == {"p": "**********"}
