"""Unit tests for edgematch.recovery.publishing: published tasks carry no payload reprs."""

from __future__ import annotations

from typing import Any

from edgematch.recovery.journal import UNJOURNALED
from edgematch.recovery.publishing import Publisher, names_only


class _Task:
    """Records what apply_async was given, as Celery's Task would take it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[dict[str, Any]] = []

    def apply_async(self, **options: Any) -> None:
        self.calls.append(options)


def test_names_only_names_the_arguments_without_values() -> None:
    """The repr lists every argument name and no value."""
    kwargs = {"keys": ["secret/object-key.jpg"], "batch_id": "b-123"}
    text = names_only(kwargs)
    assert text == "{'keys': ..., 'batch_id': ...}"
    assert "object-key" not in text and "b-123" not in text
    assert names_only({}) == "{}"


def test_published_task_carries_names_only_now_and_later() -> None:
    """Both an immediate and a delayed publish give Celery argsrepr and kwargsrepr without
    the payload, and the kwargs themselves unchanged."""
    name = next(iter(UNJOURNALED))  # not journaled: no Redis needed
    task = _Task(name)
    publisher = Publisher(journal=None, namespace="t")  # type: ignore[arg-type]
    kwargs = {"keys": ["a/b.jpg"]}
    publisher.send(task, kwargs)  # type: ignore[arg-type]
    publisher.send(task, kwargs, countdown=2.0)  # type: ignore[arg-type]
    assert [call["kwargsrepr"] for call in task.calls] == ["{'keys': ...}"] * 2
    assert [call["argsrepr"] for call in task.calls] == ["()"] * 2
    assert all(call["kwargs"] == {"keys": ["a/b.jpg"]} for call in task.calls)
    assert task.calls[1]["countdown"] == 2.0
