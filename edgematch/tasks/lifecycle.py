"""Heartbeats from the loops that do the work, for ``edgematch health``, and of the tasks
a worker holds, for the sweep.

The worker's heartbeat is a timer on its event loop (a bootstep), not a thread: if the loop
hangs, the heartbeat stops and the liveness probe fails. Beat touches its heartbeat on
every scheduler tick. The same bootstep notes the pool's size before the pool forks, for
the match step (a pump in a worker's only process must not sleep while other work waits).

The worker's main process — the consumer that takes each message from the broker — also
keeps every delivery it holds fresh in kombu's unacked index (``DeliveryRefresh``, fed by
Celery's ``task_received`` signal, which runs in the consumer for every task it takes,
ETA and countdown tasks included), so that the sweep hands back a dead worker's tasks
within seconds (recovery/unacked.py).

A worker whose consumer could take a task (a pool process free) but has stopped asking the
broker for one (``ConsumerWatch``, config/broker.py's ``FetchWatch``) cannot recover by
itself, and its heartbeat, ticking on the same event loop, stays fresh: it logs
``consumer_stalled`` and stops with exit status ``EXIT_STALLED`` for its supervisor to start
it again (what it held is handed back by the sweep).
"""

from __future__ import annotations

import functools
from typing import Any, Final

from celery import Celery, bootsteps, signals
from celery.beat import Scheduler
from celery.worker import state as worker_state
from kombu import Consumer
from kombu.asynchronous.semaphore import LaxBoundedSemaphore

from edgematch.config import rabbit
from edgematch.config.broker import WATCH_INTERVAL_S, FetchingChannel, FetchWatch
from edgematch.config.queue_order import LiveFirstWaiting, prefetch, rank
from edgematch.infra import health
from edgematch.infra.logs import get_logger
from edgematch.recovery.unacked import DeliveryKeeper
from edgematch.runtime import runtime

log = get_logger(__name__)

#: The exit status of a worker stopped because its consumer stalled (systemd's
#: ``Restart=on-failure`` and Kubernetes restart it).
EXIT_STALLED: Final = 3

#: The number of processes in this worker's pool, once known (set before the pool forks,
#: so every pool process sees it). None outside a worker.
_pool_processes: int | None = None
#: The queues this worker consumes, likewise.
_queues: tuple[str, ...] = ()
#: The deliveries this worker's consumer holds (in its main process only).
_keeper: DeliveryKeeper | None = None


def pool_processes() -> int | None:
    """How many processes this worker's pool runs (None when not in a worker)."""
    return _pool_processes


def consumed_queues() -> tuple[str, ...]:
    """The queues (Redis lists) this worker takes tasks from; () when not in a worker."""
    return _queues


class WorkerHeartbeat(bootsteps.StartStopStep):
    """Touch the worker's heartbeat file every few seconds from the event loop's timer."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        global _pool_processes, _queues  # noqa: PLW0603 - facts about this process, set once
        super().__init__(worker, **kwargs)
        self.tref: Any = None
        concurrency = getattr(worker, "concurrency", None)
        _pool_processes = concurrency if isinstance(concurrency, int) else None
        consume_from = getattr(worker.app.amqp.queues, "consume_from", None) or {}
        _queues = tuple(sorted(consume_from))

    def start(self, worker: Any) -> None:
        health.beat("worker")
        self.tref = worker.timer.call_repeatedly(
            health.BEAT_INTERVAL_S, health.beat, ("worker",), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


class DeliveryRefresh(bootsteps.StartStopStep):
    """Keep the deliveries this worker's consumer holds fresh while the process lives."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        global _keeper  # noqa: PLW0603 - one keeper per worker process, by design
        super().__init__(worker, **kwargs)
        rt = runtime()
        if not rt.settings.broker.hand_back:
            return  # RabbitMQ requeues a dead consumer's deliveries itself
        _keeper = DeliveryKeeper(
            rt.broker_redis, rt.settings.namespace, max_age_s=rt.settings.visibility_timeout_s
        )

    def start(self, worker: Any) -> None:
        if _keeper is not None:
            _keeper.start()

    def stop(self, worker: Any) -> None:
        if _keeper is not None:
            _keeper.stop()


