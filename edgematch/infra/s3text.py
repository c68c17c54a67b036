"""Free text in the places S3 restricts: user metadata values and object keys. Pure.

An S3 key is any UTF-8 text of up to 1,024 bytes — unicode in any script, spaces, ``+``,
``%``, ``?``, ``#`` — but not every place that names a key takes any text:

* **User metadata values** travel as HTTP headers and must be ASCII (botocore refuses
  others before sending). We write them RFC 2047-encoded (``=?UTF-8?B?…?=``), the form S3
  itself uses: S3 decodes such a value when it stores it and encodes it again when it
  returns it, so the console shows the text and the 2 KB metadata limit counts it
  decoded. Printable ASCII goes as it is. :func:`decode_metadata_value` reads both back,
  and is how anything reading our metadata (or a platform's ``content-key``) gets the text.
* **Keys we derive from a key** (the quarantine copy's ``<source-bucket>/<content-key>``)
  can pass 1,024 bytes: :func:`fit_key` shortens them deterministically, keeping a digest
  of the whole name so two sources never share one copy.

Tags need nothing here: tag values allow unicode letters, and the only tags edgematch
writes are its verdicts; keys never go into a tag (a 1,024-byte key does not fit a
256-character tag value). Report documents, dead letters and logs are JSON, which
carries any text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_METADATA_BYTES",
    "decode_metadata_value",
    "encode_metadata_value",
    "fit_key",
    "key_problem",
    "metadata_bytes",
]

#: S3's limit on an object key, in UTF-8 bytes.
MAX_KEY_BYTES: Final = 1024
#: S3's limit on an object's user metadata: the UTF-8 bytes of every name and value.
MAX_METADATA_BYTES: Final = 2048

# RFC 2047: an encoded-word is at most 75 characters. "=?UTF-8?B?" + base64 + "?=" leaves
# 63 characters of base64, i.e. 45 bytes of text (60 characters) per word.
_WORD_BYTES: Final = 45
_ENCODED_WORD: Final = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_DIGEST_CHARS: Final = 16


def encode_metadata_value(text: str) -> str:
    """``text`` as an ASCII metadata value that :func:`decode_metadata_value` reads back.

    Printable ASCII without leading, trailing or doubled spaces (which HTTP may fold)
    and without ``=?`` (which would read as an encoded-word) is returned as it is;
    anything else becomes RFC 2047 ``B`` encoded-words of UTF-8, at most 75 characters
    each, separated by single spaces. Raises ValueError for text that is not valid
    Unicode (a lone surrogate): no S3 key can hold it.
    """
    if _plain(text):
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text with a lone surrogate cannot be UTF-8 encoded") from None
    words: list[str] = []
    chunk = b""
    for char in text:
        encoded = char.encode("utf-8")
        if chunk and len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(_word(chunk))
            chunk = b""
        chunk += encoded
    words.append(_word(chunk))
    return " ".join(words)


def decode_metadata_value(value: str) -> str:
    """The text of a metadata value as S3 (or :func:`encode_metadata_value`) wrote it.

    RFC 2047 encoded-words (``B`` or ``Q``, any charset Python knows) are decoded and the
    whitespace between two of them dropped, as the RFC says; other text is kept as it
    is. A value whose encoded-words cannot be decoded (bad base64, unknown charset,
    bytes invalid in their charset) is returned unchanged: it is then taken literally,
    never guessed at.
    """
    if "=?" not in value:
        return value
    parts: list[tuple[str | None, bytes | str]] = []
    position = 0
    for found in _ENCODED_WORD.finditer(value):
        between = value[position : found.start()]
        adjacent = parts and parts[-1][0] is not None and not between.strip()
        if between and not adjacent:
            parts.append((None, between))
        charset, kind, payload = found.group(1), found.group(2).upper(), found.group(3)
        try:
            codecs.lookup(charset)
            data = _unb64(payload) if kind == "B" else _unq(payload)
        except (LookupError, ValueError):
            return value
        parts.append((charset.lower(), data))
        position = found.end()
    if position < len(value):
        parts.append((None, value[position:]))
    joined = _join(parts)
    return value if joined is None else joined


def metadata_bytes(metadata: Mapping[str, str]) -> int:
    """What ``metadata`` counts against S3's 2 KB: the UTF-8 bytes of names and values.

    Counted on the values as sent; for RFC 2047 values that is more than S3 counts (it
    counts them decoded), so a set within the limit here is within it at S3.
    """
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in metadata.items())


def fit_key(prefix: str, key: str) -> str:
    """``prefix + key``, shortened to S3's 1,024 bytes when it is longer. Pure.

    A name that fits is returned as it is. A longer one keeps as much of ``key``'s
    beginning as fits (whole characters only) followed by ``~`` and the first 16 hex
    digits of the SHA-256 of the whole ``key``, so the result is the same every time for
    the same key and differs for keys that share a beginning. Raises ValueError when
    ``prefix`` leaves no room for the digest.
    """
    whole = prefix + key
    if len(whole.encode("utf-8")) <= MAX_KEY_BYTES:
        return whole
    tail = "~" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:_DIGEST_CHARS]
    room = MAX_KEY_BYTES - len(prefix.encode("utf-8")) - len(tail)
    if room < 0:
        raise ValueError(f"prefix of {len(prefix.encode('utf-8'))} bytes leaves no room")
    head = key.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return prefix + head + tail


# --- internals -------------------------------------------------------------------------


def _plain(text: str) -> bool:
    return (
        all(" " <= char <= "~" for char in text)
        and text == text.strip()
        and "  " not in text
        and "=?" not in text
    )


def _word(data: bytes) -> str:
    return "=?UTF-8?B?" + base64.b64encode(data).decode("ascii") + "?="


def _unb64(payload: str) -> bytes:
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _unq(payload: str) -> bytes:
    out = bytearray()
    index = 0
    while index < len(payload):
        char = payload[index]
        if char == "_":
            out.append(0x20)
        elif char == "=":
            pair = payload[index + 1 : index + 3]
            if len(pair) != 2 or not all(c in "0123456789abcdefABCDEF" for c in pair):
                raise ValueError("bad =XX escape")
            out.append(int(pair, 16))
            index += 2
        else:
            out.append(ord(char))
        index += 1
    return bytes(out)


def _join(parts: list[tuple[str | None, bytes | str]]) -> str | None:
    """Concatenate decoded parts; adjacent words of one charset are decoded together, so
    a character split across two words (which RFC 2047 forbids, but is seen) survives."""
    text: list[str] = []
    pending: bytes = b""
    charset: str | None = None
    for part_charset, data in parts:
        if part_charset is not None and part_charset == charset:
            assert isinstance(data, bytes)
            pending += data
            continue
        if charset is not None:
            try:
                text.append(pending.decode(charset))
            except UnicodeDecodeError:
                return None
        if part_charset is None:
            assert isinstance(data, str)
            text.append(data)
            charset, pending = None, b""
        else:
            assert isinstance(data, bytes)
            charset, pending = part_charset, data
    if charset is not None:
        try:
            text.append(pending.decode(charset))
        except UnicodeDecodeError:
            return None
    return "".join(text)


def key_problem(key: str) -> str | None:
    """Why an (already decoded) object key is refused, or None when it is acceptable.

    Refused: empty, over 1024 UTF-8 bytes, not encodable as UTF-8, containing NUL, or
    with a ``.`` or ``..`` path segment — such keys become path traversal as soon as a
    key is mapped to a file or to another key. Backslash counts as a separator too, for
    the same reason on Windows paths.
    """
    if not key:
        return "empty key"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "key is not valid UTF-8"
    if size > MAX_KEY_BYTES:
        return f"key is {size} bytes, over the S3 limit of {MAX_KEY_BYTES}"
    if "\x00" in key:
        return "key contains NUL"
    if any(segment in (".", "..") for segment in key.replace("\\", "/").split("/")):
        return "key has a '.' or '..' path segment"
    return None
