"""The hot path's S3 requests — GetObject, GetObjectTagging, PutObjectTagging — signed and
sent without botocore's client pipeline: the same on the wire, for 40 % of its CPU a call.

From the boto3 client itself: each bucket's endpoint, resolved once by the client (a
GetObject it prepares and signs, answered locally, never sent); the credentials, frozen
afresh each request; its HTTP session's settings (timeouts, TLS and CA bundle, socket
options, pool size), with which infra/s3conn.py keeps connections per origin and sends
over ``http.client`` directly, or the session itself where it would use a proxy or a
client certificate; botocore's standard retries and key encoding. The signature is SigV4
as ``S3SigV4Auth`` makes it, computed by infra/sigv4.py. Errors are botocore's exceptions
(``ClientError`` as botocore parses it), so :func:`s3errors.translated` stays the boundary.

What this path cannot reproduce exactly is left to the boto3 client: ARN and directory
buckets, retries not in standard mode, a resolved request not SigV4-signed for ``s3`` or
with a header this path does not send, a request answered by another before-send handler
(in-process moto), a redirect to another region, parameters other than bucket, key,
version and If-Match. A GET's body is read once; when the read reaches its end, its
length is checked against Content-Length and the checksum S3 sent is verified.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import structlog
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HeadersDict
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.retries import quota, standard
from botocore.utils import percent_encode

from edgematch.infra import sigv4
from edgematch.infra.s3answers import (
    CHECKSUMS_KNOWN,
    error_in_200,
    error_response,
    object_answer,
    tag_set,
    tagging_body,
)
from edgematch.infra.s3conn import Connections

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["MAX_ROUTES", "ROUTE_PROBE", "S3Wire"]

log = structlog.get_logger(__name__)

#: The key of the GetObject that resolves a bucket's route (never sent) starts with this.
ROUTE_PROBE: Final = "edgematch-route-probe-"
# The headers boto3's GetObject may carry for this path to stand in for it (lower case).
_KNOWN_HEADERS: Final = frozenset({
    "authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token",
    "x-amz-checksum-mode", "user-agent", "amz-sdk-invocation-id", "amz-sdk-request"})  # fmt: skip
_REDIRECT_CODES: Final = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
_USER_AGENT: Final = "edgematch-s3wire"
#: Buckets whose route is kept (bucket names come from events: bounded, oldest dropped).
MAX_ROUTES: Final = 1024


@dataclass(frozen=True)
class _Route:
    """Where one bucket's keys are addressed: ``base`` + the encoded key; signed for
    ``region``; ``checksums`` when boto3 asks S3 for the object's checksum."""

    base: str
    region: str
    checksums: bool
    #: Sent over infra/s3conn.py's connections (no proxy, no client certificate).
    direct: bool = False


#: What the routes answer for a bucket whose route was never resolved (or was dropped).
_UNKNOWN: Final = _Route(base="", region="", checksums=False)


@dataclass(frozen=True)
class _Request:
    operation: str
    bucket: str
    route: _Route
    url: str
    headers: dict[str, str]
    body: bytes


