"""Hash bytes for the tests, of the size the sandbox (and so the pipeline) accepts."""

from __future__ import annotations

from devtools.sandbox.rules import DEFAULT_HASH_SIZE

#: An Edge V2 hash's size in bytes (924), as the sandbox checks it unless told otherwise.
HASH = DEFAULT_HASH_SIZE
