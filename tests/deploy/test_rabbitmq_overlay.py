"""deploy/k8s/rabbitmq: the base with RabbitMQ as the broker, as kustomize would patch it.

Every process that reads EDGEMATCH_BROKER_URL in the base reads it from the
edgematch-rabbitmq Secret, and every KEDA trigger on a Redis list becomes a rabbitmq trigger
on the same queue with the same threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "k8s" / "rabbitmq"
LIST_TRIGGERS = {"redis", "redis-sentinel"}


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def _patches() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _docs(OVERLAY / "patches.yaml")}


def test_the_overlay_names_its_files() -> None:
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["resources"] == ["../", "keda-auth.yaml", "networkpolicy.yaml"]
    (policy,) = _docs(OVERLAY / "networkpolicy.yaml")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert policy["spec"]["policyTypes"] == ["Egress"] and ports == {5671, 5672}
    assert kustomization["patches"] == [{"path": "patches.yaml"}]


def test_every_process_reads_the_broker_url_from_the_rabbitmq_secret(
    deployments: dict[str, Any],
) -> None:
    patches = _patches()
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if not any(e["name"] == "EDGEMATCH_BROKER_URL" for e in container.get("env", [])):
            continue
        patch = patches[("Deployment", name)]
        (patched,) = patch["spec"]["template"]["spec"]["containers"]
        assert patched["name"] == container["name"], name
        assert patched["env"] == [
            {
                "name": "EDGEMATCH_BROKER_URL",
                "valueFrom": {"secretKeyRef": {"name": "edgematch-rabbitmq", "key": "broker-url"}},
            }
        ], name


def test_every_list_trigger_becomes_a_rabbitmq_trigger_on_the_same_queue(
    scaled_objects: dict[str, Any],
) -> None:
    patches = _patches()
    (auth,) = _docs(OVERLAY / "keda-auth.yaml")
    assert auth["kind"] == "TriggerAuthentication"
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "edgematch-rabbitmq", "key": "broker-url"}
    ]
    for name, so in scaled_objects.items():
        base = so["spec"]["triggers"]
        if not any(t["type"] in LIST_TRIGGERS for t in base):
            assert ("ScaledObject", name) not in patches, name
            continue
        patched = patches[("ScaledObject", name)]["spec"]["triggers"]
        assert len(patched) == len(base), name
        for old, new in zip(base, patched, strict=True):
            if old["type"] not in LIST_TRIGGERS:
                assert new == old, name
                continue
            assert new["type"] == "rabbitmq", name
            assert new["metadata"] == {
                "protocol": "amqp",
                "mode": "QueueLength",
                "queueName": old["metadata"]["listName"],
                "value": old["metadata"]["listLength"],
            }, name
            assert new["authenticationRef"] == {"name": auth["metadata"]["name"]}, name
