"""deploy/k8s: valid against the Kubernetes schemas, and the properties issue 5 asks for."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from edgematch.config.settings import Settings, known_names
from edgematch.names import QUEUE_STEPS
from edgematch.ops import cli

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: Kinds from CRDs (KEDA, Prometheus Operator): kubernetes-validate has no schema for them,
#: test_keda_and_monitoring.py checks their structure.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
#: The oldest Kubernetes the manifests promise to work on, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
#: Default of EDGEMATCH_SHUTDOWN_GRACE_S, when the ConfigMap does not set it.
DEFAULT_SHUTDOWN_GRACE_S = 30
UNSCALED = {"edgematch-intake", "edgematch-beat"}
#: Process types that are neither a worker nor unscaled: the webhook, scaled on its requests.
DOORS = {"edgematch-webhook"}
#: The workloads that call the PhotoDNA API, the only ones given the subscription key:
#: match (MatchEdgeHash) and reports (the Report operation, with the photodna reporter).
API_CALLERS = {"edgematch-match", "edgematch-reports"}
API_SECRET = "edgematch-api"
KEY_FILE_VAR = "EDGEMATCH_SUBSCRIPTION_KEY_FILE"

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?$")
_UNITS = {None: 1.0, "m": 0.001, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30}


def _quantity(value: object) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"unexpected quantity {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    manifests: list[dict[str, Any]], version: str
) -> None:
    """Every built-in object validates strictly (no unknown field) for old and new clusters."""
    crds = set()
    for doc in manifests:
        if doc["kind"] in CRD_KINDS:
            crds.add(doc["kind"])
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    assert crds == CRD_KINDS


def test_strict_validation_catches_a_misspelled_field(deployments: dict[str, Any]) -> None:
    """The validator is not a no-op: a misspelled container field is refused."""
    broken = copy.deepcopy(deployments["edgematch-match"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    """kubectl apply -k applies every manifest, and never the empty example Secrets."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secrets.example.yaml"}
    assert kustomization["namespace"] == "edgematch"
    assert [i["name"] for i in kustomization["images"]] == ["edgematch"]


def test_no_secret_value_is_committed(manifests: list[dict[str, Any]]) -> None:
    """The only Secrets are the examples, and they carry no data."""
    secrets = [d for d in manifests if d["kind"] == "Secret"]
    assert {d["metadata"]["name"] for d in secrets} == {
        "edgematch-api",
        "edgematch-redis",
        "edgematch-webhook",
    }
    for secret in secrets:
        assert not secret.get("data") and not secret.get("stringData")


def test_one_deployment_per_process_type(
    deployments: dict[str, Any], queues_of: dict[str, list[str]]
) -> None:
    """intake, webhook, beat, and one worker Deployment per queue set, each queue consumed
    exactly once."""
    assert set(deployments) >= UNSCALED | DOORS
    consumed = [step for steps in queues_of.values() for step in steps]
    assert sorted(consumed) == sorted(QUEUE_STEPS), "every queue consumed, none twice"
    assert set(deployments) == UNSCALED | DOORS | set(queues_of)


