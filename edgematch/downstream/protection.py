"""The S3 calls that end an evidence copy's protection, for ``edgematch release
--discard-evidence``: its legal hold lifted (or put back), its version deleted past a
GOVERNANCE retention.

Neither is in the worker's IAM policy, on purpose: discarding evidence is a person's act,
with a role that allows ``s3:PutObjectLegalHold`` and ``s3:BypassGovernanceRetention`` on
the quarantine bucket. Errors are translated at the same boundary as storage.py and
evidence.py: ``ConfigurationError`` for access denied, ``ObjectMissing``, transient errors
worth another try.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from edgematch.downstream.evidence import VersionInfo
from edgematch.errors import ConfigurationError, PermanentError
from edgematch.infra.s3errors import translated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["EvidenceKept", "Protection"]


class EvidenceKept(PermanentError):
    """The evidence copy could not be discarded (not allowed, or COMPLIANCE): it stays."""

    reason = "evidence_kept"


class Protection:
    """Lifting and restoring a legal hold; deleting a retained version."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def discard(self, info: VersionInfo) -> None:
        """Lift the legal hold of the evidence version ``info`` and delete it, past a
        GOVERNANCE retention. EvidenceKept, the version left as it was (its hold put
        back), when that is refused or the retention is COMPLIANCE."""
        bucket, key, version_id = info.bucket, info.key, info.version_id
        retained = info.retain_until is not None and info.retain_until > dt.datetime.now(dt.UTC)
        if retained and info.lock_mode == "COMPLIANCE":
            raise EvidenceKept(
                f"the evidence copy {info.uri} is under COMPLIANCE retention until "
                f"{info.retain_until}: nobody can delete it before then; it stays"
            )
        lifted = False
        try:
            if info.legal_hold:
                self.set_hold(bucket, key, version_id=version_id, on=False)
                lifted = True
            self.delete_retained(bucket, key, version_id=version_id, bypass_governance=retained)
        except ConfigurationError as exc:
            if lifted:  # refused: the evidence stays as it was, held
                self.set_hold(bucket, key, version_id=version_id, on=True)
            needs = "s3:PutObjectLegalHold" + (
                " and s3:BypassGovernanceRetention" if retained else ""
            )
            raise EvidenceKept(
                f"the evidence copy {info.uri} stays under its legal hold: discarding it needs "
                f"{needs}, which this role was refused: {exc}"
            ) from exc

    def set_hold(self, bucket: str, key: str, *, version_id: str | None, on: bool) -> None:
        """Put a legal hold on one version, or lift it (needs s3:PutObjectLegalHold)."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        with translated("s3:PutObjectLegalHold", bucket, key, version_id):
            self._s3.put_object_legal_hold(
                Bucket=bucket, Key=key, LegalHold={"Status": "ON" if on else "OFF"}, **extra
            )

    def delete_retained(
        self, bucket: str, key: str, *, version_id: str | None, bypass_governance: bool
    ) -> None:
        """Delete one version; ``bypass_governance`` past a GOVERNANCE retention (needs
        s3:BypassGovernanceRetention). COMPLIANCE retention cannot be bypassed by anyone."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        if bypass_governance:
            extra["BypassGovernanceRetention"] = True
        action = "s3:DeleteObjectVersion"
        if bypass_governance:
            action += " with s3:BypassGovernanceRetention"
        with translated(action, bucket, key, version_id):
            self._s3.delete_object(Bucket=bucket, Key=key, **extra)
