"""One request of the match step: send a taken batch, then settle what the API said.

The request as a whole fails or is answered; failures of the whole request are handled
here (429 → the pool cools down; 401/403 → the breaker opens; transient or permanent →
every item decided alike), an answer is settled item by item (pipeline/settling.py).
Once the API has answered, the answer is settled even through a short Redis or broker
outage, so that quota is never spent twice on hashes already answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from edgematch.errors import (
    CredentialError,
    EdgematchError,
    PermanentError,
    RateLimited,
    TransientError,
    TransportError,
)
from edgematch.infra import metrics, outages
from edgematch.infra.logs import get_logger
from edgematch.photodna.client import HashItem
from edgematch.pipeline import departure, settling
from edgematch.pipeline.buffer import Batch
from edgematch.runtime import Runtime

log = get_logger(__name__)

#: The longest a pump holding an answer waits for Redis or the broker to come back: within
#: the 30 s the pump task's soft time limit leaves after its longest request
#: (config/celery.py), and never past the batch's lease.
SETTLE_OUTAGE_S = 25.0


def send_batch(
    rt: Runtime,
    batch: Batch,
    *,
    publish: settling.PublishMany,
    before_send: Callable[[], None] | None = None,
) -> None:
    """Send one leased batch and settle every item in it. Never raises for API outcomes.

    ``publish`` gets the batch's results in one call. ``before_send`` (for tests: a
    delay between the take and the send) runs first; then
    the request's slot is taken again at the moment it leaves (pipeline/departure.py),
    and a request that may not leave within a window is handed back to the buffer.

    Once the API has answered, the answer is settled even through a short Redis or broker
    outage (a restart, a failover): see :func:`_settle_through_outage`.
    """
    buf = rt.buffer
    # Measured from here, just after the take: the lease began a moment before.
    settled_by = time.monotonic() + min(rt.settings.lease_s - 2.0, SETTLE_OUTAGE_S)
    blog = log.bind(batch_id=batch.id, items=len(batch.items), probe=batch.probe)
    request = [HashItem(content_id=i.id, data=i.data) for i in batch.items]
    metrics.BATCH_SIZE.observe(len(request))
    if before_send is not None:
        before_send()
    # Last before the bytes go: only the HTTP exchange lies between the stamp and the API.
    if not _leave(rt, batch, publish=publish, blog=blog, settled_by=settled_by):
        return
    started = time.monotonic()
    try:
        with departure.writing(rt.departures, batch.id) as on_written:
            response = rt.api.match(request, on_written=on_written)
    except EdgematchError as exc:
        metrics.API_REQUESTS.labels(*_outcome(exc)).inc()
        if not isinstance(exc, TransportError):
            metrics.API_LATENCY.observe(time.monotonic() - started)
        settle_s = max(0.0, settled_by - time.monotonic())
        failure = exc  # bound for the closure: ``exc`` is unbound when the clause ends
        _settle_through_outage(
            lambda: _on_failure(
                rt, batch, failure, results=settling.BatchResults(publish), blog=blog
            ),
            blog=blog,
            for_s=settle_s,
        )
        return
    metrics.API_REQUESTS.labels("ok", str(response.http_status)).inc()
    metrics.API_LATENCY.observe(time.monotonic() - started)
    settle_s = max(0.0, settled_by - time.monotonic())

    def settle() -> None:
        if batch.probe:
            resumed = buf.resume()
            if "breaker" in resumed:
                blog.info("breaker_closed")
            if "cooldown" in resumed:
                blog.info("cooldown_probe_accepted")
        buf.count("requests_ok")
        settling.settle_response(rt, batch, response, results=settling.BatchResults(publish))

    _settle_through_outage(settle, blog=blog, for_s=settle_s)


def _settle_through_outage(settle: Callable[[], None], *, blog: Any, for_s: float) -> None:
    """Settle an answer (publish its results, settle its batch) even through a Redis or
    broker outage of up to ``for_s`` seconds.

    A pump that gave up would leave its batch leased: when the lease ran out the batch
    would be taken again and sent a second time, spending quota on hashes already
    answered. Running ``settle`` again is safe: dead letters are keyed by item, results are
    recorded once per item, and the settle of a batch is idempotent.
    """
    outages.ride_out(settle, for_s=for_s, log=blog, event="batch_settle_waits")


def _outcome(exc: EdgematchError) -> tuple[str, str]:
    """The (outcome, code) labels of a failed request: a small, fixed set of values."""
    code = settling.status_code(exc)
    if isinstance(exc, RateLimited):
        return "rate_limited", "429"
    if isinstance(exc, CredentialError):
        return "credentials", str(code)
    if isinstance(exc, TransportError):
        return "transport", "none"
    if isinstance(exc, TransientError):
        return "server_error", str(code) if code else "none"
    return "rejected", str(code) if code else "none"


def _on_failure(
    rt: Runtime, batch: Batch, exc: EdgematchError, *, results: settling.BatchResults, blog: Any
) -> None:
    """Settle a batch whose request failed as a whole."""
    s = rt.settings
    buf = rt.buffer
    if isinstance(exc, RateLimited):
        metrics.RATE_LIMITED.inc()
        planned = buf.set_cooldown(exc.retry_after_s)
        buf.count("http_429")
        blog.warning(
            "rate_limited",
            retry_after_s=exc.retry_after_s,
            cooldown_s=planned.hold_s,
            capped=planned.capped,
            probe=batch.probe,
        )
        settling.settle(rt, batch, (), [(item, 0.0) for item in batch.items], results)
        _end_probe(rt, batch)
        return
    if isinstance(exc, CredentialError):
        buf.open_breaker(s.breaker_probe_s)
        blog.error("credentials_refused", status_code=exc.status_code, pause_s=s.breaker_probe_s)
        settling.settle(rt, batch, (), [(item, 0.0) for item in batch.items], results)
        return
    if isinstance(exc, TransientError):
        _end_probe(rt, batch)
        blog.warning("batch_transient", reason=exc.reason, error=str(exc))
        settling.settle_all(rt, batch, exc, results=results)
        return
    if isinstance(exc, PermanentError):
        _end_probe(rt, batch)
        blog.error("batch_rejected", reason=exc.reason, error=str(exc))
        settling.settle_all(rt, batch, exc, results=results)
        return
    raise exc


def _leave(
    rt: Runtime, batch: Batch, *, publish: settling.PublishMany, blog: Any, settled_by: float
) -> bool:
    """Stamp the request as leaving now (pipeline/departure.py): True. False when it may
    not leave within a window (a long cooldown, a slot missed by far): its items then wait
    in the buffer again, as they were, for a later take, and no quota is spent."""
    held_s = departure.leave(rt.departures, batch.id)
    if held_s <= 0:
        return True

    def hand_back() -> None:
        # The stats' `requests` and `batch_items` count takes (take_batch.lua), this batch
        # among them: `requests_handed_back` is how many of those takes never left.
        rt.buffer.count("requests_handed_back")
        blog.info("request_handed_back", wait_s=round(held_s, 3))
        results = settling.BatchResults(publish)
        settling.settle(rt, batch, (), [(item, 0.0) for item in batch.items], results)
        _end_probe(rt, batch)

    _settle_through_outage(hand_back, blog=blog, for_s=max(0.0, settled_by - time.monotonic()))
    return False


def _end_probe(rt: Runtime, batch: Batch) -> None:
    if batch.probe:
        # The probe proved nothing about the key; let the next request probe again.
        rt.redis.delete(rt.buffer.keys.breaker_probe)