class ConsumerWatch(bootsteps.StartStopStep):
    """Stop the worker when its consumer, with a pool process free, sends no fetch for
    ``STALL_CHECKS`` checks in a row (config/broker.py). Watches each connection anew."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.tref: Any = None
        self.watch = FetchWatch()

    def start(self, c: Any) -> None:
        self.watch = FetchWatch()
        self.tref = c.timer.call_repeatedly(WATCH_INTERVAL_S, self.check, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def check(self, c: Any) -> None:
        channel = getattr(c.task_consumer, "channel", None)
        if not isinstance(channel, FetchingChannel):
            return  # not connected yet, or another transport
        # Celery's own measure of a free process (worker_disable_prefetch's can_consume).
        processes = getattr(c.controller, "max_concurrency", None) or c.pool.num_processes
        held = len(worker_state.reserved_requests)
        if self.watch.observe(channel.fetches, free=held < processes):
            log.error(
                "consumer_stalled",
                quiet_s=self.watch.checks * WATCH_INTERVAL_S,
                held=held,
                processes=processes,
                exit_status=EXIT_STALLED,
            )
            # How Celery's own signal handlers ask for a warm shutdown; the event loop
            # raises it on its next turn.
            worker_state.should_stop = EXIT_STALLED  # type: ignore[assignment]
            self.stop(c)


class LiveFirstConsumer(Consumer):
    """kombu's consumer, with each queue's own prefetch (config/queue_order.py's
    ``prefetch``): RabbitMQ applies a ``basic.qos`` without ``global`` to each consumer
    started after it on the channel, so one is sent before each queue's ``basic.consume``.
    Celery's later prefetch changes reach no running consumer (quorum queues: no global
    QoS), as without this."""

    def __init__(self, *args: Any, processes: int, **kwargs: Any) -> None:
        self.processes = processes
        super().__init__(*args, **kwargs)

    def _basic_consume(self, queue: Any, *args: Any, **kwargs: Any) -> Any:
        # kombu's own attributes, undeclared in its stubs: a queue consumed already keeps
        # its consumer (and prefetch).
        if queue.name not in getattr(self, "_active_tags", {}):
            channel: Any = self.channel
            held = prefetch(queue.name, getattr(self, "_queues", None) or {}, self.processes)
            channel.basic_qos(0, held, False)
        return super()._basic_consume(queue, *args, **kwargs)


class LiveFirstPool(bootsteps.StartStopStep):
    """RabbitMQ: tasks the consumer holds wait for a pool process live first
    (config/queue_order.py's ``LiveFirstWaiting`` as the pool semaphore's waiting list),
    and each live queue's consumer holds a task waiting for every process
    (``LiveFirstConsumer``)."""

    requires = ("celery.worker.components:Pool",)

    def include_if(self, w: Any) -> bool:
        return bool(runtime().settings.broker.amqp)

    def start(self, w: Any) -> None:
        # Consumed in that order too: at start-up the first deliveries are live ones.
        queues = w.app.amqp.queues
        for name in ("_consume_from", "_default_consume_from"):
            chosen = getattr(queues, name, None)
            if chosen is not None:
                setattr(queues, name, dict(sorted(chosen.items(), key=lambda kv: rank(kv[0]))))
        if isinstance(w.concurrency, int) and w.concurrency > 0:
            w.app.amqp.Consumer = functools.partial(LiveFirstConsumer, processes=w.concurrency)
        if not isinstance(getattr(w, "semaphore", None), LaxBoundedSemaphore):
            return  # a pool without one (solo, threads) takes tasks as they come
        # kombu's own attributes (a deque and its two methods), undeclared in its stubs.
        semaphore: Any = w.semaphore
        waiting = LiveFirstWaiting(min_share=runtime().settings.background_min_share)
        for entry in list(semaphore._waiting):
            waiting.append(entry)
        semaphore._waiting = waiting
        semaphore._add_waiter = waiting.append
        semaphore._pop_waiter = waiting.popleft
        log.info("held_tasks_live_first", queues=list(queues.consume_from))


class DeadLetterQueue(bootsteps.StartStopStep):
    """RabbitMQ: declare the dead-letter exchange and queue on every (re)connect, before the
    consumer takes a task, so that a task past its delivery limit always has somewhere to
    go (config/rabbit.py; the sweep drains it, recovery/deadqueue.py)."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def include_if(self, c: Any) -> bool:
        return bool(runtime().settings.broker.amqp)

    def start(self, c: Any) -> None:
        queue = rabbit.dead_letter_queue(runtime().settings.namespace)
        queue(c.connection.default_channel).declare()


def _hold_delivery(request: Any = None, **_: Any) -> None:
    # Runs in the consumer for every task it takes, before the task is queued for the pool
    # or an ETA timer: from here until it is acknowledged, it is refreshed.
    message = getattr(request, "message", None)
    if _keeper is not None and message is not None:
        _keeper.hold(message)


class HeartbeatScheduler(Scheduler):
    """Celery beat's in-memory scheduler, touching beat's heartbeat on every tick."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        health.beat("beat")
        interval: float = super().tick(*args, **kwargs)
        # Tick at least as often as the heartbeat needs, whatever the schedule says.
        return min(interval, health.BEAT_INTERVAL_S)


def install(app: Celery) -> None:
    app.steps["worker"].add(WorkerHeartbeat)
    app.steps["worker"].add(DeliveryRefresh)
    app.steps["worker"].add(LiveFirstPool)
    app.steps["consumer"].add(ConsumerWatch)
    app.steps["consumer"].add(DeadLetterQueue)
    signals.task_received.connect(_hold_delivery, weak=False)
