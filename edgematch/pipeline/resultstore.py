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
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Commit:
    """One item of :meth:`ResultStore.commit_many`: the arguments of :meth:`ResultStore.commit`."""

    result: Result
    record: bool
    expected_item: str | None
    decision: str = ""


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
        self._commit_many = lua_script(client, "record_results")

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
        doc, pointer, line = self._documents(Commit(result, record, expected_item, decision))
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
                    doc,
                    pointer,
                    self.ttl_s,
                    line,
                    self._max_staged,
                ],
            )
        )
        if outcome == _LOG_BEHIND:
            raise self._behind()
        return None if outcome < 0 else bool(outcome)

    def current_many(self, locations: Sequence[tuple[str, str]]) -> list[dict[str, Any] | None]:
        """:meth:`current` of each hash object (bucket, key), in order, with one MGET."""
        if not locations:
            return []
        raws = self._r.mget([self._k.result(bucket, key) for bucket, key in locations])
        return [json.loads(raw) if raw is not None else None for raw in raws]

    def commit_many(self, commits: Sequence[Commit]) -> list[bool | LogBehind | None]:
        """:meth:`commit` of each of ``commits`` (of distinct hash objects) in one script
        call, each its own compare-and-set. The verdict log's room goes to the items in
        order; one it has none for is not written and gets ``LogBehind`` (not raised), so
        the others stand. Returns one outcome a commit, in order, as :meth:`commit` would.
        """
        if not commits:
            return []
        keys: list[str] = [self._k.log_staged]
        args: list[Any] = [len(commits), self.ttl_s, self._max_staged]
        for commit in commits:
            r = commit.result
            keys += [
                self._k.result(r.bucket, r.key),
                self._k.content_result(r.content_bucket, r.content_key),
                self._k.result_item(r.item_id),
            ]
            doc, pointer, line = self._documents(commit)
            args += [
                r.item_id,
                commit.expected_item or "",
                "1" if commit.record else "0",
                doc,
                pointer,
                line,
            ]
        outcomes = [int(o) for o in self._commit_many(keys=keys, args=args)]
        return [
            self._behind() if o == _LOG_BEHIND else None if o < 0 else bool(o) for o in outcomes
        ]

    def _documents(self, commit: Commit) -> tuple[str, str, str]:
        """The recorded result (JSON), its content object's pointer, and its log line."""
        r = commit.result
        doc = r.to_dict()
        doc["recorded_at"] = time.time()
        line = {**doc, "current": commit.record, "decision": commit.decision}
        return (
            json.dumps(doc, separators=(",", ":")),
            location_digest(r.bucket, r.key),
            json.dumps(line, separators=(",", ":")),
        )

    def _behind(self) -> LogBehind:
        return LogBehind(
            f"the verdict log has {self._max_staged} results not yet written to the "
            "object store (EDGEMATCH_VERDICT_LOG_MAX_STAGED); recording waits for it"
        )

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
