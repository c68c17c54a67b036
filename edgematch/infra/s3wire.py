"""The hot path's S3 requests — GetObject, GetObjectTagging, PutObjectTagging — signed and
sent without botocore's client pipeline: about half its CPU a call, the same on the wire.

What boto3 would do is kept, and taken from the boto3 client itself: the endpoint of each
bucket is resolved once by the client (a GetObject it prepares and signs, answered
locally, never sent), so addressing style, custom endpoints and region are the client's;
requests are signed by botocore's ``S3SigV4Auth`` with the client's credentials, frozen
afresh each request (rotating role credentials keep working); they go through the
client's own HTTP session (its pool, timeouts, TLS verification and CA bundle, proxies);
retries are botocore's standard policy, its attempts, backoff and retry quota; keys and
query strings are encoded by botocore's function. Errors come out as botocore's
exceptions — ``ClientError`` with the parsed S3 error, its status and headers — so that
:func:`~edgematch.infra.s3errors.translated` stays the one boundary.

Anything this path cannot reproduce exactly goes to the boto3 client instead, for the
bucket or for the call: an ARN or S3 Express bucket name, a client that does not retry
in standard mode, a resolved request not signed with SigV4 for ``s3`` or carrying a header
this path does not send, a redirect to another region, parameters other than bucket, key,
version and If-Match. A GET body is read once (``read(amt)``); when that reaches its end
the length is checked against Content-Length and the checksum S3 sent is verified.
"""

from __future__ import annotations

import base64
import http.client
import io
import threading
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from xml.etree import ElementTree

import structlog
from botocore import httpchecksum
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse, HTTPHeaders
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.retries import quota, standard
from botocore.utils import percent_encode
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import ReadTimeoutError as URLLib3ReadTimeoutError

from edgematch.infra.s3clients import http_date

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Wire"]

log = structlog.get_logger(__name__)

_NS: Final = "http://s3.amazonaws.com/doc/2006-03-01/"
# The headers boto3's GetObject may carry for this path to stand in for it (lower case).
_KNOWN_HEADERS: Final = frozenset(
    {
        "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
        "x-amz-checksum-mode", "user-agent", "amz-sdk-invocation-id", "amz-sdk-request",
    }
)  # fmt: skip
_REDIRECT_CODES: Final = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_USER_AGENT: Final = "edgematch-s3wire"
# botocore's checksum classes and its order of preference for a response's checksum.
_CHECKSUMS: Final[dict[str, Any]] = httpchecksum._CHECKSUM_CLS  # type: ignore[attr-defined]
_CHECKSUM_ORDER: Final[list[str]] = httpchecksum._ALGORITHMS_PRIORITY_LIST  # type: ignore[attr-defined]


class UnreadableAnswer(BotoCoreError):
    """An S3 answer that is not the XML it should be (a BotoCoreError: retried, then
    unscannable)."""

    fmt = "unreadable S3 answer: {detail}"


@dataclass(frozen=True)
class _Route:
    """Where one bucket's keys are addressed: ``base`` + the encoded key; signed for
    ``region``; ``checksums`` when boto3 asks S3 for the object's checksum."""

    base: str
    region: str
    checksums: bool


