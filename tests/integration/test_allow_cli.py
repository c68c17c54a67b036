"""`edgematch allow` in-process (click's runner) on a private redis-server and in-process
moto: every change recorded in the object store, and the list rebuilt from the records."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import redis
from click.testing import CliRunner

from devtools.devstack import RedisServer
from edgematch import runtime as runtime_module
from edgematch.ops import cli

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

NS = "allowcli"
REPORTS = "allow-reports"
DIGEST = "ef" * 32


@pytest.fixture
def allow(s3: S3Client, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose commands build their runtime from this environment."""
    s3.create_bucket(Bucket=REPORTS)
    for name, value in {
        "EDGEMATCH_REDIS_URL": redis_server.url,
        "EDGEMATCH_NAMESPACE": NS,
        "EDGEMATCH_REPORTS_BUCKET": REPORTS,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(runtime_module, "_current", None)
    return CliRunner()


def _ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli.edgematch, ["allow", *args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_changes_are_recorded_and_the_list_rebuilt_from_them(
    allow: CliRunner, s3: S3Client, redis_client: redis.Redis
) -> None:
    """add, add, remove: three records under allowlist/, the list says what is left; with
    the list gone from Redis, restore brings it back from the records."""
    who = ["--reviewer", "ana", "--reason", "rpt-1 rejected"]
    _ok(allow, "add", "--match-id", "m1", *who)
    _ok(allow, "add", "--hash-sha256", DIGEST.upper(), *who)
    _ok(allow, "remove", "--match-id", "m1", "--reviewer", "bo", "--reason", "fixed upstream")
    gone = allow.invoke(cli.edgematch, ["allow", "remove", "--match-id", "m1", *who])
    assert gone.exit_code == 1 and "not listed" in gone.stderr

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=REPORTS)["Contents"]]
    assert len(keys) == 3 and all(k.startswith("allowlist/") for k in keys)
    records = [json.loads(s3.get_object(Bucket=REPORTS, Key=k)["Body"].read()) for k in keys]
    assert [(r["action"], r["value"], r["reviewer"]) for r in records] == [
        ("add", "m1", "ana"),
        ("add", DIGEST, "ana"),
        ("remove", "m1", "bo"),
    ]
    listed = [json.loads(line) for line in _ok(allow, "list", "--json").splitlines()]
    assert [(e["kind"], e["value"]) for e in listed] == [("sha256", DIGEST)]

    redis_client.delete(f"{NS}:allowlist")  # Redis lost it
    assert _ok(allow, "list") == ""
    assert "3 records: 1 entries" in _ok(allow, "restore")
    assert [json.loads(line)["value"] for line in _ok(allow, "list", "--json").splitlines()] == [
        DIGEST
    ]
