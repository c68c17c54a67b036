"""The requests one pump has in flight: sent and settled on a thread each, a few at a time.

A pump used to send each batch itself and wait for its answer, kicking another pump
first so that the next slot would not go unused meanwhile. In a worker with one process
that other pump could not run until this one ended, so the pool missed slots and paid a
match task (a broker round trip, the journal, a kick script) for nearly every request.
Now a pump hands each taken batch to a thread of its process and goes on taking the next
slot itself; up to ``match_pumps`` requests of a pump are in flight at once. Before the
pump's task returns, every request it sent is settled (:meth:`Flights.land`): nothing it
took is left leased behind it, and a warm shutdown waits for those answers as it waited
for the one before.

The threads share what the pump already shared between processes' pumps: the Redis
client (a connection pool), the API's HTTP client and the lease keeper are thread-safe.
Results are published one request at a time (a lock of the process): a broker
producer is not shared by two threads at once.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["Flights", "serialized"]

T = TypeVar("T")


class _SendingThreads:
    """The process's sending threads, made on first use (after the worker's fork)."""

    def __init__(self) -> None:
        self._forget()
        # A child of a fork has none of its parent's threads: it makes its own pool.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._size = 0
        self.publish_lock = threading.Lock()

    def executor(self, size: int) -> ThreadPoolExecutor:
        """A pool of at least ``size`` threads (a larger one replaces a smaller one; the
        smaller one's running requests finish on their threads)."""
        with self._lock:
            if self._executor is None or self._size < size:
                old = self._executor
                self._executor = ThreadPoolExecutor(
                    max_workers=size, thread_name_prefix="edgematch-flight"
                )
                self._size = size
                if old is not None:
                    old.shutdown(wait=False)
            return self._executor


_threads = _SendingThreads()


def serialized(publish: Callable[[Sequence[T]], None]) -> Callable[[Sequence[T]], None]:
    """``publish``, called by one flight at a time in this process."""

    def publish_one_at_a_time(results: Sequence[T]) -> None:
        with _threads.publish_lock:
            publish(results)

    return publish_one_at_a_time


class Flights:
    """The requests of one pump run: at most ``limit`` in flight."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a pump needs room for at least one request in flight")
        self._limit = limit
        self._pending: set[Future[None]] = set()
        self._failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def failed(self) -> bool:
        """Has a request of this pump raised (seen by :meth:`make_room` or a landing)?"""
        return self._failure is not None

    def make_room(self) -> None:
        """Wait until fewer than ``limit`` requests are in flight."""
        done = {future for future in self._pending if future.done()}
        if done:
            self._pending -= done
            self._note(done)
        while len(self._pending) >= self._limit:
            self._wait(FIRST_COMPLETED)

    def launch(self, send: Callable[[], None]) -> None:
        """Send on a thread of the process (after :meth:`make_room` if ``limit`` are in
        flight). The thread runs in a copy of the caller's context (its bound log fields).
        """
        self.make_room()
        context = contextvars.copy_context()
        self._pending.add(_threads.executor(self._limit).submit(context.run, send))

    def land_one(self) -> bool:
        """Wait until one more request is settled: False when none was in flight."""
        if not self._pending:
            return False
        self._wait(FIRST_COMPLETED)
        return True

    def land(self) -> None:
        """Wait until every request launched is settled; then raise the first failure a
        flight raised, if any (its batch stays leased until the lease runs out, exactly
        as when a pump sending it itself failed)."""
        while self._pending:
            self._wait(ALL_COMPLETED)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def _wait(self, how: str) -> None:
        done, self._pending = wait(self._pending, return_when=how)
        self._note(done)

    def _note(self, done: set[Future[None]]) -> None:
        for future in done:
            error = future.exception()
            if error is not None and self._failure is None:
                self._failure = error