class S3Wire:
    """``get_object``, ``get_object_tagging`` and ``put_object_tagging`` as on the boto3
    client (keyword parameters, the parts of the answer ObjectStore reads), lean when the
    bucket allows it and through ``client`` otherwise. Thread-safe."""

    def __init__(self, client: S3Client, *, lean: bool = True) -> None:
        self._client = client
        self._routes: dict[str, _Route | None] = {}
        self._lock = threading.Lock()
        endpoint = getattr(client, "_endpoint", None)
        self._http: Any = getattr(endpoint, "http_session", None)
        # The credentials the client signs with (refreshable ones refresh themselves).
        get_credentials = getattr(client, "_get_credentials", None)
        self._credentials = get_credentials() if get_credentials is not None else None
        retries: dict[str, Any] = getattr(client.meta.config, "retries", None) or {}
        attempts = retries.get("total_max_attempts")
        self._lean = bool(
            lean and self._http is not None and retries.get("mode") == "standard" and attempts
        )
        detector = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota(), detector)
        self._retry = standard.RetryHandler(
            retry_policy=standard.RetryPolicy(
                retry_checker=standard.StandardRetryConditions(max_attempts=attempts or 1),
                retry_backoff=standard.ExponentialBackoff(
                    service_name="s3", throttling_detector=detector
                ),
            ),
            retry_event_adapter=standard.RetryEventAdapter(),
            retry_quota=self._quota,  # type: ignore[arg-type]
            service_name="s3",
        )

    def get_object(self, **params: Any) -> Any:
        """GetObject: ``Body`` (read once, then closed), ``ContentLength``, ``ETag``,
        ``VersionId``, ``Metadata``, ``ContentType``, ``LastModified``."""
        route = self._route(params, {"VersionId", "IfMatch"})
        if route is None:
            return self._client.get_object(**params)
        query = _version_query("", params.get("VersionId"))
        headers = {"If-Match": params["IfMatch"]} if params.get("IfMatch") else {}
        if route.checksums:
            headers["x-amz-checksum-mode"] = "ENABLED"
        response = self._send("GetObject", route, "GET", params, query, headers, b"")
        if response is None:
            return self._client.get_object(**params)
        return _object_answer(response, checksums=route.checksums)

    def get_object_tagging(self, **params: Any) -> Any:
        """GetObjectTagging: ``TagSet``, a list of ``{"Key", "Value"}``."""
        route = self._route(params, {"VersionId"})
        if route is None:
            return self._client.get_object_tagging(**params)
        query = _version_query("?tagging", params.get("VersionId"))
        response = self._send("GetObjectTagging", route, "GET", params, query, {}, b"")
        if response is None:
            return self._client.get_object_tagging(**params)
        return {"TagSet": _tag_set(_xml(response.content))}

    def put_object_tagging(self, **params: Any) -> Any:
        """PutObjectTagging of ``Tagging={"TagSet": [...]}``, with the CRC32 checksum
        botocore sends (S3 requires one)."""
        route = self._route(params, {"VersionId", "Tagging"})
        if route is None or set(params["Tagging"]) != {"TagSet"}:
            return self._client.put_object_tagging(**params)
        body = _tagging_body(params["Tagging"]["TagSet"])
        crc = zlib.crc32(body).to_bytes(4, "big")
        headers = {
            "x-amz-checksum-crc32": base64.b64encode(crc).decode(),
            "x-amz-sdk-checksum-algorithm": "CRC32",
        }
        query = _version_query("?tagging", params.get("VersionId"))
        response = self._send("PutObjectTagging", route, "PUT", params, query, headers, body)
        if response is None:
            return self._client.put_object_tagging(**params)
        return {}

    # -- the route of a bucket ---------------------------------------------------------------
    def _route(self, params: dict[str, Any], optional: set[str]) -> _Route | None:
        """The bucket's route, or None when this call goes through the boto3 client."""
        if not self._lean or not params.get("Key") or set(params) - optional - {"Bucket", "Key"}:
            return None
        bucket = params["Bucket"]
        if bucket in self._routes:
            return self._routes[bucket]
        route, reason = self._resolve(bucket)
        if reason != "unresolved":  # a failed resolution (no credentials...) is tried again
            with self._lock:
                self._routes[bucket] = route
            if route is None:
                log.info("s3wire.boto3_bucket", bucket=bucket, reason=reason)
        return route

    def _resolve(self, bucket: str) -> tuple[_Route | None, str]:
        """Let the client prepare and sign one GetObject for ``bucket`` (answered here,
        never sent) and read the base URL and signing region off it."""
        if ":" in bucket or bucket.endswith(("--x-s3", "--xa-s3")):
            return None, "ARN or directory bucket"
        token = uuid.uuid4().hex
        key = f"/{token}//ü +%?#~&=;"  # every class of character the encoding treats apart
        seen: list[AWSPreparedRequest] = []

        def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
            if token not in (request.url or ""):
                return None
            seen.append(request)
            return AWSResponse(request.url, 200, HTTPHeaders(), io.BytesIO())

        event = "before-send.s3.GetObject"
        self._client.meta.events.register_last(event, answer, unique_id=token)  # type: ignore[arg-type]
        try:
            self._client.get_object(Bucket=bucket, Key=key)["Body"].close()
        except (BotoCoreError, ClientError):
            return None, "unresolved"
        finally:
            self._client.meta.events.unregister(event, unique_id=token)
        if len(seen) != 1:
            return None, "not resolved by one request"
        return _route_of(seen[0], key)

    # -- one request, with botocore's retries -------------------------------------------------
    def _send(  # noqa: PLR0917 - the parts of one request
        self,
        operation: str,
        route: _Route,
        method: str,
        params: dict[str, Any],
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> AWSResponse | None:
        """The 2xx answer, or None when S3 sends the bucket elsewhere (the route is then
        dropped and the call left to boto3). Raises ClientError or botocore's transport
        errors after botocore's standard retries."""
        url = route.base + percent_encode(params["Key"], safe="/~") + query
        model = self._client.meta.service_model.operation_model(operation)
        context: dict[str, Any] = {}
        attempt = 0
        while True:
            attempt += 1
            response: AWSResponse | None = None
            error: Exception | None = None
            parsed: dict[str, Any] = {}
            try:
                response = self._http.send(self._signed(route, method, url, headers, body))
                if response.status_code >= 300:
                    parsed = _error(response, attempt)
            except (BotoConnectionError, HTTPClientError) as exc:
                error = exc
            delay = self._retry.needs_retry(
                response=None if response is None else (response, parsed),
                attempts=attempt,
                caught_exception=error,
                request_dict={"context": context},
                operation=model,
            )
            if delay is None:
                break
            if response is not None:
                response.raw.close()
            time.sleep(delay)
        if error is not None:
            raise error
        assert response is not None
        if response.status_code >= 300:
            if (
                response.status_code in (301, 302, 307)
                or parsed["Error"]["Code"] in _REDIRECT_CODES
            ):
                with self._lock:
                    self._routes[params["Bucket"]] = None
                log.info("s3wire.boto3_bucket", bucket=params["Bucket"], reason="redirected")
                return None
            raise ClientError(parsed, operation)  # type: ignore[arg-type]
        self._quota.release_retry_quota(context, response)  # type: ignore[arg-type]
        return response

    def _signed(
        self, route: _Route, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> AWSPreparedRequest:
        request = AWSRequest(method=method, url=url, headers=headers, data=body or None)
        request.headers["User-Agent"] = _USER_AGENT
        request.context["client_config"] = self._client.meta.config
        credentials = self._credentials.get_frozen_credentials() if self._credentials else None
        S3SigV4Auth(credentials, "s3", route.region).add_auth(request)  # type: ignore[arg-type]
        prepared = request.prepare()
        prepared.stream_output = method == "GET"
        return prepared


class _Body:
    """A GET's body, read once: length and checksum verified when the read ends it."""

    def __init__(self, response: AWSResponse, length: int | None, checksum: tuple[str, str] | None):
        self._response = response
        self._length = length
        self._checksum = checksum
        self._ended = False

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
            if digest.digest() != base64.b64decode(expected):
                raise FlexibleChecksumError(error_msg=f"the body's {algorithm} does not match")
        return data

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else drop it."""
        if self._ended:
            self._response.raw.release_conn()
        else:
            self._response.raw.close()


def _route_of(request: AWSPreparedRequest, key: str) -> tuple[_Route | None, str]:
    """The route boto3 took for ``key``, when this path can take it exactly."""
    encoded = percent_encode(key, safe="/~")
    url = request.url or ""
    headers = {name.lower(): _text(value) for name, value in request.headers.items()}
    scope = headers.get("authorization", "").removeprefix("AWS4-HMAC-SHA256 Credential=")
    parts = scope.split(",", 1)[0].split("/")
    if not url.endswith(encoded) or "?" in url or request.body:
        return None, "key not addressed as expected"
    if len(parts) != 5 or parts[3] != "s3" or parts[4] != "aws4_request":
        return None, "not signed with SigV4 for s3"
    if set(headers) - _KNOWN_HEADERS:
        return None, "headers this path does not send"
    checksums = headers.get("x-amz-checksum-mode") == "ENABLED"
    return _Route(base=url[: -len(encoded)], region=parts[2], checksums=checksums), "ok"


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _version_query(query: str, version_id: str | None) -> str:
    if not version_id:
        return query
    encoded = f"versionId={percent_encode(version_id)}"
    return f"{query}&{encoded}" if query else f"?{encoded}"


def _object_answer(response: AWSResponse, *, checksums: bool) -> dict[str, Any]:
    """The parts of a GetObject answer ObjectStore reads, as boto3 names them."""
    headers = response.headers
    length = int(headers["content-length"]) if "content-length" in headers else None
    checksum = None
    if checksums:
        for algorithm in _CHECKSUM_ORDER:
            value = headers.get(f"x-amz-checksum-{algorithm}")
            if value and "-" not in value and algorithm in _CHECKSUMS:
                checksum = (algorithm, value)
                break
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
    for name, header in (("ETag", "etag"), ("VersionId", "x-amz-version-id")):
        if header in headers:
            answer[name] = headers[header]
    if "content-type" in headers:
        answer["ContentType"] = headers["content-type"]
    if "last-modified" in headers:
        answer["LastModified"] = http_date(headers["last-modified"])
    return answer


def _xml(body: bytes) -> ElementTree.Element:
    """Parse an S3 answer. S3 never sends a DTD: one is refused, so no entity is declared
    and none expanded (xml.etree resolves no external entity either)."""
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
    return element.tag.rsplit("}", 1)[-1]


def _tag_set(root: ElementTree.Element) -> list[dict[str, str]]:
    tags = []
    for tag_set in (child for child in root if _local(child) == "TagSet"):
        for tag in tag_set:
            fields = {_local(field): field.text or "" for field in tag}
            if _local(tag) != "Tag" or "Key" not in fields:
                raise UnreadableAnswer(detail="a tag without its key")
            tags.append({"Key": fields["Key"], "Value": fields.get("Value", "")})
    return tags


def _tagging_body(tag_set: list[dict[str, str]]) -> bytes:
    """The XML botocore serialises for PutObjectTagging (ElementTree escapes the text)."""
    root = ElementTree.Element("Tagging", xmlns=_NS)
    tags = ElementTree.SubElement(root, "TagSet")
    for item in tag_set:
        tag = ElementTree.SubElement(tags, "Tag")
        ElementTree.SubElement(tag, "Key").text = item["Key"]
        ElementTree.SubElement(tag, "Value").text = item["Value"]
    body: bytes = ElementTree.tostring(root, encoding="utf-8")
    return body


def _error(response: AWSResponse, attempt: int) -> dict[str, Any]:
    """An S3 error answer as botocore parses it: ``Error`` from the XML body, or the status
    as its code when there is none, and ``ResponseMetadata``."""
    body = response.content
    error: dict[str, Any] = {}
    if body:
        try:
            root = _xml(body)
            error = {_local(child): child.text or "" for child in root if not len(child)}
        except UnreadableAnswer:
            error = {}
    if not error.get("Code"):
        status = response.status_code
        error = {"Code": str(status), "Message": http.client.responses.get(status, "")}
    headers = dict(response.headers.items())
    metadata = {
        "RequestId": error.pop("RequestId", None) or headers.get("x-amz-request-id", ""),
        "HostId": error.pop("HostId", None) or headers.get("x-amz-id-2", ""),
        "HTTPStatusCode": response.status_code,
        "HTTPHeaders": {name.lower(): value for name, value in headers.items()},
        "RetryAttempts": attempt - 1,
    }
    return {"Error": error, "ResponseMetadata": metadata}
