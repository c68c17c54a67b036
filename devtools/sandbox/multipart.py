"""A small, strict ``multipart/form-data`` parser (RFC 7578 over RFC 2046 framing).

The sandbox only needs the parts of a MatchEdgeHash upload: each part's form ``name``
(which the real API echoes as ``ContentId``) and its raw bytes. ``cgi`` is deprecated and
``email``'s MIME parser works on text and rewrites line endings, which would corrupt
binary hashes, so the framing is parsed by hand over ``bytes``: a part's data ends only at
``CRLF--boundary``, so CR and LF bytes inside a hash are kept exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MultipartError",
    "Part",
    "boundary_from_content_type",
    "header_params",
    "parse_multipart",
]

# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
_MAX_BOUNDARY_LEN = 70

# One ``; name=value`` parameter, the value a token or a quoted string with backslash escapes.
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


class MultipartError(ValueError):
    """The body is not a well-formed ``multipart/form-data`` document."""


@dataclass(frozen=True)
class Part:
    """One part of a form: its form field name, optional file name and type, raw bytes."""

    name: str | None
    filename: str | None
    content_type: str | None
    data: bytes


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``main/value; a=1; b="x y"`` into the lowercased main value and its parameters.

    Parameter names are lowercased; quoted values are unquoted and unescaped.
    """
    main, _, _rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(value, len(main)):
        raw = match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return main.strip().lower(), params


def boundary_from_content_type(content_type: str | None) -> str:
    """Return the boundary of a ``multipart/form-data`` Content-Type, or raise MultipartError."""
    if not content_type:
        raise MultipartError("missing Content-Type")
    mime, params = header_params(content_type)
    if mime != "multipart/form-data":
        raise MultipartError(f"Content-Type is {mime!r}, not multipart/form-data")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= _MAX_BOUNDARY_LEN:
        raise MultipartError("missing or invalid boundary")
    return boundary


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    if not block:
        return headers
    # Part headers are ASCII in practice; file names may be UTF-8 (what httpx and browsers
    # send). Undecodable bytes must not fail the whole request.
    for line in block.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("malformed part header")
        headers[name.strip().lower()] = value.strip()
    return headers


def _make_part(header_block: bytes, data: bytes) -> Part:
    headers = _parse_headers(header_block)
    name: str | None = None
    filename: str | None = None
    disposition = headers.get("content-disposition")
    if disposition is not None:
        kind, params = header_params(disposition)
        if kind != "form-data":
            raise MultipartError(f"part disposition is {kind!r}, not form-data")
        name = params.get("name")
        filename = params.get("filename")
    return Part(name=name, filename=filename, content_type=headers.get("content-type"), data=data)


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Split a ``multipart/form-data`` body into its parts, in order.

    Accepts a preamble before the first boundary and an epilogue after the last one (RFC
    2046 allows both); raises MultipartError on truncated or malformed framing.
    """
    if not 1 <= len(boundary) <= _MAX_BOUNDARY_LEN:
        raise MultipartError("invalid boundary")
    dash_boundary = b"--" + boundary.encode("latin-1")
    delimiter = b"\r\n" + dash_boundary

    if body.startswith(dash_boundary):
        pos = len(dash_boundary)
    else:
        first = body.find(delimiter)
        if first < 0:
            raise MultipartError("no boundary found in body")
        pos = first + len(delimiter)

    parts: list[Part] = []
    while True:
        if body.startswith(b"--", pos):
            return parts
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            raise MultipartError("body ends after a boundary")
        # RFC 2046 allows linear whitespace ("transport padding") after a boundary.
        if body[pos:line_end].strip(b" \t"):
            raise MultipartError("unexpected bytes after a boundary")
        headers_start = line_end + 2
        if body.startswith(b"\r\n", headers_start):
            header_block, data_start = b"", headers_start + 2
        else:
            headers_end = body.find(b"\r\n\r\n", headers_start)
            if headers_end < 0:
                raise MultipartError("part headers are not terminated")
            header_block, data_start = body[headers_start:headers_end], headers_end + 4
        data_end = body.find(delimiter, data_start)
        if data_end < 0:
            raise MultipartError("missing closing boundary")
        parts.append(_make_part(header_block, body[data_start:data_end]))
        pos = data_end + len(delimiter)
