"""deploy/iam-policy.json allows every S3 and SQS call the code makes, and nothing else."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
#: boto3 operation -> the IAM actions it may need (versioned variants, lock headers on HEAD).
ACTIONS = {
    "s3.get_object": {"s3:GetObject", "s3:GetObjectVersion"},
    "s3.head_object": {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectLegalHold",
        "s3:GetObjectRetention",
    },
    "s3.get_object_tagging": {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
    "s3.put_object_tagging": {"s3:PutObjectTagging", "s3:PutObjectVersionTagging"},
    "s3.put_object": {"s3:PutObject"},
    "s3.copy_object": {"s3:PutObject", "s3:PutObjectTagging", "s3:GetObjectVersion"},
    "s3.delete_object": {"s3:DeleteObject", "s3:DeleteObjectVersion"},
    "s3.put_object_legal_hold": {"s3:PutObjectLegalHold"},
    "s3.put_object_retention": {"s3:PutObjectRetention"},
    "s3.get_object_lock_configuration": {"s3:GetBucketObjectLockConfiguration"},
    "s3.list_objects_v2": {"s3:ListBucket"},
    "s3.list_object_versions": {"s3:ListBucketVersions"},
    # The reviewer's browser GETs the evidence with the signer's permissions.
    "s3.generate_presigned_url": {"s3:GetObject", "s3:GetObjectVersion"},
    "sqs.receive_message": {"sqs:ReceiveMessage"},
    "sqs.delete_message_batch": {"sqs:DeleteMessage"},
}
#: The one thing the code does not call by name: SSE-KMS of reports (a key, not an API).
KMS_FOR_REPORTS = {"kms:GenerateDataKey", "kms:Decrypt"}
#: A call on a client (``s3.``, ``self._s3.``) or on ObjectStore's lean S3 path (``_wire.``,
#: infra/s3wire.py: the same S3 operations, signed with the same credentials).
_CALL = re.compile(r"\b_?(s3|sqs|wire)\.([a-z_0-9]+)\(")


def _calls() -> set[str]:
    found = set()
    # The application only: the local stack in devtools/ creates buckets and queues it owns.
    for path in (ROOT / "edgematch").rglob("*.py"):
        for service, operation in _CALL.findall(path.read_text(encoding="utf-8")):
            found.add(f"{'s3' if service == 'wire' else service}.{operation}")
    return found


def _policy(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DEPLOY / name).read_text(encoding="utf-8"))
    return doc


def _allowed(policy: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow", statement["Sid"]
        value = statement["Action"]
        actions.update([value] if isinstance(value, str) else value)
    return actions


def test_the_scan_finds_the_code_s_calls() -> None:
    """The source scan sees the pipeline's calls (it is not silently finding nothing)."""
    calls = _calls()
    assert {"s3.get_object", "s3.copy_object", "sqs.receive_message"} <= calls


def test_every_call_the_code_makes_is_known_and_allowed() -> None:
    """A new boto3 call must be added to ACTIONS, and the policy must allow it."""
    calls = _calls()
    unknown = calls - set(ACTIONS)
    assert not unknown, f"add these to ACTIONS and, if needed, to iam-policy.json: {unknown}"
    allowed = _allowed(_policy("iam-policy.json"))
    for call in calls:
        assert ACTIONS[call] & allowed, f"{call} needs one of {sorted(ACTIONS[call])}"


def test_the_policy_grants_nothing_the_code_does_not_use() -> None:
    """Least privilege: every allowed action serves a call the code makes (or reports' KMS)."""
    needed = set().union(*(ACTIONS[c] for c in _calls())) | KMS_FOR_REPORTS
    extra = _allowed(_policy("iam-policy.json")) - needed
    assert not extra, f"granted but never used: {extra}"
    for statement in _policy("iam-policy.json")["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert "*" not in resource.split(":::")[-1].split("/")[0], statement["Sid"]


def test_the_release_policy_grants_what_a_release_calls_and_no_wildcard() -> None:
    """deploy/iam-policy-release.json (on-call's role for `edgematch release`): the copy
    back, its tags, the reports, and in its own statement what --discard-evidence needs."""
    policy = _policy("iam-policy-release.json")
    allowed = _allowed(policy)
    for call in ("s3.copy_object", "s3.head_object", "s3.put_object_tagging", "s3.put_object"):
        assert ACTIONS[call] & allowed, call
    assert ACTIONS["s3.copy_object"] <= allowed
    (discard,) = [s for s in policy["Statement"] if "s3:BypassGovernanceRetention" in s["Action"]]
    assert {"s3:PutObjectLegalHold", "s3:DeleteObjectVersion"} <= set(discard["Action"])
    assert "QUARANTINE-BUCKET" in discard["Resource"]
    for statement in policy["Statement"]:
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            assert "*" not in resource.split(":::")[-1].split("/")[0], statement["Sid"]


def test_the_trust_policy_admits_only_the_manifests_service_account() -> None:
    """IRSA: the role is assumed by system:serviceaccount:<namespace>:<name> of the manifests."""
    account = yaml.safe_load((DEPLOY / "k8s" / "serviceaccount.yaml").read_text(encoding="utf-8"))
    subject = (
        f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    )
    (statement,) = _policy("iam-trust-policy-irsa.json")["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"]["OIDC-PROVIDER:sub"] == subject
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )


def test_the_tag_mode_bucket_policy_denies_tagged_content() -> None:
    """Tag mode's bucket policy denies reading quarantined and matched content."""
    text = (DEPLOY / "bucket-policy-tag-mode.json").read_text(encoding="utf-8")
    policy = json.loads(text)
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    assert any("s3:GetObject" in str(s["Action"]) for s in denies)
    assert "quarantined" in text and "match" in text and "edgematch-status" in text
