"""Discarding an evidence copy (release --discard-evidence) on in-process moto, which keeps
Object Lock's rules: a legal hold and a retention both stop a delete."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal

import pytest

from edgematch.downstream.evidence import EvidenceStore
from edgematch.downstream.protection import EvidenceKept, Protection
from edgematch.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

LOCKED = "evidence-locked"


def _held_copy(s3: S3Client, mode: Literal["GOVERNANCE", "COMPLIANCE"]) -> str:
    """A version under a legal hold and a retention of ``mode`` for a day; its id."""
    s3.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
    version = s3.put_object(Bucket=LOCKED, Key="uploads/a.jpg", Body=b"evidence")["VersionId"]
    s3.put_object_legal_hold(
        Bucket=LOCKED, Key="uploads/a.jpg", VersionId=version, LegalHold={"Status": "ON"}
    )
    until = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    s3.put_object_retention(
        Bucket=LOCKED,
        Key="uploads/a.jpg",
        VersionId=version,
        Retention={"Mode": mode, "RetainUntilDate": until},
    )
    return version


def _versions(s3: S3Client) -> list[str]:
    return [v["VersionId"] for v in s3.list_object_versions(Bucket=LOCKED).get("Versions", [])]


def test_a_held_governance_copy_is_discarded(s3: S3Client) -> None:
    """The hold is lifted and the version deleted past its GOVERNANCE retention."""
    version = _held_copy(s3, "GOVERNANCE")
    info = EvidenceStore(s3).head(LOCKED, "uploads/a.jpg", version_id=version)
    assert info.legal_hold and info.lock_mode == "GOVERNANCE"
    # What the worker's role gets without the bypass: refused, as a ConfigurationError.
    with pytest.raises(ConfigurationError):
        Protection(s3).delete_retained(
            LOCKED, "uploads/a.jpg", version_id=version, bypass_governance=False
        )
    Protection(s3).discard(info)
    assert _versions(s3) == []


def test_a_compliance_copy_stays_held(s3: S3Client) -> None:
    """COMPLIANCE retention cannot be bypassed: EvidenceKept, and nothing is changed."""
    version = _held_copy(s3, "COMPLIANCE")
    info = EvidenceStore(s3).head(LOCKED, "uploads/a.jpg", version_id=version)
    with pytest.raises(EvidenceKept, match="COMPLIANCE"):
        Protection(s3).discard(info)
    assert _versions(s3) == [version]
    again = EvidenceStore(s3).head(LOCKED, "uploads/a.jpg", version_id=version)
    assert again.legal_hold