def test_every_pod_runs_non_root_and_read_only(
    deployments: dict[str, Any], containers: dict[str, Any]
) -> None:
    """Non-root, read-only root, no capabilities, seccomp, and /tmp an emptyDir."""
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        pod_sc = pod["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["serviceAccountName"] == "edgematch", name
        sc = containers[name]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in containers[name]["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be an emptyDir"


def test_every_container_has_requests_and_limits(containers: dict[str, Any]) -> None:
    """CPU and memory requests and limits are set, and no limit is below its request."""
    for name, c in containers.items():
        resources = c["resources"]
        for resource in ("cpu", "memory"):
            request = _quantity(resources["requests"][resource])
            limit = _quantity(resources["limits"][resource])
            assert 0 < request <= limit, f"{name}: {resource}"


def test_probes_use_edgematch_health_for_their_own_process(containers: dict[str, Any]) -> None:
    """Startup and liveness run `health --liveness`, readiness `--readiness`, for its process."""
    for name, c in containers.items():
        process = str(c["args"][0])
        liveness = ["edgematch", "health", "--liveness", "--process", process]
        readiness = ["edgematch", "health", "--readiness", "--process", process]
        assert c["startupProbe"]["exec"]["command"] == liveness, name
        assert c["livenessProbe"]["exec"]["command"] == liveness, name
        assert c["readinessProbe"]["exec"]["command"] == readiness, name


def test_probe_commands_parse_with_the_real_cli(containers: dict[str, Any]) -> None:
    """The probes' arguments are ones `edgematch health` accepts, naming the pod's process."""
    for name, c in containers.items():
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = [str(a) for a in c[probe]["exec"]["command"]]
            parsed = cli.parse(command[1:])  # raises click.UsageError on an unknown argument
            assert parsed.path == ("health",), name
            assert parsed.params["process"] == c["args"][0], (
                f"{name}: probes another process's heartbeat"
            )


def test_grace_period_is_longer_than_the_shutdown_grace(
    deployments: dict[str, Any], configmap: dict[str, str]
) -> None:
    """Kubernetes waits longer than the process's own drain before SIGKILL."""
    grace = int(configmap.get("EDGEMATCH_SHUTDOWN_GRACE_S", DEFAULT_SHUTDOWN_GRACE_S))
    for name, deployment in deployments.items():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace, name


def test_beat_is_exactly_one_pod(
    deployments: dict[str, Any], scaled_objects: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    """beat: replicas 1, Recreate, no autoscaler, no disruption budget that blocks drains."""
    beat = deployments["edgematch-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    targets = {so["spec"]["scaleTargetRef"]["name"] for so in scaled_objects.values()}
    assert "edgematch-beat" not in targets
    pod_labels = beat["spec"]["template"]["metadata"]["labels"]
    pdbs = [d for d in manifests if d["kind"] == "PodDisruptionBudget"]
    assert not [p for p in pdbs if _labels_match(p["spec"]["selector"]["matchLabels"], pod_labels)]


def test_scaled_deployments_leave_the_replica_count_to_keda(
    deployments: dict[str, Any], scaled_objects: dict[str, Any]
) -> None:
    """A Deployment with a ScaledObject sets no replicas (kubectl apply would reset KEDA's)."""
    targets = {so["spec"]["scaleTargetRef"]["name"] for so in scaled_objects.values()}
    assert targets == set(deployments) - UNSCALED
    for name in targets:
        assert "replicas" not in deployments[name]["spec"], name


def test_every_pool_has_a_disruption_budget_that_lets_drains_proceed(
    deployments: dict[str, Any], manifests: list[dict[str, Any]]
) -> None:
    """Each Deployment but beat has exactly one PDB, by maxUnavailable (never blocks a drain)."""
    pdbs = [d for d in manifests if d["kind"] == "PodDisruptionBudget"]
    for name, deployment in deployments.items():
        if name == "edgematch-beat":
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs if _labels_match(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(mine) == 1, name
        assert "maxUnavailable" in mine[0]["spec"] and "minAvailable" not in mine[0]["spec"], name


def test_metrics_port_is_the_same_everywhere(
    manifests: list[dict[str, Any]], containers: dict[str, Any], configmap: dict[str, str]
) -> None:
    """ConfigMap, container ports, Service and ServiceMonitor agree on the metrics port."""
    port = int(configmap["EDGEMATCH_METRICS_PORT"])
    for name, c in containers.items():
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in c["ports"], name
    service = _metrics_service(manifests)
    (monitor,) = [d for d in manifests if d["kind"] == "ServiceMonitor"]
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port and service_port["targetPort"] == "metrics"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]
    assert _labels_match(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])


def test_the_metrics_service_selects_every_pod(
    manifests: list[dict[str, Any]], deployments: dict[str, Any]
) -> None:
    """Every process type is scraped, beat included."""
    service = _metrics_service(manifests)
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(service["spec"]["selector"], labels), name


def _metrics_service(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (service,) = [
        d
        for d in manifests
        if d["kind"] == "Service"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == "metrics"
    ]
    return service


def test_the_webhook_service_reaches_the_webhook_port_only(
    manifests: list[dict[str, Any]], containers: dict[str, Any]
) -> None:
    """The webhook's Service selects its pods alone, on the port EDGEMATCH_WEBHOOK_PORT sets."""
    (service,) = [
        d for d in manifests if d["kind"] == "Service" and d not in [_metrics_service(manifests)]
    ]
    webhook = containers["edgematch-webhook"]
    env = {e["name"]: e.get("value") for e in webhook["env"]}
    (http,) = [p for p in webhook["ports"] if p["name"] == "http"]
    assert http["containerPort"] == int(env["EDGEMATCH_WEBHOOK_PORT"])
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "webhook"
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert env["EDGEMATCH_WEBHOOK_TOKEN_FILE"].startswith("/var/run/secrets/edgematch-webhook/")


def test_network_policy_allows_dns_redis_and_https_only(
    manifests: list[dict[str, Any]], deployments: dict[str, Any]
) -> None:
    """Out: DNS, Redis, Sentinel and 443; in: the metrics port, and the webhook's http port
    for the webhook pods alone; every pod covered."""
    policies = [d for d in manifests if d["kind"] == "NetworkPolicy"]
    egress_ports = {
        (p["port"], p["protocol"])
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for p in rule["ports"]
    }
    assert egress_ports == {(53, "UDP"), (53, "TCP"), (6379, "TCP"), (26379, "TCP"), (443, "TCP")}
    ingress_ports = {
        p["port"]
        for policy in policies
        if "component" not in json.dumps(policy["spec"]["podSelector"])
        for rule in policy["spec"].get("ingress", [])
        for p in rule["ports"]
    }
    assert ingress_ports == {"metrics"}
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if "app.kubernetes.io/component" in selector:
            assert selector["app.kubernetes.io/component"] == "webhook"
            assert policy["spec"]["policyTypes"] == ["Ingress"]
            ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
            assert ports == {"http"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            p
            for p in policies
            if _labels_match(p["spec"]["podSelector"].get("matchLabels", {}), labels)
            and {"Ingress", "Egress"} <= set(p["spec"]["policyTypes"])
        ]
        assert covering, f"{name}: not isolated by a NetworkPolicy"


def test_secrets_come_by_reference(containers: dict[str, Any]) -> None:
    """Redis URLs from edgematch-redis; no secret value in a manifest."""
    for name, c in containers.items():
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "valueFrom" in e
        }
        assert refs == {
            "EDGEMATCH_REDIS_URL": "edgematch-redis",
            "EDGEMATCH_BROKER_URL": "edgematch-redis",
        }, name
        assert not [e for e in c["env"] if "value" in e and "SECRET" in e["name"]], name


def test_only_the_pods_that_call_the_api_get_the_subscription_key(
    deployments: dict[str, Any],
    containers: dict[str, Any],
    configmap: dict[str, str],
    queues_of: dict[str, list[str]],
) -> None:
    """match and reports mount edgematch-api and set the key file; nothing else references it."""
    # The workers the CLI refuses to start without the key (reports: with the photodna reporter).
    photodna = Settings(reporter="photodna")
    callers = {n for n, steps in queues_of.items() if cli.needs_subscription_key(steps, photodna)}
    assert callers == API_CALLERS
    assert KEY_FILE_VAR not in configmap, "the ConfigMap reaches every pod"
    for name, deployment in deployments.items():
        c = containers[name]
        env = {e["name"]: e for e in c["env"]}
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        api = [v["name"] for v in volumes if v.get("secret", {}).get("secretName") == API_SECRET]
        if name not in API_CALLERS:
            assert KEY_FILE_VAR not in env, name
            assert API_SECRET not in json.dumps(deployment), f"{name} references {API_SECRET}"
            continue
        assert len(api) == 1, name
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == api[0]]
        assert mount["readOnly"] is True, name
        key_file = Path(env[KEY_FILE_VAR]["value"])
        # The Secret's key is subscription-key (secrets.example.yaml).
        assert key_file == Path(mount["mountPath"]) / "subscription-key", name


def test_the_configmap_points_at_no_api_secret(configmap: dict[str, str]) -> None:
    """Every pod reads the ConfigMap, but only match and reports mount edgematch-api.

    A *_FILE there would stop the other pods at start-up (the file is not in them), and so
    would a reporter other than record: every process checks the reporter's credentials.
    """
    assert not [k for k, v in configmap.items() if v.startswith("/var/run/secrets/edgematch/")]
    assert not [k for k in configmap if k.endswith("_FILE")]
    assert configmap.get("EDGEMATCH_REPORTER", "record") == "record"


def test_configmap_holds_settings_the_code_reads(configmap: dict[str, str]) -> None:
    """Every EDGEMATCH_* variable of the ConfigMap is one the code reads (no silent typo)."""
    names = [k for k in configmap if k.startswith("EDGEMATCH_")]
    unknown = [k for k in names if k not in known_names()]
    assert not unknown, f"variables the code never reads: {unknown}"


def test_configmap_values_pass_the_settings_validation(
    configmap: dict[str, str], tmp_path: Path
) -> None:
    """With its placeholders filled in, the ConfigMap is a configuration edgematch accepts.

    Alone, as intake, beat and the workers that never call the API see it; and with the key
    file match.yaml and reports.yaml add.
    """
    key_file = tmp_path / "subscription-key"
    key_file.write_text("0123456789abcdef\n", encoding="utf-8")
    filled = {
        "REGION": "eu-west-1",
        "ACCOUNT-ID": "123456789012",
        "EVENT-QUEUE": "edgematch-events",
        "UPLOAD-BUCKET": "uploads",
        "QUARANTINE-BUCKET": "quarantine",
        "REPORTS-BUCKET": "edgematch-reports",
    }
    env = {}
    for key, raw in configmap.items():
        value = raw
        for placeholder, real in filled.items():
            value = value.replace(placeholder, real)
        env[key] = value
    settings = Settings.from_env(env)
    assert settings.subscription_key is None
    assert settings.require_sqs_queue_url().endswith("/123456789012/edgematch-events")
    assert settings.quarantine_bucket == "quarantine"
    assert settings.namespace == configmap["EDGEMATCH_NAMESPACE"]
    with_key = Settings.from_env({**env, KEY_FILE_VAR: str(key_file)})
    assert with_key.require_subscription_key().reveal() == "0123456789abcdef"
