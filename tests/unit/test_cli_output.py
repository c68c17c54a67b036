"""What the on-call commands print for keys of any kind: readable, never a broken table."""

from __future__ import annotations

import io
import json
import sys

import pytest

from edgematch.ops.support import dumps, printable, safe_streams


def test_printable_keeps_text_of_any_script() -> None:
    """Diacritics, CJK, Arabic, emoji, spaces and + % ? # are shown as they are."""
    for key in ("ünï cödé ☃.jpg", "写真/猫.jpg", "صور/قطة.jpg", "😀 a+b%20?#.jpg"):
        assert printable(key) == key


def test_printable_escapes_what_would_break_a_line_or_a_terminal() -> None:
    """Newlines, terminal escapes and bidi overrides in a key are shown escaped."""
    shown = printable("a\nb\x1b[31mc\u202ed\te")
    assert shown == "a\\nb\\x1b[31mc\\u202ed\\te"
    assert shown.isprintable()


def test_json_answers_carry_keys_as_text() -> None:
    """`result` and `dlq show` print the key itself, and the JSON reads back the same."""
    doc = {"key": "写真/ünï cödé ☃.jpg\n"}
    text = dumps(doc, sort_keys=True)
    assert "写真/ünï cödé ☃.jpg" in text and "\n" not in text
    assert json.loads(text) == doc


def test_a_terminal_that_cannot_show_a_character_gets_an_escape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A latin-1 stdout prints a CJK key escaped instead of failing half-way."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", stream)
    safe_streams()
    print("s3://uploads/写真.jpg ü")
    stream.flush()
    assert raw.getvalue().decode("latin-1") == "s3://uploads/\\u5199\\u771f.jpg ü\n"
