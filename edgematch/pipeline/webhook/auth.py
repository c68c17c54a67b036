"""Who may post notifications: whoever presents the shared token.

MinIO sends its ``auth_token`` as ``Authorization: Bearer TOKEN`` (or verbatim when the token
already reads ``SCHEME VALUE``: ``internal/event/target/webhook.go``). Ceph RGW has no header
setting for an HTTP endpoint, but its HTTP client sends the user and password of the
endpoint's URL as HTTP Basic: the password is then the token and the user name is ignored.

Comparisons take the same time whatever matches (``hmac.compare_digest``); the token is
never logged or echoed. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hmac

__all__ = ["authorized"]

#: Longest Authorization header looked at; anything longer is refused unread.
MAX_HEADER_BYTES = 4096


def authorized(header: bytes | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header value presents ``token``.

    Accepted: ``Bearer TOKEN`` and ``Basic base64(USER:TOKEN)``, schemes in any case.
    Everything else, an empty ``token`` included, is refused.
    """
    if not header or not token or len(header) > MAX_HEADER_BYTES:
        return False
    scheme, _, value = header.strip().partition(b" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == b"bearer":
        return hmac.compare_digest(value, token)
    if scheme == b"basic":
        return hmac.compare_digest(_basic_password(value), token)
    return False


def _basic_password(value: bytes) -> bytes:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
    _, colon, password = decoded.partition(b":")
    return password if colon else b""
