"""The items of one ingest batch task, put in the batch buffer together.

``ingest_many`` reads its events' hash files side by side; each item that passed its
checks waits here instead of being pushed alone, and :meth:`Pushes.finish` pushes them all
with one script call (``push_many.lua``: each object version accepted exactly once, as
``push.lua`` does an item; 2 Redis commands an item and 5 a batch instead of 8 an item),
and ingest's cheap look before each event's S3 read (was this version accepted before?)
is one ``MGET`` for the whole batch (:meth:`Pushes.seen_before`), not an ``EXISTS`` an event.
The batch task finishes before it ends, so every item is in the buffer before the task's
journal entry is closed, as with a push an item; an event whose item could not be pushed
goes to its own task, as one whose ingest failed.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
import structlog

from edgematch.infra import metrics
from edgematch.infra.keys import LANES, Keys
from edgematch.infra.logs import get_logger
from edgematch.infra.redisclient import RedisUnavailable, lua_script
from edgematch.pipeline.ingest import ADDED, DUPLICATE, Defer, args_to_event, serve_cached
from edgematch.pipeline.items import Item
from edgematch.pipeline.results import Result
from edgematch.runtime import Runtime

log = get_logger(__name__)

#: What the ingest of an event returns while its item waits to be pushed.
WAITING: Final = "waiting"
#: Items pushed by one script call at most.
CHUNK: Final = 100

#: Hands an event (its ``token``) to its own task after ``exc``; returns the outcome.
HandOver = Callable[[Any, BaseException], str]


@dataclass(frozen=True)
class Waiting:
    """An item waiting to be pushed: ``identity`` its version as read, ``alias`` as the
    event named it, ``token`` what the batch task knows its event by."""

    item: Item
    identity: str
    alias: str
    token: Any


__all__ = ["WAITING", "Defer", "HandOver", "Pushes", "Waiting"]


class Pushes:
    """Items waiting to be pushed together. Thread-safe (the batch's reads run side by
    side); one per batch task."""

    def __init__(
        self, client: redis.Redis, namespace: str, *, ttl_s: int, looks: Sequence[str] = ()
    ) -> None:
        """``looks``: the object versions (identities) of the batch's events, looked at in
        one command by the first :meth:`seen_before`."""
        self._r = client
        self._k = Keys(namespace)
        self._ttl_s = ttl_s
        self._script = lua_script(client, "push_many")
        self._waiting: list[Waiting] = []
        self._lock = threading.Lock()
        self._looks = list(looks)
        self._seen: dict[str, bool] | None = None
        #: Serves the items found in the caches (None: each event looked them up itself).
        self._serve: Callable[[list[Waiting], HandOver], list[str | None]] | None = None

    @classmethod
    def of(
        cls,
        rt: Runtime,
        *,
        events: Sequence[dict[str, Any]] = (),
        publish: Callable[[Result], None] | None = None,
    ) -> Pushes:
        """Pushes on ``rt``'s Redis, namespace and idempotency TTL, for the batch of
        ``events`` (ingest task arguments: their versions are looked at together). With
        ``publish``, the items are looked up in the caches together before they are pushed,
        and ``publish`` gets the results of those found."""
        s = rt.settings
        pushes = cls(rt.redis, s.namespace, ttl_s=s.idempotency_ttl_s, looks=_identities(events))
        if publish is not None:
            pushes._serve = functools.partial(_serve_cached, rt, publish)
        return pushes

    def finds_cached(self) -> bool:
        """Whether :meth:`finish` looks the items up in the caches (see :meth:`of`)."""
        return self._serve is not None

    def seen(self, event: dict[str, Any]) -> bool | None:
        """Ingest's cheap look (was the object version ``event`` names accepted before?) for
        every event of the batch in one ``MGET``, made once; None when it could not be made,
        or the event was not among them: its ingest then looks for itself."""
        try:
            identity = args_to_event(event).identity
        except (KeyError, TypeError):
            return None
        with self._lock:
            if self._seen is None:
                self._seen = {}
                if self._looks:
                    with contextlib.suppress(RedisUnavailable):
                        found = self._r.mget([self._k.seen(i) for i in self._looks])
                        self._seen = {
                            i: v is not None for i, v in zip(self._looks, found, strict=True)
                        }
            return self._seen.get(identity)

    def defer(self, token: Any) -> Defer:
        """What keeps the item of the event the batch task knows as ``token`` (an
        ``ingest_many`` element: ``{"event", "correlation_id"}``)."""
        return _Deferred(self, token)

    def add(self, item: Item, identity: str, alias: str, *, token: Any) -> str:
        """Keep ``item`` until :meth:`finish`; returns ``WAITING``."""
        with self._lock:
            self._waiting.append(Waiting(item, identity, alias, token))
        return WAITING

    def finish(self, hand_over: HandOver) -> list[str]:
        """Push every item kept; the outcome of each: ADDED, DUPLICATE (its object version
        was accepted before), or what ``hand_over`` returned for an item whose push
        failed. Raises only what ``hand_over`` raises."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        outcomes: list[str] = []
        for start in range(0, len(waiting), CHUNK):
            chunk = waiting[start : start + CHUNK]
            try:
                served = self._serve(chunk, hand_over) if self._serve else [None] * len(chunk)
                outcomes += [o for o in served if o is not None]
                chunk = [w for w, o in zip(chunk, served, strict=True) if o is None]
                added = self._push(chunk) if chunk else []
            except Exception as exc:  # noqa: BLE001 - each event's own task applies the policy
                outcomes += [hand_over(w.token, exc) for w in chunk]
                continue
            for w, new in zip(chunk, added, strict=True):
                outcomes.append(_logged(w, new))
                metrics.INGESTED.labels(outcomes[-1]).inc()
        return outcomes

    def _push(self, chunk: list[Waiting]) -> list[bool]:
        keys = [*self._k.ready_lanes, self._k.items, self._k.stats]
        args: list[Any] = [self._ttl_s]
        for w in chunk:
            keys += [self._k.seen(w.identity), self._k.seen(w.alias)]
            args += [w.item.id, w.item.to_json(), LANES.index(w.item.lane) + 1]
        return [bool(n) for n in self._script(keys=keys, args=args)]


