"""The moment a request leaves: its rate-limit slot taken again at that moment.

A batch spends its slot when it is taken (``lua/take_batch.lua``), but its request leaves
later: the pump hands it to a thread of its process (pipeline/flights.py), and on a
busy host the process may not run for tens of milliseconds. The API counts a request when
it arrives, so two requests whose slots were a window apart could arrive closer than that
and draw a 429; a request late by more than a window would leave with no entry in the log
at all. So just before the bytes go, :meth:`Departures.depart` moves the request's entry
to Redis's now, checked against the window as a take is (``lua/depart.lua``), and says
how long to wait when it does not fit, or when the pool cools down after a 429 drawn since
the take. :func:`leave` waits briefly, or gives up so that the batch is handed back.
Once the exchange is over, :func:`writing` moves the entry again, to the moment the body
had been written (``lua/left.lua``): a process descheduled in the middle of the write
sends its request later than it started.

What is left between that moment and the API's count (the network, the API's own queue)
is what ``EDGEMATCH_RATE_LIMIT_MARGIN`` covers.

Raises ``RedisUnavailable`` (a ``TransientError``) when Redis cannot be reached.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from edgematch.config.settings import Settings
from edgematch.errors import TransientError
from edgematch.infra import metrics
from edgematch.infra.keys import Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import Redis, lua_script
from edgematch.pipeline.window import limiter_window

__all__ = ["Departures", "leave", "writing"]

log = get_logger(__name__)


class Departures:
    """The last step before a request leaves, on the pool's shared rate log."""

    def __init__(self, client: Redis, settings: Settings) -> None:
        self._keys = Keys(settings.namespace)
        self._per_window, window_ms = limiter_window(
            settings.rate_limit_per_s, settings.rate_limit_margin
        )
        self._window_ms = window_ms
        self._script = lua_script(client, "depart")
        self._left = lua_script(client, "left")
        self._r = client

    @property
    def window_s(self) -> float:
        """The limiter's window, in seconds: the longest a request waits to leave."""
        return self._window_ms / 1000

    def depart(self, batch_id: str) -> float:
        """Stamp the batch's request as leaving now, if the window has room: 0.0. Else
        the seconds to wait before asking again (the entry is then out of the log)."""
        k = self._keys
        waited = self._script(
            keys=[k.rate_log, k.cooldown], args=[batch_id, self._per_window, self._window_ms]
        )
        return max(0.0, int(waited) / 1000)

    def left(self, batch_id: str, ago_s: float) -> bool:
        """The request's body left ``ago_s`` seconds ago: move its entry there, if that
        is later and still within a window of its stamp (``lua/left.lua``). True if moved."""
        moved = self._left(
            keys=[self._keys.rate_log], args=[batch_id, max(0, int(ago_s * 1000)), self._window_ms]
        )
        return bool(moved)

    def withdraw(self, batch_id: str) -> None:
        """The request will not leave: its slot is free again. Idempotent."""
        self._r.zrem(self._keys.rate_log, batch_id)


def leave(
    departures: Departures, batch_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> float:
    """Wait until the request of ``batch_id`` may leave, then stamp it: returns 0.0.

    A request waits at most one window in all (a request that was held up waits for the
    slot it missed; a cooldown of a second or less is waited out). Longer than that it
    does not wait: its slot is withdrawn and the seconds it would still have to wait are
    returned, so that the caller hands the batch back to the buffer.
    """
    budget = departures.window_s
    while True:
        wait_s = departures.depart(batch_id)
        if wait_s <= 0:
            return 0.0
        if wait_s > budget:
            departures.withdraw(batch_id)
            return wait_s
        metrics.LIMITER_WAIT.labels("depart").observe(wait_s)
        sleep(wait_s)
        budget -= wait_s


@contextlib.contextmanager
def writing(departures: Departures, batch_id: str) -> Iterator[Callable[[float], None]]:
    """Around the HTTP exchange of a request that has left: yields the callback that
    notes when its body was written (``PhotoDNAClient.match(on_written=...)``); once the
    exchange is over, answered or not, the request's entry moves to that moment.

    A failure to move it (Redis unreachable) is logged, not raised: the answer must still
    be settled, and the entry then only stays where depart.lua put it.
    """
    written: list[float] = []
    try:
        yield written.append
    finally:
        if written:
            try:
                departures.left(batch_id, time.monotonic() - written[-1])
            except TransientError as exc:
                log.warning("request_left_unrecorded", batch_id=batch_id, error=str(exc))
