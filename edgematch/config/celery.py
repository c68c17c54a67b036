"""Celery configuration derived from :class:`Settings`, in one place.

Choices, each for a failure someone has hit:
- JSON only, in and out: a pickle message is refused, never executed.
- Late acknowledgement, requeue when the worker dies, prefetch of one: a task is
  acknowledged only after its effect is durable, and no process hoards messages that a
  scaler (KEDA counts list lengths) or another process could use.
- The broker's visibility timeout is validated to exceed the longest task plus the
  longest retry countdown, so a running task is never handed out a second time.
- One queue per step, named under the namespace, so each step scales alone and two
  deployments can share a Redis; kombu's bookkeeping keys are namespaced too.
- A worker serving several queues takes from them in a fixed order, live work before
  backfills (config/queue_order.py), not kombu's round robin.
- A ``rediss://`` broker verifies the server's certificate, as redis-py does for the
  buffer: kombu alone would connect to a ``rediss://`` URL without ``ssl_*`` parameters
  with ``CERT_NONE`` (and a warning), sending the password to whoever answers.
- A worker consumes its queues and nothing else: no remote control, gossip, mingle or
  event heartbeats (``WORKER_ARGS``). On Redis those ride PUB/SUB, and redis-py reconnects
  a subscription *inside* its blocking read: after a Sentinel failover a worker's event
  loop waited there for a message that never came, and took no task again (3 of 9
  failovers under load, tests/chaos/test_redis_outages.py). edgematch uses none of them:
  probes read heartbeat files, ``edgematch status`` reads Redis.
- kombu's Redis transport with acknowledgements that outlive a Redis outage
  (config/broker.py): kombu's own keeps a delivery whose acknowledgement Redis refused
  counted against the prefetch limit, and a worker whose tasks ended during a restart took
  no task again.
- On RabbitMQ (``amqp://``, ``amqps://``; config/brokerkind.py), quorum queues with a
  delivery limit and a dead-letter queue, publisher confirms, and TLS that verifies the
  server (config/rabbit.py). The Redis transport's options (visibility timeout, kombu's
  unacked keys, the fetch order) and ``worker_disable_prefetch`` are Redis-only: there a
  worker's consumer holds a prefetch of one per process on each queue, two per process on
  a live queue beside background (tasks/lifecycle.py's ``LiveFirstConsumer``).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from kombu import Queue

from edgematch.config import rabbit
from edgematch.config.broker import transport_for
from edgematch.config.queue_order import LiveFirst
from edgematch.config.settings import Settings
from edgematch.names import (
    QUEUE_STEPS,
    STEP_BACKGROUND,
    STEP_INGEST,
    STEP_RESULTS,
    TASK_FLUSH_VERDICTS,
    TASK_RECORD_RESULT,
    TASK_RECORD_RESULTS,
    TASK_STEPS,
    TASK_SWEEP,
    queue_name,
    unacked_index_key,
    unacked_key,
    unacked_mutex_key,
)

#: ``celery worker`` options every edgematch worker runs with (see the module docstring).
WORKER_ARGS = ("--without-gossip", "--without-mingle", "--without-heartbeat")


def _router(namespace: str) -> Callable[..., dict[str, str] | None]:
    """Route each task to its step's queue; replays and backfills ingest on their own.

    Live uploads must not wait behind a backfill's thousands of ingest tasks, nor their
    results behind its results: background lanes' ingest and results tasks get the
    ``background`` queue, which a worker consumes in turn with the others.
    """

    def route(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> dict[str, str] | None:
        step = TASK_STEPS.get(name)
        if step is None:
            return None
        if step in (STEP_INGEST, STEP_RESULTS) and _lane(name, kwargs) != "live":
            step = STEP_BACKGROUND
        return {"queue": queue_name(namespace, step)}

    return route


def queue_for(namespace: str, name: str, kwargs: Any) -> str | None:
    """The queue (Redis list) task ``name`` with ``kwargs`` is routed to. Pure."""
    route = _router(namespace)(name, (), kwargs, {})
    return route["queue"] if route else None


def broker_ssl(broker_url: str) -> dict[str, Any] | None:
    """kombu's TLS options for ``broker_url``: verify the server unless the URL says otherwise.

    Only used when the URL carries no ``ssl_*`` query parameters: kombu then takes those
    (``?ssl_ca_certs=/path/ca.pem``; ``ssl_cert_reqs=none`` turns verification off, for
    that endpoint only) in place of these. Pure.
    """
    if urlsplit(broker_url).scheme == "amqps":
        return rabbit.broker_ssl(broker_url)
    if urlsplit(broker_url).scheme != "rediss":
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def _lane(name: str, kwargs: Any) -> str:
    kwargs = kwargs or {}
    if name == TASK_RECORD_RESULT:
        return str((kwargs.get("result") or {}).get("lane", "live"))
    if name == TASK_RECORD_RESULTS:
        # One request's results: live ones among them must not wait behind a backfill.
        lanes = {str(doc.get("lane", "live")) for doc in kwargs.get("results") or ()}
        return "live" if "live" in lanes or not lanes else min(lanes)
    return str(kwargs.get("lane", "live"))


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings for one deployment. Pure."""
    return {
        "broker_url": settings.broker_url,
        "broker_transport": transport_for(settings.broker_url),
        "broker_use_ssl": broker_ssl(settings.broker_url),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": _transport_options(settings),
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        **_delivery_options(settings),
        **_routing(settings),
        **_time_limits(settings),
        "beat_scheduler": "edgematch.tasks.lifecycle:HeartbeatScheduler",
        "beat_schedule": {
            "sweep": {
                "task": TASK_SWEEP,
                "schedule": 1.0,
                # A sweep is only useful now: stale ones queued while no worker ran are dropped.
                "options": {"expires": 5.0},
            },
            # The verdict log's staged results go to the object store about once an
            # interval (pipeline/verdictlog.py); one that waited past it is not needed.
            "flush-verdicts": {
                "task": TASK_FLUSH_VERDICTS,
                "schedule": settings.verdict_log_flush_s,
                "options": {"expires": settings.verdict_log_flush_s},
            },
        },
        "timezone": "UTC",
    }


