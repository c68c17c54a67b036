"""Made-up items for the batch buffer, as ingest makes them, and a buffer filled with them.

For the tests and the benchmarks that start at the match step: the item ``n`` of a
``prefix`` is ``<prefix><n>.bin`` (its content ``<prefix><n>``) in bucket ``b``, with random
hash bytes of the size the sandbox accepts, and pushed under the identity ``id-<key>``.
"""

from __future__ import annotations

import os

from devtools.sandbox.rules import DEFAULT_HASH_SIZE
from edgematch.pipeline.buffer import BatchBuffer
from edgematch.pipeline.items import Item

__all__ = ["fill", "new_item"]

BUCKET = "b"


def new_item(n: int, *, prefix: str = "k", lane: str = "live") -> Item:
    """The ``n``-th made-up item of ``prefix``, on ``lane``."""
    return Item.new(
        bucket=BUCKET,
        key=f"{prefix}{n}.bin",
        version_id=None,
        etag=f"e{n}",
        content_bucket=BUCKET,
        content_key=f"{prefix}{n}",
        data=os.urandom(DEFAULT_HASH_SIZE),
        correlation_id=f"c{n}",
        lane=lane,
    )


def fill(buffer: BatchBuffer, count: int, *, prefix: str = "k", lane: str = "live") -> list[Item]:
    """Push items 0 to ``count`` - 1 of ``prefix``; raises if one was there already."""
    items = [new_item(n, prefix=prefix, lane=lane) for n in range(count)]
    for made in items:
        if not buffer.push(made, f"id-{made.key}"):
            raise ValueError(f"{made.key} was in the buffer already")
    return items
