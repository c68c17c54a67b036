"""Running one function over many elements on a thread pool, in the caller's log context.

Batch tasks read or tag up to a few dozen S3 objects each; side by side they take the time
of the slowest call rather than of all of them. The pool is this process's, made on first
use: a pool inherited across a fork (Celery's prefork children) has no threads.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

T = TypeVar("T")
E = TypeVar("E")

#: Threads one worker process runs a batch task's S3 calls on, side by side.
FANOUT_THREADS: Final = 8

#: This process's pool, by pid.
_pools: dict[int, ThreadPoolExecutor] = {}


def fan_out(work: Callable[[E], T], elements: Iterable[E]) -> list[T]:
    """``work`` on every element, on this process's thread pool; results in order.

    Each call runs in a copy of the caller's logging context (task id …). An exception
    from ``work`` is raised here, the first in element order.
    """
    pid = os.getpid()
    pool = _pools.get(pid)
    if pool is None:
        _pools.clear()
        pool = _pools[pid] = ThreadPoolExecutor(FANOUT_THREADS, thread_name_prefix="fanout")
    futures = [pool.submit(contextvars.copy_context().run, work, e) for e in elements]
    return [future.result() for future in futures]
