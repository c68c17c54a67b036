"""Publishing a task: journaled first, so that a worker killed with it cannot lose it.

Work tasks are written to the journal (recovery/journal.py) under their task id before
they reach the broker; one lost by a killed worker is published again by the sweep. Pumps
and sweeps are not: the batch buffer is their state. A broker that cannot take the task
raises ``BrokerUnavailable`` (transient), never a crash.

A published task's ``kwargsrepr`` names its arguments only (``{'keys': ...}``): Celery
would otherwise repr the payload into the message headers a task, which costs CPU and
puts object keys and batch contents into broker and Flower metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from edgematch.config import rabbit
from edgematch.config.celery import queue_for
from edgematch.infra.redisclient import publishing
from edgematch.recovery.journal import UNJOURNALED, Journal

if TYPE_CHECKING:
    from celery import Task

#: A Celery task, published by name with keyword arguments only.
Publishable: TypeAlias = "Task[Any, Any]"


class Publisher:
    """Journals and publishes the tasks of one deployment (``namespace``)."""

    def __init__(self, journal: Journal, namespace: str, *, amqp: bool = False) -> None:
        """``amqp``: the broker is RabbitMQ, whose delayed delivery takes whole seconds."""
        self._journal = journal
        self._namespace = namespace
        self._amqp = amqp

    def send(self, task: Publishable, kwargs: dict[str, Any], *, countdown: float = 0.0) -> None:
        """Enqueue ``task`` with ``kwargs`` under a new task id, after ``countdown`` seconds.

        Raises BrokerUnavailable or RedisUnavailable (both transient).
        """
        task_id = uuid.uuid4().hex
        if task.name not in UNJOURNALED:
            self.journal(task.name, kwargs, task_id)
        # Options celery-types does not declare; Celery takes them (apply_async's **options).
        reprs: dict[str, Any] = {"argsrepr": "()", "kwargsrepr": names_only(kwargs)}
        with publishing():
            if countdown > 0:
                if self._amqp:
                    countdown = rabbit.countdown(countdown)
                task.apply_async(kwargs=kwargs, countdown=countdown, task_id=task_id, **reprs)
            else:
                task.apply_async(kwargs=kwargs, task_id=task_id, **reprs)

    def journal(self, name: str, kwargs: Mapping[str, Any], task_id: str) -> None:
        """Write the journal entry of a task about to be published under ``task_id``.

        Raises ValueError for a task no queue takes (a bug), RedisUnavailable.
        """
        queue = queue_for(self._namespace, name, kwargs)
        if queue is None:
            raise ValueError(f"no queue for task {name}")
        self._journal.add(task_id, name, kwargs, queue)


def names_only(kwargs: Mapping[str, Any]) -> str:
    """``kwargsrepr`` of a task: its argument names, none of their values."""
    return "{" + ", ".join(f"{name!r}: ..." for name in kwargs) + "}"
