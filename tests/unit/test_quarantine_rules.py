"""Unit tests for quarantine's pure parts, its settings and the result schema it reads."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from edgematch.config.settings import Secret, Settings
from edgematch.downstream.copies import (
    QUARANTINED,
    copy_metadata,
    copy_problems,
    copy_tags,
    quarantine_key,
)
from edgematch.downstream.custody import ContentVersion
from edgematch.downstream.evidence import VersionInfo
from edgematch.errors import ConfigurationError
from edgematch.pipeline.results import Result
from tests.support.results import match_result

WRITTEN = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def _info(**overrides: Any) -> VersionInfo:
    fields: dict[str, Any] = {
        "bucket": "uploads",
        "key": "photos/cat.jpg",
        "version_id": "v1",
        "size": 1234,
        "etag": "abc123",
        "last_modified": WRITTEN,
    }
    fields.update(overrides)
    return VersionInfo(**fields)


def _held(**overrides: Any) -> VersionInfo:
    fields: dict[str, Any] = {
        "bucket": "quarantine",
        "key": "uploads/photos/cat.jpg",
        "version_id": "q1",
        "legal_hold": True,
        "retain_until": WRITTEN + dt.timedelta(days=365),
    }
    fields.update(overrides)
    return _info(**fields)


# --- verification ------------------------------------------------------------------------


def test_identical_held_copy_is_verified() -> None:
    """Same size and ETag, legal hold and a year of retention: nothing to object to."""
    assert copy_problems(_info(), _held(), expect_hold=True, retention_days=365) == []


def test_copy_of_another_size_is_not_verified() -> None:
    """A short copy is refused whatever its ETag says."""
    problems = copy_problems(_info(), _held(size=1000), expect_hold=True, retention_days=365)
    assert problems and "size" in problems[0]


def test_other_etag_needs_a_matching_digest() -> None:
    """Different ETags (multipart, SSE-KMS) pass only when the SHA-256 of both agree."""
    copy = _held(etag="different")
    assert copy_problems(_info(), copy, expect_hold=True, retention_days=365)
    assert copy_problems(_info(), copy, expect_hold=True, retention_days=365, same_digest=False)
    assert not copy_problems(_info(), copy, expect_hold=True, retention_days=365, same_digest=True)


def test_locked_bucket_requires_hold_and_retention() -> None:
    """With Object Lock, a copy without a legal hold or with short retention is refused."""
    assert copy_problems(_info(), _held(legal_hold=False), expect_hold=True, retention_days=365)
    short = _held(retain_until=WRITTEN + dt.timedelta(days=30))
    assert copy_problems(_info(), short, expect_hold=True, retention_days=365)
    assert not copy_problems(_info(), short, expect_hold=True, retention_days=0)


def test_unlocked_bucket_needs_no_hold() -> None:
    """Without Object Lock the bytes alone decide."""
    plain = _held(legal_hold=False, retain_until=None)
    assert copy_problems(_info(), plain, expect_hold=False, retention_days=365) == []


# --- what the copy carries -----------------------------------------------------------------


def test_copy_metadata_keeps_the_original_and_adds_the_match() -> None:
    """The original's metadata survives; source, version, match ids and tracking id are added."""
    meta = copy_metadata(_info(metadata={"uploader": "u-1"}), match_result())
    assert meta["uploader"] == "u-1"
    assert meta["edgematch-source"] == "s3://uploads/photos/cat.jpg"
    assert meta["edgematch-source-version-id"] == "v1"
    assert meta["edgematch-match-ids"] == "m1,m2"
    assert meta["edgematch-tracking-id"] == "track-1"
    assert meta["edgematch-correlation-id"] == "corr-1"


def test_copy_metadata_bounds_many_match_ids() -> None:
    """Hundreds of match ids are cut at a whole id, keeping within S3's 2 KB of metadata."""
    many = tuple(f"match-{i:04d}" for i in range(300))
    value = copy_metadata(_info(), match_result(match_ids=many))["edgematch-match-ids"]
    assert len(value) <= 512
    assert all(part in many for part in value.split(","))


def test_copy_tags_merge_and_respect_the_limit() -> None:
    """The copy keeps the original's tags plus quarantined, unless that would pass 10."""
    merged = copy_tags({"owner": "platform", "edgematch-status": "match"}, "edgematch-status")
    assert merged == {"owner": "platform", "edgematch-status": QUARANTINED}
    ten = {f"t{i}": "x" for i in range(10)}
    assert copy_tags(ten, "edgematch-status") == ten


def test_content_version_identity_and_quarantine_key() -> None:
    """A version id names the version; else the ETag; the copy lives under bucket/key."""
    content = ContentVersion.of(match_result(content_version_id="cv1", content_etag="ce"))
    assert content.identity.endswith("\x00cv1")
    assert ContentVersion("b", "k", None, "e").identity.endswith("\x00etag:e")
    assert ContentVersion("b", "k", None, None).identity.endswith("\x00unknown")
    assert quarantine_key(content) == "uploads/photos/cat.jpg"


# --- the result schema quarantine reads ----------------------------------------------------


def test_older_result_documents_still_parse() -> None:
    """A v1 result written before the new fields existed reads with their defaults."""
    doc = match_result().to_dict()
    for name in ("content_version_id", "content_etag", "hash_sha256", "from_cache"):
        doc.pop(name)
    parsed = Result.from_dict(doc)
    assert parsed.content_version_id is None and parsed.from_cache is False


