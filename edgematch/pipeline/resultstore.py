"""Where results are recorded in Redis for the hot window, staged for the verdict log, and
found again.

The hot window is ``EDGEMATCH_RESULT_TTL_S``. A result's first recording is staged for the
verdict log in the object store (:mod:`edgematch.pipeline.verdictlog`) in the same atomic
step, by a compare-and-set script, so two results at once cannot undo each other and the
same result delivered twice is staged once. Lookups also read the keys an earlier release
wrote, until they expire.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

import redis

from edgematch.errors import TransientError
from edgematch.infra.keys import Keys, location_digest
from edgematch.infra.redisclient import lua_script
from edgematch.pipeline.results import Result

#: What the record script answers when the verdict log is too far behind to stage more.
_LOG_BEHIND: Final = -2


class LogBehind(TransientError):
    """The verdict log holds ``EDGEMATCH_VERDICT_LOG_MAX_STAGED`` results not yet written to
    the object store: no more are recorded until it catches up (the task retries)."""


class ResultStore:
    """Where results are recorded (and staged for the verdict log) and found again.

    ``ttl_s`` is the hot window; ``max_staged`` how many results may wait for the log.
    """

    def __init__(
        self, client: redis.Redis, namespace: str, *, ttl_s: int, max_staged: int = 100_000
    ) -> None:
        self._r = client
        self._k = Keys(namespace)
        self.ttl_s = ttl_s
        self._max_staged = max_staged
        self._commit = lua_script(client, "record_result")

    def current(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The result of the hash object bucket/key recorded within the hot window, if any."""
        raw = self._r.get(self._k.result(bucket, key))
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def commit(
        self, result: Result, *, record: bool, expected_item: str | None, decision: str = ""
    ) -> bool | None:
        """Note ``result`` as seen and, with ``record``, make it the recorded result of its
        hash object — only if the recorded result is still the one of ``expected_item``.
        The item's first recording is staged for the verdict log in the same step, with
        ``record`` (``current``) and ``decision`` (why) on its line.

        Returns True for the item's first recording, False for a repeat, None when another
        result was recorded since the caller read it (decide again). Raises LogBehind when
        the log cannot take it yet.
        """
        doc = result.to_dict()
        doc["recorded_at"] = time.time()
        line = {**doc, "current": record, "decision": decision}
        outcome = int(
            self._commit(
                keys=[
                    self._k.result(result.bucket, result.key),
                    self._k.content_result(result.content_bucket, result.content_key),
                    self._k.result_item(result.item_id),
                    self._k.log_staged,
                ],
                args=[
                    result.item_id,
                    expected_item or "",
                    "1" if record else "0",
                    json.dumps(doc, separators=(",", ":")),
                    location_digest(result.bucket, result.key),
                    self.ttl_s,
                    json.dumps(line, separators=(",", ":")),
                    self._max_staged,
                ],
            )
        )
        if outcome == _LOG_BEHIND:
            raise LogBehind(
                f"the verdict log has {self._max_staged} results not yet written to the "
                "object store (EDGEMATCH_VERDICT_LOG_MAX_STAGED); recording waits for it"
            )
        return None if outcome < 0 else bool(outcome)

    def get(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The result for a hash object, or for a content object (looked up through it),
        within the hot window — or kept under an earlier release's keys until they expire."""
        raw = self._r.get(self._k.result(bucket, key))
        if raw is None:
            pointer = self._r.get(self._k.content_result(bucket, key))
            if pointer is not None:
                digest = pointer.decode() if isinstance(pointer, bytes) else str(pointer)
                raw = self._r.get(self._k.result_by_digest(digest))
        if raw is None:
            raw = self._legacy(bucket, key)
        if raw is None:
            return None
        doc: dict[str, Any] = json.loads(raw)
        return doc

    def _legacy(self, bucket: str, key: str) -> Any:
        raw = self._r.get(self._k.legacy_result(bucket, key))
        if raw is not None:
            return raw
        pointer = self._r.get(self._k.legacy_content_result(bucket, key))
        if pointer is None:
            return None
        text = pointer.decode() if isinstance(pointer, bytes) else str(pointer)
        hash_bucket, _, hash_key = text.partition("/")
        return self._r.get(self._k.legacy_result(hash_bucket, hash_key))
