"""Progress of a long command (``dlq replay``, ``backfill``) on stderr.

On a terminal, one line redrawn in place at most ten times a second: a bar, counts, the
rate of this run and the time left. Elsewhere (a log file, CI, ``kubectl logs``) a plain
line every ``interval_s`` and one at the end, so logs are not flooded with redraws.
Nothing here goes to stdout, which stays for the command's own output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from edgematch.ops.timespec import format_duration

_REDRAW_S = 0.1
_PLAIN_INTERVAL_S = 10.0


def eta_s(done: int, total: int | None, rate_per_s: float) -> float | None:
    """Seconds left at ``rate_per_s``; None when unknown (no total, no rate yet). Pure."""
    if total is None or rate_per_s <= 0:
        return None
    return max(0, total - done) / rate_per_s


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####.....]`` filled in proportion, clamped to the width. Pure."""
    filled = width if total <= 0 else min(width, width * max(0, done) // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render(label: str, done: int, total: int | None, rate_per_s: float, note: str = "") -> str:
    """One progress line. Pure."""
    parts = [label]
    if total is not None:
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        parts += [bar(done, total), f"{done:,}/{total:,}", f"{percent:.1f}%"]
    else:
        parts.append(f"{done:,}")
    parts.append(f"{rate_per_s:.1f}/s")
    if total is not None:
        parts.append(f"ETA {format_duration(eta_s(done, total, rate_per_s))}")
    if note:
        parts.append(note)
    return "  ".join(parts)


class Progress:
    """Counts toward ``total`` (None when unknown) and shows it; see the module docstring.

    ``done`` may start above 0 (a resumed run); the rate counts this run's progress only.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        done: int = 0,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = _PLAIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = done
        self.note = ""
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._interval_s = _REDRAW_S if self._tty else interval_s
        self._clock = clock
        self._start = clock()
        self._start_done = done
        self._shown_at = float("-inf")

    @property
    def rate_per_s(self) -> float:
        elapsed = self._clock() - self._start
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        return render(self.label, self.done, self.total, self.rate_per_s, self.note)

    def advance(self, by: int = 1, *, note: str | None = None) -> None:
        """Count ``by`` more done (and replace the note, if given); show when due."""
        self.done += by
        if note is not None:
            self.note = note
        self._show()

    def set_note(self, note: str) -> None:
        """Change the trailing note (``paused: backlog …``) without counting progress."""
        if note != self.note:
            self.note = note
            self._show(force=not self._tty and bool(note))

    def finish(self) -> None:
        """Show the final line (and end the redrawn one)."""
        self._show(force=True)
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()

    def _show(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._shown_at < self._interval_s:
            return
        self._shown_at = now
        if self._tty:
            self._stream.write("\r\x1b[K" + self.line())
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()
