"""Keeps the leases of the batches a process is sending, from one thread per process.

A batch taken from the buffer is leased for a short time (``EDGEMATCH_LEASE_S``) so that
the batch of a worker that died comes back within one lease; a live request, however
slow, must keep its batch, so its lease is renewed every third of it while it runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable

__all__ = ["LeaseKeeper"]

log = get_logger(__name__)


class LeaseKeeper:
    """Calls ``renew(batch_id)`` every ``period_s`` seconds for each batch kept.

    ``renew`` returns False when the batch is no longer leased (settled, or given back
    after it ran out): the keeper then lets go of it.
    """

    def __init__(self, renew: Callable[[str], bool], *, period_s: float) -> None:
        self._renew = renew
        self._period_s = period_s
        # Batches this process is sending, and the thread that renews their leases.
        self._kept: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def keeping(self, batch_id: str) -> Iterator[None]:
        """Renew the batch's lease while the block runs.

        One thread per process renews every batch the process is sending: it lives and
        dies with the process, so a live request, however slow, keeps its batch, and a
        killed one's comes back within ``lease_s``. The thread is started once, not per
        batch: a thread starting beside a request would compete with it for the GIL just
        as it goes out, and delay it past its rate-limit slot.
        """
        with self._lock:
            self._kept.add(batch_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._keep_leased, name="lease-keeper", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._kept.discard(batch_id)

    def _keep_leased(self) -> None:
        while True:
            time.sleep(self._period_s)
            with self._lock:
                batch_ids = list(self._kept)
            for batch_id in batch_ids:
                try:
                    renewed = self._renew(batch_id)
                except RedisUnavailable as exc:  # not a translation: tried again soon
                    log.warning("lease_renewal_failed", batch_id=batch_id, error=str(exc))
                    continue
                if not renewed:
                    # Settled just now, or lost while this process could not renew it
                    # (frozen, or Redis out of reach for a whole lease): then its items
                    # went back, and the settle logs lease_lost.
                    log.debug("lease_not_renewed", batch_id=batch_id)
                    with self._lock:
                        self._kept.discard(batch_id)
