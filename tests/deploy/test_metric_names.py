"""Every metric the dashboard, the scalers and the alerts name is one the code exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from edgematch.infra import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "edgematch.json"
_NAME = re.compile(r"\bedgematch_[a-z0-9_]+\b")
#: What Prometheus' text format calls each type's series (prometheus_client drops `_total`
#: from a counter's base name; `_created` is exported too).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _exported_series() -> set[str]:
    """The series names a scrape of edgematch can show, from metrics.NAMES."""
    types: dict[str, str] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            types[value._name] = str(value._type)
    series = set()
    for name in metrics.NAMES:
        # Names without an object are the gauges read from Redis at scrape time.
        for suffix in _SUFFIXES[types.get(name, "gauge")]:
            series.add(name + suffix)
    return series


def _unknown(expressions: list[str]) -> set[str]:
    used = {m for expr in expressions for m in _NAME.findall(expr)}
    return used - _exported_series()


def _strings(node: Any, keys: set[str]) -> Iterator[str]:
    """Every string value under one of ``keys``, anywhere in a JSON or YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings(value, keys)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item, keys)


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def _dashboard_queries() -> list[str]:
    return list(_strings(_dashboard(), {"expr", "query", "definition"}))


def test_the_checker_catches_a_name_the_code_does_not_export() -> None:
    """A misspelled metric, or a counter without `_total`, is reported."""
    assert _unknown(["sum(rate(edgematch_hashes_scaned_total[5m]))"]) == {
        "edgematch_hashes_scaned_total"
    }
    assert _unknown(["rate(edgematch_matches[5m])"]) == {"edgematch_matches"}
    assert _unknown(["histogram_quantile(0.5, rate(edgematch_batch_size_bucket[1m]))"]) == set()


def test_every_dashboard_metric_exists() -> None:
    """The dashboard's queries name only metrics edgematch exports."""
    queries = _dashboard_queries()
    assert len(queries) > 20
    assert not _unknown(queries)


def test_every_scaler_and_alert_metric_exists(manifests: list[dict[str, Any]]) -> None:
    """KEDA's Prometheus queries and the alert rules name only metrics edgematch exports."""
    queries = list(_strings(manifests, {"query", "expr"}))
    assert any("edgematch_buffer_items" in q for q in queries)
    assert not _unknown(queries)


def test_the_dashboard_shows_what_issue_5_asks_for() -> None:
    """Throughput, quota use, 429s, API and end-to-end p50/p99, matches, dead letters, backlog."""
    queries = " ".join(_dashboard_queries())
    for needed in (
        "sum by (verdict) (rate(edgematch_hashes_scanned_total",
        "edgematch_rate_limit_requests_in_window",
        "edgematch_rate_limit_capacity",
        "edgematch_api_rate_limited_total",
        "histogram_quantile(0.5, sum by (le) (rate(edgematch_api_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(edgematch_api_request_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, lane) (rate(edgematch_end_to_end_seconds_bucket",
        "edgematch_matches_total",
        "max by (reason) (edgematch_dead_letters",
        "max by (queue) (edgematch_queue_depth",
        "max by (lane) (edgematch_buffer_items",
    ):
        assert needed in queries, needed


def test_dashboard_is_importable_grafana_json() -> None:
    """Unique panel ids, a grid position each, unique refIds, and a data-source variable."""
    dash = _dashboard()
    assert dash["uid"] == "edgematch" and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def _summed_gauges(query: str, gauges: set[str]) -> set[str]:
    """Gauges whose innermost aggregation in ``query`` is a sum (or with no `by`, a count)."""
    found = set()
    for gauge in gauges:
        pattern = rf"(\w+)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*{gauge}\b"
        for match in re.finditer(pattern, query):
            if match.group(1) in {"sum", "count", "avg"}:
                found.add(gauge)
    return found


def test_redis_levels_are_taken_with_max_not_sum(manifests: list[dict[str, Any]]) -> None:
    """Every pod serves the same Redis gauges: summing them would multiply by the pod count."""
    gauges = set(metrics.NAMES) - {m._name for m in _wrappers()}
    assert _summed_gauges("sum by (lane) (edgematch_buffer_items)", gauges) == {
        "edgematch_buffer_items"
    }
    assert not _summed_gauges("sum(max by (lane) (edgematch_buffer_items))", gauges)
    queries = _dashboard_queries() + list(_strings(manifests, {"query", "expr"}))
    assert not [q for q in queries if _summed_gauges(q, gauges)]


def _wrappers() -> list[MetricWrapperBase]:
    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
