"""The CRD objects kubernetes-validate has no schema for: KEDA and the Prometheus Operator.

Checked by hand: apiVersion and kind, the required fields, and that every name they use
(a Deployment, a Redis list, a Secret, a Service port) exists.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from edgematch.infra import metrics
from edgematch.infra.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
SECRETS_EXAMPLE = ROOT / "deploy" / "k8s" / "secrets.example.yaml"
LIST_TRIGGERS = {"redis", "redis-sentinel"}
_POSITIVE_INT = re.compile(r"^[1-9]\d*$")


def _kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in manifests if d["kind"] == kind]


def _concurrency(container: dict[str, Any]) -> int:
    args = [str(a) for a in container["args"]]
    return int(args[args.index("--concurrency") + 1])


def test_scaled_objects_are_well_formed(
    scaled_objects: dict[str, Any], deployments: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    """apiVersion, target, bounds and every trigger's required metadata are right."""
    auths = {d["metadata"]["name"] for d in _kind(manifests, "TriggerAuthentication")}
    assert scaled_objects
    for name, so in scaled_objects.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1", name
        spec = so["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments, name
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], name
        if "fallback" in spec:
            assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"], name
        assert spec["triggers"], name
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            if trigger["type"] in LIST_TRIGGERS:
                assert _POSITIVE_INT.match(meta["listLength"]), name
                assert meta.get("addresses") or meta.get("address"), name
            elif trigger["type"] == "prometheus":
                assert meta["serverAddress"].startswith(("http://", "https://")), name
                assert float(meta["threshold"]) > 0, name
                assert meta["query"], name
            elif trigger["type"] == "cpu":
                assert trigger["metricType"] == "Utilization", name
                assert 0 < int(meta["value"]) <= 100, name
            else:
                pytest.fail(f"{name}: unexpected trigger type {trigger['type']}")
            if "authenticationRef" in trigger:
                assert trigger["authenticationRef"]["name"] in auths, name


def test_list_triggers_watch_the_queues_their_deployment_consumes(
    scaled_objects: dict[str, Any], queues_of: dict[str, list[str]], configmap: dict[str, str]
) -> None:
    """Each listName is `<namespace>.<step>` for a step its target Deployment consumes."""
    keys = Keys(configmap["EDGEMATCH_NAMESPACE"])
    for so in scaled_objects.values():
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in queues_of:
            continue  # the webhook consumes no queue (test_webhook_scales_on_its_requests)
        lists = {
            t["metadata"]["listName"] for t in so["spec"]["triggers"] if t["type"] in LIST_TRIGGERS
        }
        assert lists, f"{target}: no queue-length trigger"
        assert lists <= {keys.queue(step) for step in queues_of[target]}, target


def test_every_consumed_queue_is_watched_by_a_scaler(
    scaled_objects: dict[str, Any], queues_of: dict[str, list[str]], configmap: dict[str, str]
) -> None:
    """No queue can fill up without its pool scaling."""
    keys = Keys(configmap["EDGEMATCH_NAMESPACE"])
    watched = {
        t["metadata"]["listName"]
        for so in scaled_objects.values()
        for t in so["spec"]["triggers"]
        if t["type"] in LIST_TRIGGERS
    }
    consumed = {keys.queue(step) for steps in queues_of.values() for step in steps}
    assert watched == consumed


def test_webhook_scales_on_its_requests_and_cpu(scaled_objects: dict[str, Any]) -> None:
    """The webhook's pods follow the notifications arriving (its own counter) and CPU."""
    spec = scaled_objects["edgematch-webhook"]["spec"]
    assert spec["minReplicaCount"] >= 2, "one pod down must not stop the door"
    triggers = {t["type"]: t for t in spec["triggers"]}
    assert set(triggers) == {"prometheus", "cpu"}
    query = triggers["prometheus"]["metadata"]["query"]
    assert "edgematch_webhook_requests_total" in query
    assert "edgematch_webhook_requests" in metrics.NAMES  # a counter's name, without _total


def test_match_pool_is_capped_by_the_sizing_rule(
    scaled_objects: dict[str, Any], containers: dict[str, Any], configmap: dict[str, str]
) -> None:
    """maxReplicaCount = ceil((EDGEMATCH_MATCH_PUMPS + 1) / concurrency) + 1 (deploy/README.md)."""
    pumps = int(configmap["EDGEMATCH_MATCH_PUMPS"])
    concurrency = _concurrency(containers["edgematch-match"])
    spec = scaled_objects["edgematch-match"]["spec"]
    assert spec["maxReplicaCount"] == math.ceil((pumps + 1) / concurrency) + 1
    kinds = {t["type"] for t in spec["triggers"]}
    assert "prometheus" in kinds, "the buffer depth is match's signal"


def test_trigger_authentication_reads_a_documented_secret_key(
    manifests: list[dict[str, Any]],
) -> None:
    """The Redis password KEDA uses is a key the example Secrets tell operators to create."""
    example = SECRETS_EXAMPLE.read_text(encoding="utf-8")
    secrets = {d["metadata"]["name"] for d in yaml.safe_load_all(example) if d}
    (auth,) = _kind(manifests, "TriggerAuthentication")
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["parameter"] in {"password", "sentinelPassword", "username"}
        assert ref["name"] in secrets
        assert f"--from-literal={ref['key']}=" in example, ref["key"]


def test_service_monitor_is_well_formed(manifests: list[dict[str, Any]]) -> None:
    """A ServiceMonitor of the metrics Service's named port, at /metrics."""
    (monitor,) = _kind(manifests, "ServiceMonitor")
    (service,) = [
        s
        for s in _kind(manifests, "Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    ]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_alert_rules_are_well_formed(manifests: list[dict[str, Any]]) -> None:
    """Every rule has a unique alert name, an expression, a severity and a summary."""
    (rule,) = _kind(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for r in rules:
        assert r["expr"].strip(), r["alert"]
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        runbook = r["annotations"].get("runbook")
        if runbook:
            assert (ROOT / runbook).is_file(), f"{r['alert']}: {runbook} does not exist"


def test_the_alerts_issue_5_asks_for_exist(manifests: list[dict[str, Any]]) -> None:
    """429s, dead letters, buffer age, breaker, readiness and end-to-end p99 are alerted on."""
    (rule,) = _kind(manifests, "PrometheusRule")
    exprs = " ".join(r["expr"] for group in rule["spec"]["groups"] for r in group["rules"])
    for needed in (
        "edgematch_api_rate_limited_total",
        "edgematch_dead_lettered_total",
        "edgematch_buffer_oldest_age_seconds",
        "edgematch_breaker_open",
        "kube_deployment_status_replicas_unavailable",
        "edgematch_end_to_end_seconds_bucket",
    ):
        assert needed in exprs, needed
    assert "> 0.005" in exprs, "429s above 0.5 %"


def test_a_flooded_match_id_is_alerted_on_by_name(manifests: list[dict[str, Any]]) -> None:
    """The flood guard's alert reads the scrape-time gauge and names the match id."""
    (rule,) = _kind(manifests, "PrometheusRule")
    (flood,) = [
        r
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "edgematch_flooded_match_id" in r["expr"]
    ]
    assert "by (match_id)" in flood["expr"] and flood["expr"].startswith("max")
    assert "{{ $labels.match_id }}" in flood["annotations"]["summary"]
