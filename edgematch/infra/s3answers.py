"""S3's answers, and the one request body, of the lean path (:mod:`s3wire`), read and
written as botocore does: a GetObject's headers and body (its length and checksum
verified), a GetObjectTagging's tag set, error answers (into what botocore's
``ClientError`` carries), the PutObjectTagging body.

S3 never sends a DTD: an answer with one is refused, so no entity is ever declared or
expanded (and xml.etree resolves no external entity). What cannot be read raises
:class:`UnreadableAnswer`, a botocore error (translated as any other: retried, then
unscannable).
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from xml.etree import ElementTree

from botocore import httpchecksum
from botocore.exceptions import (
    BotoCoreError,
    FlexibleChecksumError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as URLLib3ReadTimeoutError

from edgematch.infra.s3clients import http_date

if TYPE_CHECKING:
    from botocore.awsrequest import AWSResponse

__all__ = [
    "UnreadableAnswer",
    "error_in_200",
    "error_response",
    "object_answer",
    "tag_set",
    "tagging_body",
]

_NS: Final = "http://s3.amazonaws.com/doc/2006-03-01/"


# botocore's checksum classes and its order of preference for a response's checksum.
# botocore's own checksum tables (private: a botocore without them leaves the lean path
# off, see CHECKSUMS_KNOWN and S3Wire, rather than failing at import).
_CHECKSUMS: Final[dict[str, Any]] = getattr(httpchecksum, "_CHECKSUM_CLS", {})
_CHECKSUM_ORDER: Final[list[str]] = getattr(httpchecksum, "_ALGORITHMS_PRIORITY_LIST", [])
#: Whether the GET's checksum can be verified as botocore would.
CHECKSUMS_KNOWN: Final = bool(_CHECKSUMS) and bool(_CHECKSUM_ORDER)


class UnreadableAnswer(BotoCoreError):
    """An S3 answer that is not the XML it should be."""

    fmt = "unreadable S3 answer: {detail}"


def tag_set(body: bytes) -> list[dict[str, str]]:
    """The ``TagSet`` of a GetObjectTagging answer, as boto3 gives it: ``[{"Key",
    "Value"}]`` (an empty element is an empty string)."""
    root = _parse(body)
    # S3 always answers <Tagging><TagSet/></Tagging>, empty or not: any other document
    # (a proxy's page, an error sent with 200) is not "no tags".
    sets = [child for child in root if _local(child) == "TagSet"]
    if _local(root) != "Tagging" or len(sets) != 1:
        raise UnreadableAnswer(detail="not a Tagging document with one TagSet")
    tags = []
    for tags_element in sets:
        for tag in tags_element:
            fields = {_local(field): field.text or "" for field in tag}
            if _local(tag) != "Tag" or "Key" not in fields:
                raise UnreadableAnswer(detail="a tag without its key")
            tags.append({"Key": fields["Key"], "Value": fields.get("Value", "")})
    return tags


def tagging_body(tags: list[dict[str, str]]) -> bytes:
    """The body botocore serialises for PutObjectTagging: the same bytes (ElementTree
    escapes the text, and with utf-8 writes no XML declaration)."""
    root = ElementTree.Element("Tagging", xmlns=_NS)
    tags_element = ElementTree.SubElement(root, "TagSet")
    for item in tags:
        tag = ElementTree.SubElement(tags_element, "Tag")
        ElementTree.SubElement(tag, "Key").text = item["Key"]
        ElementTree.SubElement(tag, "Value").text = item["Value"]
    body: bytes = ElementTree.tostring(root, encoding="utf-8")
    return body


def _error_fields(response: AWSResponse) -> dict[str, str] | None:
    """The fields of an S3 error answer (Code, Message, RequestId …) as botocore reads
    them; None when the status is to be the code (an empty body, one that is not XML, a
    5xx's HTML page). Another XML document (a proxy's page) has an empty Code, as in
    botocore, unless it wraps an ``<Error>`` (the ``ErrorResponse`` form)."""
    body: bytes = response.content
    if not body.strip() or (response.status_code >= 500 and body.strip().startswith(b"<html>")):
        return None
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return {"Code": "", "Message": ""}  # not S3's: S3 never sends a DTD
    try:
        root = _parse(body)
    except UnreadableAnswer:
        return None
    if _local(root) == "Error":
        return {_local(child): child.text or "" for child in root if not len(child)}
    fields = {"Code": "", "Message": ""}
    for error in (child for child in root if _local(child) == "Error"):
        fields.update({_local(field): field.text or "" for field in error if not len(field)})
    return fields


def _parse(body: bytes) -> ElementTree.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise UnreadableAnswer(detail="a DTD")
    parser = ElementTree.XMLParser(encoding="utf-8")  # noqa: S314 - no DTD, checked above
    try:
        parser.feed(body)
        root: ElementTree.Element = parser.close()
    except ElementTree.ParseError as exc:
        raise UnreadableAnswer(detail=str(exc)) from exc
    return root


def _local(element: ElementTree.Element) -> str:
    return str(element.tag).rsplit("}", 1)[-1]


def error_in_200(response: AWSResponse) -> bool:
    """Whether a 200 answer (not a GET's body) is an error in disguise, as botocore tells
    it for S3: a body that is not XML (cut short) or is an ``<Error>``. botocore then
    takes the answer for a 500 (retried as such)."""
    if response.status_code != 200 or not response.content:
        return False
    try:
        return _local(_parse(response.content)) == "Error"
    except UnreadableAnswer:
        return True


def error_response(response: AWSResponse, attempt: int) -> dict[str, Any]:
    """An S3 error answer as botocore parses it: ``Error`` from the XML body, or the status
    as its code when there is none, and ``ResponseMetadata``."""
    fields = _error_fields(response)
    status = response.status_code
    error: dict[str, Any] = (
        {"Code": str(status), "Message": http.client.responses.get(status, "")}
        if fields is None
        else fields
    )
    headers = {name.lower(): value for name, value in response.headers.items()}
    metadata = {
        "RequestId": error.pop("RequestId", None) or headers.get("x-amz-request-id", ""),
        "HostId": error.pop("HostId", None) or headers.get("x-amz-id-2", ""),
        "HTTPStatusCode": response.status_code,
        "HTTPHeaders": headers,
        "RetryAttempts": attempt - 1,
    }
    return {"Error": error, "ResponseMetadata": metadata}


def object_answer(response: AWSResponse, *, checksums: bool) -> dict[str, Any]:
    """The parts of a GetObject answer ObjectStore reads, as boto3 names them."""
    headers = response.headers
    length = _length(headers.get("content-length"))
    # The first of botocore's preferred checksums S3 sent whole (not one of parts: "-").
    sent = [(a, headers.get(f"x-amz-checksum-{a}", "")) for a in _CHECKSUM_ORDER if checksums]
    checksum = next(((a, v) for a, v in sent if v and "-" not in v and a in _CHECKSUMS), None)
    answer: dict[str, Any] = {
        "Body": _Body(response, length, checksum),
        "Metadata": {
            name[len("x-amz-meta-") :]: value
            for name, value in headers.items()
            if name.lower().startswith("x-amz-meta-")
        },
    }
    if length is not None:
        answer["ContentLength"] = length
    named = {"ETag": "etag", "VersionId": "x-amz-version-id", "ContentType": "content-type"}
    answer.update({name: headers[header] for name, header in named.items() if header in headers})
    if "last-modified" in headers:
        answer["LastModified"] = http_date(headers["last-modified"])
    return answer


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise UnreadableAnswer(detail="a Content-Length that is not a number")
    return int(value)


@dataclass
class _Body:
    """A GET's body, read once: length and checksum verified when the read ends it."""

    _response: AWSResponse
    _length: int | None
    _checksum: tuple[str, str] | None
    _ended: bool = False

    def read(self, amt: int) -> bytes:
        try:
            data: bytes = bytes(self._response.raw.read(amt))
        except URLLib3ReadTimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=self._response.url, error=exc) from exc
        except ProtocolError as exc:
            raise ResponseStreamingError(error=exc) from exc
        self._ended = len(data) < amt
        if self._ended and self._length is not None and len(data) != self._length:
            raise IncompleteReadError(actual_bytes=len(data), expected_bytes=self._length)
        if self._ended and self._checksum is not None:
            algorithm, expected = self._checksum
            digest = _CHECKSUMS[algorithm]()
            digest.update(data)
            if digest.b64digest() != expected:
                raise FlexibleChecksumError(error_msg=f"the body's {algorithm} does not match")
        return data

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else drop it."""
        if self._ended:
            self._response.raw.release_conn()
        else:
            self._response.raw.close()