def test_newer_result_fields_are_ignored() -> None:
    """A field a later release adds does not stop this release from reading the result."""
    doc = {**match_result(from_cache=True).to_dict(), "added_later": 1}
    parsed = Result.from_dict(doc)
    assert parsed.from_cache is True and parsed.match_ids == ("m1", "m2")


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "tag"),
        ({"EDGEMATCH_QUARANTINE_BUCKET": "quarantine"}, "move"),
        ({"EDGEMATCH_QUARANTINE_BUCKET": "quarantine", "EDGEMATCH_QUARANTINE_MODE": "tag"}, "tag"),
        ({"EDGEMATCH_QUARANTINE_BUCKET": "quarantine", "EDGEMATCH_QUARANTINE_MODE": "off"}, "off"),
        ({"EDGEMATCH_QUARANTINE_MODE": "off"}, "off"),
    ],
)
def test_quarantine_mode_selection(env: dict[str, str], mode: str) -> None:
    """move is the default with a quarantine bucket, tag without; an explicit mode wins."""
    assert Settings.from_env(env).effective_quarantine_mode == mode


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EDGEMATCH_QUARANTINE_MODE": "move"}, "EDGEMATCH_QUARANTINE_BUCKET"),
        ({"EDGEMATCH_QUARANTINE_MODE": "delete"}, "EDGEMATCH_QUARANTINE_MODE"),
        ({"EDGEMATCH_QUARANTINE_BUCKET": "Not_A_Bucket"}, "EDGEMATCH_QUARANTINE_BUCKET"),
        (
            {"EDGEMATCH_QUARANTINE_BUCKET": "uploads", "EDGEMATCH_ALLOWED_BUCKETS": "uploads"},
            "EDGEMATCH_QUARANTINE_BUCKET",
        ),
        ({"EDGEMATCH_EVIDENCE_RETENTION_DAYS": "-1"}, "EDGEMATCH_EVIDENCE_RETENTION_DAYS"),
        ({"EDGEMATCH_EVIDENCE_RETENTION_DAYS": "40000"}, "EDGEMATCH_EVIDENCE_RETENTION_DAYS"),
        ({"EDGEMATCH_REPORTER": "email"}, "EDGEMATCH_REPORTER"),
        ({"EDGEMATCH_REPORTER": "webhook"}, "EDGEMATCH_REPORT_WEBHOOK_URL"),
        (
            {
                "EDGEMATCH_REPORTER": "webhook",
                "EDGEMATCH_REPORT_WEBHOOK_URL": "https://hooks.example/r",
            },
            "EDGEMATCH_REPORT_WEBHOOK_SECRET",
        ),
        (
            {"EDGEMATCH_REPORT_WEBHOOK_URL": "http://hooks.example/r"},
            "EDGEMATCH_REPORT_WEBHOOK_URL",
        ),
        ({"EDGEMATCH_REPORTER": "photodna"}, "EDGEMATCH_REPORT_USER"),
        ({"EDGEMATCH_REPORT_TEST": "maybe"}, "EDGEMATCH_REPORT_TEST"),
        ({"EDGEMATCH_MATCH_CACHE_TTL_S": "0"}, "EDGEMATCH_MATCH_CACHE_TTL_S"),
    ],
)
def test_downstream_settings_are_validated(env: dict[str, str], named: str) -> None:
    """A missing or malformed downstream setting refuses to start, naming the variable."""
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert named in str(info.value)


def test_photodna_reporter_settings_and_secret_files(tmp_path: Path) -> None:
    """The reporting credentials come from variables or *_FILE, and are Secrets."""
    password_file = tmp_path / "pwd"
    password_file.write_text("s3cret-pass\n", encoding="utf-8")
    settings = Settings.from_env(
        {
            "EDGEMATCH_SUBSCRIPTION_KEY": "key-0123456789",
            "EDGEMATCH_REPORTER": "photodna",
            "EDGEMATCH_REPORT_USER": "ncmec-user",
            "EDGEMATCH_REPORT_PASSWORD_FILE": str(password_file),
            "EDGEMATCH_REPORT_ORG_NAME": "Example",
            "EDGEMATCH_REPORT_REPORTER_NAME": "T&S",
            "EDGEMATCH_REPORT_TEST": "true",
        }
    )
    assert settings.report_password == Secret("s3cret-pass")
    assert settings.report_test is True
    assert "s3cret-pass" not in repr(settings) and "ncmec-user" not in repr(settings)
    assert {s.reveal() for s in settings.secrets()} == {
        "key-0123456789",
        "ncmec-user",
        "s3cret-pass",
    }


def test_webhook_over_plain_http_is_only_for_localhost() -> None:
    """http:// is accepted for a receiver on this machine only (tests, a local sidecar)."""
    settings = Settings.from_env(
        {
            "EDGEMATCH_REPORTER": "webhook",
            "EDGEMATCH_REPORT_WEBHOOK_URL": "http://127.0.0.1:8080/hook",
            "EDGEMATCH_REPORT_WEBHOOK_SECRET": "whsec-0123456789",
        }
    )
    assert settings.report_webhook_url == "http://127.0.0.1:8080/hook"