@dataclass(frozen=True)
class _Deferred:
    """One event's :class:`Defer`: its item kept by ``pushes``, its look made with all."""

    pushes: Pushes
    token: Any

    def __call__(self, item: Item, identity: str, alias: str) -> str:
        return self.pushes.add(item, identity, alias, token=self.token)

    def seen_before(self) -> bool | None:
        event = self.token.get("event") if isinstance(self.token, dict) else None
        return self.pushes.seen(event) if isinstance(event, dict) else None

    def finds_cached(self) -> bool:
        return self.pushes.finds_cached()


def _serve_cached(
    rt: Runtime, publish: Callable[[Result], None], chunk: list[Waiting], hand_over: HandOver
) -> list[str | None]:
    """Serve the items of ``chunk`` found in the caches, in one ``MGET`` for all: the
    outcome of each served (its own task's, if serving failed), None for the others.
    Raises TransientError when the caches cannot be read (then nothing was served)."""
    found = rt.match_cache.find_many([w.item.hash_sha256 for w in chunk])
    out: list[str | None] = []
    for w, cached in zip(chunk, found, strict=True):
        if cached is None:
            out.append(None)
            continue
        with structlog.contextvars.bound_contextvars(correlation_id=w.item.correlation_id):
            try:
                outcome = serve_cached(rt, w.item, cached, (w.identity, w.alias), publish)
            except Exception as exc:  # noqa: BLE001 - its own task applies the policy
                outcome = hand_over(w.token, exc)
        metrics.INGESTED.labels(outcome).inc()
        out.append(outcome)
    return out


def _identities(events: Sequence[dict[str, Any]]) -> list[str]:
    """The object versions the events name (one that cannot be read is left out: its own
    ingest says why)."""
    out: list[str] = []
    for event in events:
        try:
            out.append(args_to_event(event).identity)
        except (KeyError, TypeError):
            continue
    return out


def _logged(w: Waiting, added: bool) -> str:
    item = w.item
    with structlog.contextvars.bound_contextvars(correlation_id=item.correlation_id):
        if not added:
            log.info(
                "ingest_duplicate", bucket=item.bucket, key=item.key, version_id=item.version_id
            )
            return DUPLICATE
        log.info("ingest_buffered", **item.log_fields(), content_key=item.content_key)
        return ADDED
