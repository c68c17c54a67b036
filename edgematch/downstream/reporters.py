"""Reporters: where a report document goes once it is written (``EDGEMATCH_REPORTER``).

* ``record`` — nowhere: the document in the reports bucket is the output, ``pending``
  until a human review tool files it.
* ``webhook`` — ``POST`` of the document's exact JSON bytes to
  ``EDGEMATCH_REPORT_WEBHOOK_URL`` with ``X-Edgematch-Signature: sha256=<hex HMAC-SHA256
  of the body under EDGEMATCH_REPORT_WEBHOOK_SECRET>`` and ``Idempotency-Key: <report
  id>``, the same on every retry, so the receiver can drop repeats. TLS is always
  verified; redirects are never followed.
* ``photodna`` — PhotoDNA's ``Report`` operation: ``POST {EDGEMATCH_API_URL}/Report``
  with the subscription key and the ``x-usr``/``x-pwd`` reporting credentials, the
  organisation and reporter names, the preserved image (base64) and ``IsTest``.

What :meth:`Reporter.submit` raises (httpx errors are translated here, at one boundary):
``TransportError`` (timeouts, dropped connections, 408), ``ServerError`` (5xx, an
unreadable answer, status 3004), ``RateLimited`` (429) — all transient, retried by the
task with backoff; ``CredentialError`` (401/403) and ``RequestRejected`` (other 4xx, a
refusing status code) and ``BadInput`` (no preserved image) — permanent: the report is
marked ``failed`` and dead-lettered. Image bytes and credentials never reach a log line
or a message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import httpx

from edgematch import __version__
from edgematch.config.settings import Secret
from edgematch.errors import (
    BadInput,
    CredentialError,
    RateLimited,
    RequestRejected,
    ServerError,
    TransportError,
)
from edgematch.infra.logs import get_logger
from edgematch.infra.s3text import decode_metadata_value
from edgematch.photodna.client import KEY_HEADER, STATUS_TABLE, parse_retry_after

log = get_logger(__name__)

RECORD, WEBHOOK, PHOTODNA = "record", "webhook", "photodna"
SIGNATURE_HEADER: Final = "X-Edgematch-Signature"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: Largest image sent with a PhotoDNA report, in bytes (it travels base64 in JSON).
MAX_REPORT_IMAGE_BYTES: Final = 4 << 20
# Answers are short JSON; anything longer is not read.
_MAX_ANSWER_BYTES: Final = 64 << 10

#: Reads the preserved image of a report and the user metadata stored with it.
ReadEvidence = Callable[[Mapping[str, Any]], tuple[bytes, Mapping[str, str]]]


@dataclass(frozen=True)
class Receipt:
    """What a reporter got back: the HTTP status and the receiver's reference, if any."""

    reporter: str
    http_status: int | None = None
    reference: str | None = None
    is_test: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "reporter": self.reporter,
            "http_status": self.http_status,
            "reference": self.reference,
            "is_test": self.is_test,
        }


class Reporter(Protocol):
    name: str

    def submit(self, doc: Mapping[str, Any]) -> Receipt | None:
        """Hand ``doc`` on; None when nothing leaves (the ``record`` reporter)."""
        ...

    def close(self) -> None: ...


# --- pure parts ----------------------------------------------------------------------------


def body_bytes(doc: Mapping[str, Any]) -> bytes:
    """The exact bytes a webhook receives for ``doc`` (and that the signature covers)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time; for receivers)."""
    return bool(header) and hmac.compare_digest(sign(body, secret), header or "")


def photodna_body(
    doc: Mapping[str, Any],
    image: bytes,
    metadata: Mapping[str, str],
    *,
    org_name: str,
    reporter_name: str,
    is_test: bool,
) -> dict[str, Any]:
    """The JSON of PhotoDNA's ``Report`` operation for one report document. Pure.

    The reportee is named by the content object's user metadata ``reportee-name`` and
    ``reportee-ip`` when the platform sets them (the copy keeps them; RFC 2047 values, as
    S3 returns unicode, decoded), else unknown.
    """
    content = doc.get("content") or {}
    meta = {k.lower(): decode_metadata_value(v) for k, v in metadata.items()}
    match_info = [{"Key": "MatchId", "Value": match_id} for match_id in doc.get("match_ids", [])]
    match_info += [{"Key": "Source", "Value": source} for source in doc.get("sources", [])]
    match_info += [{"Key": "Violation", "Value": v} for v in doc.get("violations", [])]
    return {
        "OrgName": org_name,
        "ReporterName": reporter_name,
        "ReporteeName": meta.get("reportee-name", "unknown"),
        "ReporteeIPAddress": meta.get("reportee-ip", "0.0.0.0"),  # noqa: S104 - "unknown"
        "IncidentTime": doc.get("event_time") or doc.get("scanned_at") or doc.get("created_at"),
        "ViolationContentCollection": [
            {
                "Name": posixpath.basename(str(content.get("key") or "content")),
                "Value": base64.b64encode(image).decode("ascii"),
                "Location": None,
                "AdditionalMetadata": match_info,
            }
        ],
        "AdditionalMetadata": [
            {"Key": "ReportId", "Value": doc.get("report_id")},
            {"Key": "TrackingId", "Value": doc.get("tracking_id")},
            {"Key": "CorrelationId", "Value": doc.get("correlation_id")},
        ],
        "IsTest": is_test,
    }