def _transport_options(settings: Settings) -> dict[str, Any]:
    """kombu's transport options (see the module docstring)."""
    if settings.broker.amqp:
        return rabbit.transport_options()
    ns = settings.namespace
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        # Look for tasks abandoned by a killed worker every 10 s rather than kombu's
        # default of about 100 s: they come back soon after the visibility timeout.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        "socket_keepalive": True,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "health_check_interval": 10,
        "retry_on_timeout": True,
        # recovery/unacked.py keeps these fresh while their worker lives and hands a
        # dead worker's deliveries back within seconds.
        "unacked_key": unacked_key(ns),
        "unacked_index_key": unacked_index_key(ns),
        "unacked_mutex_key": unacked_mutex_key(ns),
        # Live work first, backfills last but with their minimum share of fetches
        # (config/queue_order.py). kombu calls this to make the cycle.
        "queue_order_strategy": functools.partial(
            LiveFirst, min_share=settings.background_min_share
        ),
        # Only read for a sentinel:// broker: which monitored master to follow.
        **({"master_name": settings.sentinel_master} if settings.sentinel_master else {}),
    }


def _delivery_options(settings: Settings) -> dict[str, Any]:
    """When a task is acknowledged, how many a worker holds, and how a worker stops."""
    return {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # Redis only (Celery ignores it elsewhere, with a warning): RabbitMQ's prefetch is
        # the multiplier's, per consumer, since quorum queues have no global QoS.
        "worker_disable_prefetch": settings.broker.redis,
        # When the broker's connection drops (a Redis restart or failover), running tasks
        # go on. Cancelling them (Celery's SIGTERM to the pool process) would kill a pump
        # holding an API answer, whose batch would then be sent a second time once its
        # lease ran out; every task is idempotent, so one that runs again after its
        # unacknowledged message comes back changes nothing.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # No pidbox on PUB/SUB (see the module docstring); gossip, mingle and heartbeats are
        # turned off by WORKER_ARGS, which only the command line can do.
        "worker_enable_remote_control": False,
        # SIGTERM: stop taking tasks, let running ones finish for the grace period, then
        # hand what is left back to the broker (late acknowledgement makes that safe).
        # Celery's SIGTERM (warm) has no limit of its own: tasks/shutdown.py is the
        # deadline. These two are its cold shutdown's (SIGQUIT, a second Ctrl+C).
        "worker_soft_shutdown_timeout": settings.shutdown_grace_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


def _routing(settings: Settings) -> dict[str, Any]:
    """One queue per step under the namespace, and the router that picks it."""
    ns = settings.namespace
    queues = (
        rabbit.task_queues(ns, settings.max_deliveries)
        if settings.broker.amqp
        else [Queue(queue_name(ns, step), routing_key=queue_name(ns, step)) for step in QUEUE_STEPS]
    )
    return {
        "task_queues": queues,
        "task_default_queue": queue_name(ns, STEP_INGEST),
        "task_routes": (_router(ns),),
    }


def _time_limits(settings: Settings) -> dict[str, Any]:
    """Soft and hard limits above the longest task: a pump's run plus its last request."""
    task_budget_s = settings.pump_max_s + settings.api_timeout_s + settings.api_connect_timeout_s
    return {
        "task_soft_time_limit": int(task_budget_s + 30),
        "task_time_limit": int(task_budget_s + 60),
    }
