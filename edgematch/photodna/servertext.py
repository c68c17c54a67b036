"""Text the PhotoDNA service sends back, made safe to keep in a message or a log. Pure.

A misbehaving proxy may echo the subscription key, control characters or a whole page of
HTML: every piece of server text is redacted of the key (by the caller's ``redact``),
stripped of control characters and cut to :data:`TEXT_LIMIT` characters before it is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["TEXT_LIMIT", "Cleaner", "clean", "cleaner", "optional_text"]

#: Longest piece of server text kept, in characters.
TEXT_LIMIT: Final = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")

#: Turns any JSON value into safe text ("" for what is not a string).
Cleaner = Callable[[object], str]


def clean(text: str) -> str:
    """Server text made safe to log: no control characters, at most 200 characters."""
    flat = _CONTROL.sub(" ", text).strip()
    return flat if len(flat) <= TEXT_LIMIT else flat[: TEXT_LIMIT - 1] + "…"


def cleaner(redact: Callable[[str], str] | None) -> Cleaner:
    """A :data:`Cleaner` that applies ``redact`` (when given) before :func:`clean`."""

    def clean_value(value: object) -> str:
        if not isinstance(value, str):
            return ""
        text = redact(value) if redact is not None else value
        return clean(text)

    return clean_value


def optional_text(value: object, clean_value: Cleaner) -> str | None:
    """An id the answer may write as a string or a number, cleaned; None when empty."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return clean_value(value) or None