# --- reporters -----------------------------------------------------------------------------


class RecordReporter:
    """The document is the output: nothing is sent, the report stays ``pending``."""

    name = RECORD

    def submit(self, doc: Mapping[str, Any]) -> Receipt | None:
        return None

    def close(self) -> None:
        pass


class _HttpReporter:
    name: str

    def __init__(
        self,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        verify: bool,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            verify=verify,
            # A redirect would resend credentials or a signed report elsewhere.
            follow_redirects=False,
            headers={"User-Agent": f"edgematch/{__version__}"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def _post(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """The one boundary where httpx errors become ours; HTTP statuses are classified."""
        try:
            with self._http.stream("POST", url, content=content, headers=dict(headers)) as reply:
                body = b""
                for chunk in reply.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_ANSWER_BYTES:
                        break
                answer = httpx.Response(reply.status_code, headers=reply.headers, content=body)
        except httpx.TimeoutException as exc:
            raise TransportError(f"{self.name}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"{self.name}: {type(exc).__name__}") from exc
        status = answer.status_code
        if 200 <= status < 300:
            return answer
        where = f"{self.name} answered HTTP {status}"
        if status in (401, 403):
            raise CredentialError(f"{where}: credentials refused", status_code=status)
        if status == 429:
            retry_after = parse_retry_after(answer.headers, answer.content)
            raise RateLimited(where, retry_after_s=retry_after)
        if status == 408:
            raise TransportError(where)
        if status >= 500:
            raise ServerError(where, status_code=status)
        raise RequestRejected(where, status_code=status)


class WebhookReporter(_HttpReporter):
    """POST the signed document to a webhook."""

    name = WEBHOOK

    def __init__(
        self,
        url: str,
        secret: Secret,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Verification is not optional here, whatever EDGEMATCH_TLS_VERIFY says.
        super().__init__(
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            verify=True,
            transport=transport,
        )
        self._url = url
        self._secret = secret

    def submit(self, doc: Mapping[str, Any]) -> Receipt:
        body = body_bytes(doc)
        answer = self._post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(body, self._secret.reveal()),
                IDEMPOTENCY_HEADER: str(doc["report_id"]),
            },
        )
        log.info("webhook_delivered", report_id=doc["report_id"], http_status=answer.status_code)
        return Receipt(reporter=self.name, http_status=answer.status_code)


class PhotoDNAReporter(_HttpReporter):
    """PhotoDNA's ``Report`` operation, with the preserved image."""

    name = PHOTODNA

    def __init__(
        self,
        base_url: str,
        *,
        key: Secret,
        user: Secret,
        password: Secret,
        org_name: str,
        reporter_name: str,
        is_test: bool,
        read_evidence: ReadEvidence,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        verify: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            verify=verify,
            transport=transport,
        )
        self._url = f"{base_url.rstrip('/')}/Report"
        self._key = key
        self._user = user
        self._password = password
        self._org_name = org_name
        self._reporter_name = reporter_name
        self._is_test = is_test
        self._read_evidence = read_evidence

    def submit(self, doc: Mapping[str, Any]) -> Receipt:
        image, metadata = self._read_evidence(doc)
        body = photodna_body(
            doc,
            image,
            metadata,
            org_name=self._org_name,
            reporter_name=self._reporter_name,
            is_test=self._is_test,
        )
        answer = self._post(
            self._url,
            content=json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                KEY_HEADER: self._key.reveal(),
                "x-usr": self._user.reveal(),
                "x-pwd": self._password.reveal(),
            },
        )
        try:
            reply: Any = json.loads(answer.content)
            code = int(reply["Status"]["Code"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerError("Report: unreadable answer", status_code=answer.status_code) from exc
        kind, description = STATUS_TABLE.get(code, ("permanent", "unknown status"))
        if kind == "transient":
            raise ServerError(f"Report: status {code} {description}")
        if kind != "ok":
            raise RequestRejected(f"Report: status {code} {description}")
        reference = reply.get("ReportId")
        log.info(
            "photodna_report_submitted",
            report_id=doc["report_id"],
            reference=reference,
            is_test=self._is_test,
            image_bytes=len(image),
        )
        return Receipt(
            reporter=self.name,
            http_status=answer.status_code,
            reference=str(reference) if reference is not None else None,
            is_test=self._is_test,
        )


def no_image(doc: Mapping[str, Any]) -> BadInput:
    """The error for a report whose evidence holds no image to send."""
    state = (doc.get("evidence") or {}).get("state")
    return BadInput(f"report {doc.get('report_id')}: no preserved image to send (evidence {state})")
