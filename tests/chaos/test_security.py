"""Chaos, security: secrets and hash bytes stay where they belong; only JSON runs; TLS verifies.

- A whole scenario (a refused key, faults, bad input, matches reported to PhotoDNA) with
  recognisable secrets, then every log file, every Redis value, every report document
  and every quarantine copy's metadata is searched for the secrets and the hash bytes.
- A Celery message in pickle (or plain text) is refused by the worker: nothing runs.
- The API client refuses a server whose certificate it cannot verify, and trusts a
  private CA only when told to; ``rediss://`` with a password works for the buffer
  (redis-py) and the broker (kombu), and verifies the server's certificate.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import ssl
import subprocess
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kombu import Connection, Producer

from devtools.devstack import RedisServer, wait_for_port
from devtools.localstack import LocalPipeline
from devtools.localstack import wait_until as _wait
from edgematch.config.celery import celery_config
from edgematch.config.settings import Settings
from edgematch.errors import TransportError
from edgematch.photodna.client import HashItem, PhotoDNAClient
from tests.support.hashes import HASH
from tests.support.pipelines import MakePipeline, wait_settled

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

IMAGE = b"\xff\xd8\xff\xe0 JFIF a picture only quarantine and the report may hold"
RecordLedger = Callable[..., dict[str, Any]]


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A private CA and a certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA and server certificate, made with the cryptography package."""
    where = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("edgematch chaos test CA"))
        .issuer_name(_name("edgematch chaos test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    made = Certs(ca=where / "ca.pem", cert=where / "server.pem", key=where / "server.key")
    made.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    made.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    made.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return made


# --- TLS for the API -------------------------------------------------------------------------


class TlsApi:
    """A tiny HTTPS stand-in for MatchEdgeHash: one clean answer per request, keys recorded."""

    def __init__(self, certs: Certs) -> None:
        self.keys_seen: list[str | None] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                api.keys_seen.append(self.headers.get("Ocp-Apim-Subscription-Key"))
                doc = {
                    "TrackingId": "tls-1",
                    "MatchResults": [
                        {"Status": {"Code": 3000, "Description": "OK"}, "IsMatch": False}
                    ],
                }
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certs.cert, certs.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/photodna/v1.0"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _match_once(env: Mapping[str, str]) -> str | None:
    """One MatchEdgeHash through a client built from ``env`` as a worker builds it."""
    with PhotoDNAClient.from_settings(Settings.from_env(env)) as client:
        reply = client.match([HashItem(content_id="tls-item", data=os.urandom(HASH))])
    return reply.tracking_id


def test_api_client_verifies_tls_and_trusts_a_private_ca_only_when_told(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default settings refuse a certificate from an unknown CA before the key is sent."""
    api = TlsApi(certs)
    key = "tls-test-subscription-key"
    env = {"EDGEMATCH_API_URL": api.url, "EDGEMATCH_SUBSCRIPTION_KEY": key}
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    try:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            _match_once(env)
        assert api.keys_seen == []  # the handshake failed: the key never left

        # The operator's CA bundle (httpx reads SSL_CERT_FILE): verified, and it works.
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
        assert _match_once(env) == "tls-1"
        monkeypatch.delenv("SSL_CERT_FILE")
        # Or verification switched off, explicitly, for the API endpoint only.
        assert _match_once({**env, "EDGEMATCH_TLS_VERIFY": "false"}) == "tls-1"
        assert api.keys_seen == [key, key]
    finally:
        api.close()


# --- rediss:// with a password -----------------------------------------------------------------


class TlsRedisServer(RedisServer):
    """A private redis-server that speaks only TLS (a CA-signed cert) and wants a password."""

    def __init__(self, certs: Certs, password: str) -> None:
        super().__init__()
        self.certs = certs
        self.password = password

    def url_with(self, query: str) -> str:
        return f"rediss://:{self.password}@127.0.0.1:{self.port}/0{query}"

    @property
    def url(self) -> str:
        return self.url_with(f"?ssl_ca_certs={self.certs.ca}&ssl_cert_reqs=required")

    def start(self) -> TlsRedisServer:
        args = [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.certs.cert),
            "--tls-key-file",
            str(self.certs.key),
            "--tls-ca-cert-file",
            str(self.certs.ca),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            self.password,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        with (self.dir / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(args, stdout=err, stderr=subprocess.STDOUT)
        wait_for_port(self.port, 5.0)
        return self


def _tls_redis(certs: Certs, password: str) -> TlsRedisServer:
    """A TLS redis-server that was started once (and stopped), or a skip saying why not."""
    server = TlsRedisServer(certs, password)
    try:
        server.start()
    except TimeoutError:
        said = " ".join(
            (server.dir / name).read_text(errors="replace")
            for name in ("stderr.log", "redis.log")
            if (server.dir / name).exists()
        )
        server.close()
        pytest.skip(f"this redis-server does not serve TLS: {said.strip()[-200:]}")
    server.stop()
    return server


def test_rediss_with_a_password_carries_the_pipeline(
    certs: Certs, make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """rediss:// with a password and a private CA: buffer and broker work, and verify the server."""
    password = "chaos-redis-password-5b1e0c"
    server = _tls_redis(certs, password)
    # EDGEMATCH_RATE_LIMIT (docs/configuration.md: your subscription's quota): 20 a second.
    pipe = make_pipeline(rate=20.0, quarantine_bucket="quarantine", redis_server=server)
    assert pipe.env()["EDGEMATCH_REDIS_URL"].startswith("rediss://:")
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hashes = {f"tls/img-{i}.jpg.bin": os.urandom(HASH) for i in range(10)}
    known = {"tls/img-0.jpg.bin", "tls/img-5.jpg.bin"}
    pipe.add_known(hashes[k] for k in known)
    for key, data in hashes.items():
        pipe.upload(key, data, content=IMAGE)
    found = pipe.wait_for_results(hashes, timeout_s=60)
    _wait(lambda: len(pipe.reports()) == len(known), 60, "the reports")
    ledger = record_ledger(
        pipe,
        "rediss:// with a password",
        hashes,
        fault_end=None,
        matches=known,
        notes="TLS Redis, private CA",
    )
    assert set(found) == set(hashes)
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["quarantined"] == ledger["reports"] == len(known)

    # The server's certificate is verified: without the CA, neither client connects.
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        redis.Redis.from_url(server.url_with("")).ping()
    app = Celery(set_as_current=False)
    app.conf.update(
        celery_config(
            Settings.from_env(
                {"EDGEMATCH_REDIS_URL": server.url_with(""), "EDGEMATCH_SUBSCRIPTION_KEY": "k"}
            )
        )
    )
    with app.connection_for_write() as conn, pytest.raises(Exception, match="certificate"):
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
    # And the password is needed, and never logged.
    no_password = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={certs.ca}"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(no_password).ping()
    for log_file in pipe.dir.glob("*.log"):
        assert password not in log_file.read_text(errors="replace"), log_file.name


# --- only JSON runs ---------------------------------------------------------------------------


class _Marker:
    """Unpickling this creates a file: the proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _task_headers(task_id: str) -> dict[str, Any]:
    """Celery's message protocol 2 headers for an ingest task."""
    return {
        "lang": "py",
        "task": "edgematch.ingest",
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "timelimit": [None, None],
        "argsrepr": "()",
        "kwargsrepr": "{...}",
        "origin": "chaos-test",
        "ignore_result": True,
    }


def test_worker_refuses_pickle_and_other_content_types(
    make_pipeline: MakePipeline, tmp_path: Path
) -> None:
    """A pickled task (or a text/plain one) on the ingest queue is refused; nothing runs."""
    pipe = make_pipeline(rate=20.0)
    pipe.s3().put_bucket_notification_configuration(
        Bucket=pipe.bucket, NotificationConfiguration={}
    )
    pipe.start_processes("worker", worker_args=["--concurrency", "1"])
    for key in ("pickled.bin", "texted.bin", "json.bin"):
        pipe.upload(key, os.urandom(HASH))
    marker = tmp_path / "unpickled"

    def event(key: str) -> dict[str, Any]:
        return {"bucket": pipe.bucket, "key": key, "event_name": "ObjectCreated:Put"}

    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    queue = pipe.keys.queue("ingest")
    with Connection(pipe.redis.url) as conn:
        producer = Producer(conn)
        # If the worker ever unpickled this, the marker file would exist and the task run.
        producer.publish(
            (
                (),
                {"event": event("pickled.bin"), "correlation_id": "c-pickle"},
                {**embed, "marker": _Marker(marker)},
            ),
            exchange="",
            routing_key=queue,
            serializer="pickle",
            headers=_task_headers(uuid.uuid4().hex),
        )
        producer.publish(
            json.dumps([[], {"event": event("texted.bin"), "correlation_id": "c-text"}, embed]),
            exchange="",
            routing_key=queue,
            content_type="text/plain",
            content_encoding="utf-8",
            headers=_task_headers(uuid.uuid4().hex),
        )
        producer.publish(
            [[], {"event": event("json.bin"), "correlation_id": "c-json"}, embed],
            exchange="",
            routing_key=queue,
            serializer="json",
            headers=_task_headers(uuid.uuid4().hex),
        )
    # The same path with JSON works: the refusals are for the content type alone.
    assert pipe.wait_for_results(["json.bin"], timeout_s=60)
    client = redis.Redis.from_url(pipe.redis.url)
    wait_settled(pipe)

    def refusals_logged() -> bool:
        log = "\n".join(pipe.log_lines("worker"))
        return "untrusted content of type pickle" in log and "text/plain" in log

    _wait(refusals_logged, 10, "both refusals in the worker's log")
    assert not marker.exists()  # never unpickled
    assert pipe.result("pickled.bin") is None and pipe.result("texted.bin") is None
    assert pipe.sandbox_stats()["items_total"] == 1
    assert client.hlen(pipe.keys.dead_letters) == 0
    assert client.llen(queue) == 0 and client.hlen("edgematch:kombu:unacked") == 0
    client.close()


# --- secrets and hash bytes stay where their step needs them ------------------------------------

SUBSCRIPTION_KEY = "SUBKEY-chaos-3f9d2c71e4-must-never-be-written"
REPORT_USER = "report-user-chaos-8e2b5a"
REPORT_PASSWORD = "report-password-chaos-71c4a9d0"
WEBHOOK_SECRET = "whsec-chaos-0d5e6f9a1b"


def _forms(secret: str) -> list[bytes]:
    """The ways a secret could be written: as is, in base64, in hex."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode()]


def _byte_forms(data: bytes) -> list[bytes]:
    """Recognisable pieces of some bytes: a raw prefix, hex and base64 (standard, URL-safe)."""
    head = data[:24]
    return [
        head,
        head.hex().encode(),
        head.hex().upper().encode(),
        base64.b64encode(data)[:32],
        base64.urlsafe_b64encode(data)[:32],
    ]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _redis_values(url: str) -> dict[str, bytes]:
    """Every key of the pipeline's Redis with its value, whatever its type, as bytes."""
    client = redis.Redis.from_url(url)
    found: dict[str, bytes] = {}
    try:
        for raw_key in client.scan_iter(count=1000):
            kind = _bytes(client.type(raw_key)).decode()
            parts: list[Any] = [raw_key]
            if kind == "string":
                parts.append(client.get(raw_key) or b"")
            elif kind == "hash":
                for field, value in client.hgetall(raw_key).items():
                    parts += [field, value]
            elif kind == "list":
                parts += client.lrange(raw_key, 0, -1)
            elif kind == "set":
                parts += list(client.smembers(raw_key))
            elif kind == "zset":
                parts += client.zrange(raw_key, 0, -1)
            found[_bytes(raw_key).decode(errors="replace")] = b"\n".join(map(_bytes, parts))
    finally:
        client.close()
    return found


def _stored_documents(pipe: LocalPipeline) -> dict[str, bytes]:
    """Report documents, and the quarantine copies' metadata and tags (not their bytes)."""
    s3 = pipe.s3()
    found: dict[str, bytes] = {}
    for obj in s3.list_objects_v2(Bucket=pipe.reports_bucket).get("Contents", []):
        body = s3.get_object(Bucket=pipe.reports_bucket, Key=obj["Key"])["Body"].read()
        found[f"s3://{pipe.reports_bucket}/{obj['Key']}"] = body
    assert pipe.quarantine_bucket is not None
    listing = s3.list_object_versions(Bucket=pipe.quarantine_bucket)
    for version in listing.get("Versions", []):
        where = {"Bucket": pipe.quarantine_bucket, "Key": version["Key"]}
        head = s3.head_object(**where, VersionId=version["VersionId"])
        tags = s3.get_object_tagging(**where, VersionId=version["VersionId"])["TagSet"]
        found[f"s3://{pipe.quarantine_bucket}/{version['Key']} (metadata, tags)"] = json.dumps(
            {"metadata": head["Metadata"], "tags": tags}
        ).encode()
    return found


def _files(*dirs: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for d in dirs for path in d.rglob("*") if path.is_file()}


def _where(needles: Mapping[str, list[bytes]], haystacks: Mapping[str, bytes]) -> set[str]:
    """``needle name @ haystack name`` for every needle found."""
    return {
        f"{name} @ {where}"
        for name, forms in needles.items()
        for where, text in haystacks.items()
        if any(form in text for form in forms)
    }


def test_secrets_and_hash_bytes_are_never_written_where_they_do_not_belong(
    make_pipeline: MakePipeline, record_ledger: RecordLedger
) -> None:
    """A whole scenario with recognisable secrets: no log, record or report holds them."""
    # EDGEMATCH_RATE_LIMIT (docs/configuration.md: your subscription's quota): 20 a second;
    # the reporter and its credentials as "Quarantine and reports" tells operators to set them.
    pipe = make_pipeline(
        rate=20.0,
        quarantine_bucket="quarantine",
        settings={
            "EDGEMATCH_SUBSCRIPTION_KEY": SUBSCRIPTION_KEY,
            "EDGEMATCH_REPORTER": "photodna",
            # Reports sent without review ("Review before a report": EDGEMATCH_REVIEW=off).
            "EDGEMATCH_REVIEW": "off",
            "EDGEMATCH_REPORT_USER": REPORT_USER,
            "EDGEMATCH_REPORT_PASSWORD": REPORT_PASSWORD,
            "EDGEMATCH_REPORT_ORG_NAME": "Chaos Test Org",
            "EDGEMATCH_REPORT_REPORTER_NAME": "Chaos Reporter",
            "EDGEMATCH_REPORT_TEST": "true",
            "EDGEMATCH_REPORT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        },
    )
    secrets = {
        "subscription key": _forms(SUBSCRIPTION_KEY),
        "report user": _forms(REPORT_USER),
        "report password": _forms(REPORT_PASSWORD),
        "webhook secret": _forms(WEBHOOK_SECRET),
    }
    # First the API refuses our key: the breaker opens, items wait in the buffer.
    pipe.sandbox_faults(key="the-key-the-api-expects-0000")
    pipe.start_processes("intake", "worker", "beat", worker_args=["--concurrency", "2"])
    hashes = {f"secret/img-{i:02d}.jpg.bin": os.urandom(HASH) for i in range(12)}
    hashes["secret/wrong-size.jpg.bin"] = os.urandom(100)  # answered 3002: a dead letter
    known = {"secret/img-00.jpg.bin", "secret/img-04.jpg.bin", "secret/img-08.jpg.bin"}
    pipe.add_known(hashes[k] for k in known)
    images = {key: IMAGE + key.encode() for key in hashes}
    for key, data in hashes.items():
        pipe.upload(key, data, content=images[key])
    pipe.sqs().send_message(QueueUrl=pipe.queue_url, MessageBody="not json at all")
    client = redis.Redis.from_url(pipe.redis.url)
    _wait(lambda: client.hlen(pipe.keys.items) == len(hashes), 60, "every item to wait")
    _wait(lambda: client.exists(pipe.keys.breaker) == 1, 30, "the breaker to open")
    client.close()

    # While they wait, hash bytes are in the buffer's items and nowhere else.
    hash_needles = {key: _byte_forms(data) for key, data in hashes.items()}
    waiting = _where(hash_needles, _redis_values(pipe.redis.url))
    assert {w.split(" @ ")[1] for w in waiting} == {pipe.keys.items}
    assert len(waiting) == len(hashes)

    # Then the key is right, but the API fails now and then: retries, 3004s, errors logged.
    pipe.sandbox_faults(key=SUBSCRIPTION_KEY, fail_rate=0.3, item_3004_rate=0.2)
    # The breaker's next probe (EDGEMATCH_BREAKER_PROBE_S, 30 s) finds the key right.
    found = pipe.wait_for_results(hashes, timeout_s=180)

    def submitted() -> bool:
        docs = pipe.reports()
        return len(docs) == len(known) and all(d["status"] == "submitted" for d in docs)

    _wait(submitted, 60, "every report submitted to PhotoDNA")
    pipe.sandbox_faults(fail_rate=0.0, item_3004_rate=0.0)
    wait_settled(pipe)
    ledger = record_ledger(
        pipe,
        "security: secrets and hash bytes",
        hashes,
        fault_end=None,
        expected={
            **{key: "match" if key in known else "clean" for key in hashes},
            "secret/wrong-size.jpg.bin": "unscannable",
        },
        notes="refused key, then 30 % 5xx and 20 % 3004; 3 reports submitted to the sandbox",
    )
    assert set(found) == set(hashes)
    assert ledger["lost"] == ledger["wrong"] == ledger["duplicated"] == 0, ledger
    assert ledger["dead_letters"] == {"item_rejected": 1, "malformed_event": 1}

    files = _files(pipe.dir, pipe.redis.dir)
    assert any(name.endswith("worker.log") for name in files)
    records = _redis_values(pipe.redis.url)
    documents = _stored_documents(pipe)
    everything = {**files, **records, **documents}
    # The search finds what is there: each report's correlation id is in the worker log.
    ids = {d["report_id"]: [d["correlation_id"].encode()] for d in pipe.reports()}
    assert {w.split(" @ ")[1] for w in _where(ids, files)} >= {str(pipe.dir / "worker.log")}
    # No secret anywhere: logs, Redis (results, dead letters, queues), reports, copies.
    assert _where(secrets, everything) == set()
    # No hash bytes anywhere once the buffer is empty; no image bytes outside quarantine.
    assert _where(hash_needles, everything) == set()
    image_needles = {key: _byte_forms(image) for key, image in images.items()}
    assert _where(image_needles, everything) == set()

    # What PhotoDNA's Report received: the preserved image (its step needs it), no secrets
    # in the body (they travel in headers).
    received = httpx.get(f"{pipe.sandbox.root}/_sandbox/reports", timeout=5).json()["reports"]
    assert len(received) == len(known)
    bodies = {f"report {n}": json.dumps(doc).encode() for n, doc in enumerate(received)}
    assert _where(secrets, bodies) == set()
    sent_images = {
        base64.b64decode(doc["ViolationContentCollection"][0]["Value"]) for doc in received
    }
    assert sent_images == {images[k] for k in known}