class S3Wire:
    """``get_object``, ``get_object_tagging`` and ``put_object_tagging`` as on the boto3
    client (keyword parameters, the parts of the answer ObjectStore reads), lean when the
    bucket allows it and through ``client`` otherwise. Thread-safe."""

    def __init__(self, client: S3Client, *, lean: bool = True) -> None:
        self._client = client
        self._routes: dict[str, _Route | None] = {}
        self._lock = threading.Lock()
        self._http: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._conns = Connections(self._http) if self._http is not None else None
        # The credentials the client signs with (refreshable ones refresh themselves).
        get_credentials = getattr(client, "_get_credentials", None)
        self._credentials = get_credentials() if get_credentials is not None else None
        # S3SigV4Auth signs every body's SHA-256 (these requests carry no Content-MD5) unless
        # the client's s3 configuration turns payload signing off.
        s3_config: dict[str, Any] = getattr(client.meta.config, "s3", None) or {}
        self._sign_payload = s3_config.get("payload_signing_enabled") is not False
        retries: dict[str, Any] = getattr(client.meta.config, "retries", None) or {}
        attempts = retries.get("total_max_attempts")
        standard_retries = retries.get("mode") == "standard" and attempts
        self._lean = bool(lean and self._http is not None and standard_retries and CHECKSUMS_KNOWN)
        # botocore's standard retries, as register_retry_handler builds them for a client.
        detector = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota(), detector)
        backoff = standard.ExponentialBackoff(service_name="s3", throttling_detector=detector)
        conditions = standard.StandardRetryConditions(max_attempts=attempts or 1)
        self._retry = standard.RetryHandler(
            retry_policy=standard.RetryPolicy(conditions, backoff),
            retry_event_adapter=standard.RetryEventAdapter(),
            retry_quota=self._quota,  # type: ignore[arg-type]
            service_name="s3",
        )

    def get_object(self, **params: Any) -> Any:
        """GetObject: ``Body`` (one ``read(amt)``, then ``close()``), ``ContentLength``,
        ``ETag``, ``VersionId``, ``Metadata``, ``ContentType``, ``LastModified``."""
        headers = {"If-Match": params["IfMatch"]} if params.get("IfMatch") else {}
        sent = self._call("GetObject", params, {"IfMatch"}, "", headers, b"")
        if sent is None:
            return self._client.get_object(**params)
        try:
            return object_answer(sent[0], checksums=sent[1].checksums)
        except BaseException:
            sent[0].raw.close()  # its headers could not be read: the body never will be
            raise

    def get_object_tagging(self, **params: Any) -> Any:
        """GetObjectTagging: ``TagSet``, a list of ``{"Key", "Value"}``."""
        sent = self._call("GetObjectTagging", params, set(), "?tagging", {}, b"")
        if sent is None:
            return self._client.get_object_tagging(**params)
        return {"TagSet": tag_set(sent[0].content)}

    def put_object_tagging(self, **params: Any) -> Any:
        """PutObjectTagging of ``Tagging={"TagSet": [...]}``, with the CRC32 checksum
        botocore sends (S3 requires one)."""
        body = tagging_body(params["Tagging"]["TagSet"])
        headers = {
            "x-amz-checksum-crc32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
            "x-amz-sdk-checksum-algorithm": "CRC32",
        }
        lean = set(params["Tagging"]) == {"TagSet"}
        sent = lean and self._call(
            "PutObjectTagging", params, {"Tagging"}, "?tagging", headers, body
        )
        if not sent:
            return self._client.put_object_tagging(**params)
        return {}

    def _call(  # noqa: PLR0917 - the parts of one request
        self,
        operation: str,
        params: dict[str, Any],
        optional: set[str],
        query: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[AWSResponse, _Route] | None:
        """Send one request the lean way: its 2xx answer and route, or None when the call
        is the boto3 client's to make."""
        route = self._route(params, optional | {"VersionId"})
        if route is None:
            return None
        if params.get("VersionId"):
            version = f"versionId={percent_encode(params['VersionId'])}"
            query = f"{query}&{version}" if query else f"?{version}"
        if operation == "GetObject" and route.checksums:
            headers = {**headers, "x-amz-checksum-mode": "ENABLED"}
        url = route.base + percent_encode(params["Key"], safe="/~") + query
        request = _Request(operation, params["Bucket"], route, url, headers, body)
        response = self._send(request)
        return None if response is None else (response, route)

    # -- the route of a bucket ---------------------------------------------------------------
    def _route(self, params: dict[str, Any], optional: set[str]) -> _Route | None:
        """The bucket's route, or None when this call goes through the boto3 client."""
        if not self._lean or not params.get("Key") or set(params) - optional - {"Bucket", "Key"}:
            return None
        bucket = params["Bucket"]
        # One look (another thread may drop or replace the entry between two).
        kept = self._routes.get(bucket, _UNKNOWN)
        if kept is not _UNKNOWN:
            return kept
        route, reason = self._resolve(bucket)
        if route is not None and self._conns is not None:
            route = replace(route, direct=self._conns.handles(route.base))
        if reason != "unresolved":  # a failed resolution (no credentials...) is tried again
            self._keep(bucket, route)
            if route is None:
                log.info("s3wire.boto3_bucket", bucket=bucket, reason=reason)
        return route

    def _keep(self, bucket: str, route: _Route | None) -> None:
        """Remember ``bucket``'s route, dropping the oldest past MAX_ROUTES buckets."""
        with self._lock:
            self._routes.pop(bucket, None)
            while len(self._routes) >= MAX_ROUTES:
                self._routes.pop(next(iter(self._routes)))
            self._routes[bucket] = route

    def _resolve(self, bucket: str) -> tuple[_Route | None, str]:
        """Let the client prepare and sign one GetObject for ``bucket`` (answered here,
        never sent) and read the base URL and signing region off it."""
        if ":" in bucket or bucket.endswith(("--x-s3", "--xa-s3")):
            return None, "ARN or directory bucket"
        token = uuid.uuid4().hex
        # Every class of character the encoding treats apart.
        key = f"/{ROUTE_PROBE}{token}//ü +%?#~&=;"
        seen: list[AWSPreparedRequest] = []

        def answer(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
            if token not in (request.url or ""):
                return None
            seen.append(request)
            probe: Any = {"x-edgematch-probe": token}
            return AWSResponse(request.url, 200, probe, io.BytesIO())

        # Last of all before-send handlers: when another answers (in-process moto), its
        # answer is the one the client reads, and the bucket stays with the client.
        event = "before-send"
        self._client.meta.events.register_last(event, answer, unique_id=token)  # type: ignore[arg-type]
        try:
            got = self._client.get_object(Bucket=bucket, Key=key)
            got["Body"].close()
        except ClientError:
            return None, "answered by another before-send handler"
        except BotoCoreError:
            return None, "unresolved"
        finally:
            self._client.meta.events.unregister(event, unique_id=token)
        headers = got.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if len(seen) != 1 or headers.get("x-edgematch-probe") != token:
            return None, "answered by another handler"
        return _route_of(seen[0], key)

    # -- one request, with botocore's retries -------------------------------------------------
    def _send(self, request: _Request) -> AWSResponse | None:
        """The 2xx answer, or None when S3 sends the bucket elsewhere (the route is then
        dropped and the call left to boto3). Raises ClientError or botocore's transport
        errors after botocore's standard retries."""
        model = self._client.meta.service_model.operation_model(request.operation)
        context: dict[str, Any] = {}
        attempt = 0
        while True:
            attempt += 1
            response: AWSResponse | None = None
            error: Exception | None = None
            parsed: dict[str, Any] = {}
            try:
                response = self._transmit(request)
                if request.operation != "GetObject" and error_in_200(response):
                    response.status_code = 500  # as botocore's S3 handlers make it
                if response.status_code >= 300:
                    parsed = error_response(response, attempt)
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
                or parsed["Error"].get("Code") in _REDIRECT_CODES
            ):
                self._keep(request.bucket, None)
                log.info("s3wire.boto3_bucket", bucket=request.bucket, reason="redirected")
                return None
            raise ClientError(parsed, request.operation)  # type: ignore[arg-type]
        self._quota.release_retry_quota(context, response)  # type: ignore[arg-type]
        return response

    def _transmit(self, request: _Request) -> AWSResponse:
        """One attempt: over the kept connections, or the client's session (a proxy...)."""
        method = "PUT" if request.body else "GET"
        headers = self._signed(method, request)
        stream = request.operation == "GetObject"
        if self._conns is not None and request.route.direct:
            return self._conns.send(
                method, request.url, headers, request.body or None, stream=stream
            )
        prepared = AWSPreparedRequest(
            method,
            request.url,
            HeadersDict(headers),  # type: ignore[arg-type] # what botocore's preparer passes
            request.body or None,
            stream_output=stream,
        )
        response: AWSResponse = self._http.send(prepared)
        return response

    def _signed(self, method: str, request: _Request) -> dict[str, str]:
        """The request's headers, signed; with Content-Length on a body, as botocore's
        preparer sets it (after signing: not signed)."""
        credentials = self._credentials.get_frozen_credentials() if self._credentials else None
        if credentials is None:
            raise NoCredentialsError
        headers = sigv4.signature_headers(
            method,
            request.url,
            {**request.headers, "User-Agent": _USER_AGENT},
            request.body,
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            token=credentials.token,
            region=request.route.region,
            now=datetime.now(UTC).replace(tzinfo=None),
            sign_payload=self._sign_payload,
        )
        if request.body:
            headers["Content-Length"] = str(len(request.body))
        return headers


def _route_of(request: AWSPreparedRequest, key: str) -> tuple[_Route | None, str]:
    """The route boto3 took for ``key``, when this path can take it exactly."""
    encoded = percent_encode(key, safe="/~")
    url = request.url or ""
    raw: dict[str, Any] = dict(request.headers.items())
    headers = {
        k.lower(): v.decode("latin-1") if isinstance(v, bytes) else v for k, v in raw.items()
    }
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
