"""Free text in S3's restricted places: metadata values round-trip, derived keys fit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgematch.infra.s3text import (
    MAX_KEY_BYTES,
    decode_metadata_value,
    encode_metadata_value,
    fit_key,
    metadata_bytes,
)

#: Any character an S3 key can hold: every code point but lone surrogates.
CHARS = st.characters(exclude_categories=["Cs"])
TEXT = st.text(CHARS, max_size=1200)
KEYS = [
    "photos/ünï cödé ☃.jpg",
    "写真/猫の写真.jpg",
    "صور/قطة جميلة.jpg",
    "emoji/😀🎉 party.jpg",
    "a+b c%20d?e#f=?g.jpg",
    "tab\there\nnewline.jpg",
    "é" * 512,
]


@given(TEXT)
def test_any_text_round_trips_through_an_ascii_metadata_value(text: str) -> None:
    """Whatever the text, the value is ASCII botocore sends, and decodes to the same text."""
    value = encode_metadata_value(text)
    assert value.isascii()
    assert all(" " <= c <= "~" for c in value)
    assert decode_metadata_value(value) == text


@given(TEXT)
def test_encoded_words_keep_to_rfc_2047_length(text: str) -> None:
    """Each encoded-word is at most 75 characters, as RFC 2047 (and S3's decoder) expect."""
    value = encode_metadata_value(text)
    if value != text:
        assert all(len(word) <= 75 for word in value.split(" "))


@pytest.mark.parametrize("key", KEYS)
def test_keys_of_every_kind_round_trip(key: str) -> None:
    """Diacritics, CJK, Arabic, emoji, +, %, ?, #, control characters, 1,024 bytes."""
    value = encode_metadata_value(key)
    assert value != key and decode_metadata_value(value) == key


def test_plain_ascii_is_left_readable() -> None:
    """Version ids, ETags and plain keys are written as they are."""
    plain = ("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "d41d8cd98f00b204e9800998ecf8427e", "a/b.jpg")
    for text in plain:
        assert encode_metadata_value(text) == text
        assert decode_metadata_value(text) == text


def test_s3s_own_encodings_are_read() -> None:
    """S3 returns a unicode value as one B or Q encoded-word, in any case of charset."""
    assert decode_metadata_value("=?UTF-8?B?w7xuw68gY8O2ZMOpIOKYgy5qcGc=?=") == "ünï cödé ☃.jpg"
    assert decode_metadata_value("=?utf-8?q?caf=C3=A9_au_lait?=") == "café au lait"
    assert decode_metadata_value("=?ISO-8859-1?Q?caf=E9?=") == "café"
    # Text beside a word is kept; space between two words is not.
    assert decode_metadata_value("x =?UTF-8?B?w7w=?= =?UTF-8?B?w7w=?= y") == "x üü y"


def test_a_character_split_across_two_words_is_joined() -> None:
    """Some encoders split a character's bytes over two words; the bytes are joined first."""
    assert decode_metadata_value("=?UTF-8?B?4pg=?= =?UTF-8?B?gw==?=") == "☃"


@pytest.mark.parametrize(
    "value",
    ["=?UTF-8?B?!!!?=", "=?x-no-such-charset?B?w7w=?=", "=?UTF-8?B?/w==?=", "=?UTF-8?Q?=Z1?="],
)
def test_undecodable_values_are_taken_literally(value: str) -> None:
    """Bad base64, an unknown charset or invalid bytes: the value as it is, never a guess."""
    assert decode_metadata_value(value) == value


def test_lone_surrogates_are_refused() -> None:
    """Not valid Unicode, so no S3 key: refused rather than written wrong."""
    with pytest.raises(ValueError, match="surrogate"):
        encode_metadata_value("a\ud800b")


def test_metadata_bytes_counts_utf8_of_names_and_values() -> None:
    """The measure S3's 2 KB limit uses."""
    assert metadata_bytes({"ab": "cd", "é": "☃"}) == 2 + 2 + 2 + 3


@given(st.text(CHARS, min_size=1, max_size=1100))
def test_fit_key_stays_within_1024_bytes_and_is_stable(key: str) -> None:
    """Any key under any bucket prefix: at most 1,024 bytes, the same name every time."""
    prefix = "a-bucket-name-of-some-length/"
    fitted = fit_key(prefix, key)
    assert len(fitted.encode("utf-8")) <= MAX_KEY_BYTES
    assert fitted == fit_key(prefix, key) and fitted.startswith(prefix)
    if len((prefix + key).encode("utf-8")) <= MAX_KEY_BYTES:
        assert fitted == prefix + key
    else:
        assert re.search(r"~[0-9a-f]{16}$", fitted)


def test_long_keys_sharing_a_beginning_get_different_names() -> None:
    """Two 1,024-byte keys alike but for their end do not share a quarantine copy."""
    one, two = "写" * 340 + "a.jpg", "写" * 340 + "b.jpg"
    assert fit_key("uploads/", one) != fit_key("uploads/", two)
    assert fit_key("uploads/", "short.jpg") == "uploads/short.jpg"
