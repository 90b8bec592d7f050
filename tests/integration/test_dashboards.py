"""The shipped Grafana dashboards and provisioning, checked without Grafana.

What a real Prometheus answers for each query is ``tests/integration/test_prometheus.py``'s job;
here: the JSON's structure (fixed uid, the ``DS_PROMETHEUS`` datasource variable on every panel
and target), that every metric name a query uses is one the registry renders, under *both*
renderers (opentelemetry-exporter-prometheus and the Collector / Prometheus OTLP translator:
names that differ between them must be matched with a ``__name__=~`` regex), the Jaeger data
links on energy panels, and that the provisioning files point at what docker-compose mounts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hf_eco2ai.telemetry.names import METRICS

CONFIG = Path(__file__).resolve().parents[2] / "collector-config"
DASHBOARD_DIR = CONFIG / "grafana" / "dashboards"
PROVISIONING = CONFIG / "grafana" / "provisioning"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DS = "${DS_PROMETHEUS}"


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def _load(path: Path) -> dict[str, Any]:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(board, dict)
    return board


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _walk(board["panels"]) if p.get("type") != "row"]


def _exprs(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(board) for t in p.get("targets", []) if "expr" in t]
    for var in board["templating"]["list"]:
        if var.get("type") == "query":
            exprs.append(var["query"]["query"])
    return exprs


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OUR_NAME = re.compile(r"\b(?:hw|hf_eco2ai)_[A-Za-z0-9_:]*")
_NAME_REGEX = re.compile(r'__name__\s*=~\s*"((?:[^"\\]|\\.)*)"')


def metric_names(expr: str) -> set[str]:
    """Plain metric names in a PromQL expression (label names and strings removed)."""
    bare = _GROUPING.sub("", _MATCHERS.sub("", _STRING.sub('""', expr)))
    bare = re.sub(r"label_values\(([^,]*),[^)]*\)", r"\1", bare)
    return set(_OUR_NAME.findall(bare))


def name_regexes(expr: str) -> list[str]:
    return _NAME_REGEX.findall(expr)


PYTHON_NAMES = {m.prometheus for m in METRICS}
OTLP_NAMES = {m.prometheus_otlp for m in METRICS}


def test_helpers_tell_metric_names_from_labels() -> None:
    expr = 'sum by (hw_type) (rate(hf_eco2ai_energy_joules_total{hw_id=~"$x", hf_eco2ai_rank="0"}[5m]))'
    assert metric_names(expr) == {"hf_eco2ai_energy_joules_total"}
    assert name_regexes('max({__name__=~"hw_gpu_utilization(_ratio)?", a="b"})') == [
        "hw_gpu_utilization(_ratio)?"
    ]
    assert metric_names('label_values(hw_power_watts{a=~"$s"}, hf_eco2ai_rank)') == {
        "hw_power_watts"
    }


def test_there_is_a_dashboard() -> None:
    assert [p.name for p in DASHBOARD_FILES] == ["hf-eco2ai.json"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_identity_and_datasource_variable(path: Path) -> None:
    board = _load(path)
    assert board["uid"] == "hf-eco2ai-energy"
    assert len(board["uid"]) <= 40
    assert board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource"
    assert ds["query"] == "prometheus"
    assert {"service", "rank", "jaeger_url"} <= set(variables)
    for name in ("service", "rank"):
        assert variables[name]["datasource"]["uid"] == DS
        assert variables[name]["includeAll"] is True
        # "All" must also match series without the label (a direct scrape has no service_name)
        assert variables[name]["allValue"] == ".*"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_every_panel_and_target_uses_the_variable(path: Path) -> None:
    board = _load(path)
    ids = [p["id"] for p in _walk(board["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    panels = _panels(board)
    assert len(panels) >= 20
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DS}, panel["title"]
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DS, panel["title"]
            assert target["expr"].strip(), panel["title"]
            # every query honours the service and rank filters
            assert 'service_name=~"$service"' in target["expr"], (panel["title"], target)
            assert 'hf_eco2ai_rank=~"$rank"' in target["expr"], (panel["title"], target)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_metric_names_exist_under_both_renderers(path: Path) -> None:
    board = _load(path)
    used: set[str] = set()
    for expr in _exprs(board):
        for name in metric_names(expr):
            assert name in PYTHON_NAMES, f"{name!r} is not a registry metric ({expr})"
            assert name in OTLP_NAMES, (
                f"{name!r} is named differently through the Collector; match both with "
                f"{{__name__=~...}} ({expr})"
            )
            used.add(name)
        for regex in name_regexes(expr):
            pattern = re.compile(f"^(?:{regex})$")
            specs = [m for m in METRICS if pattern.match(m.prometheus)]
            assert specs, f"{regex!r} matches no registry metric"
            for spec in specs:
                assert pattern.match(spec.prometheus_otlp), (regex, spec.prometheus_otlp)
            used.update(spec.prometheus for spec in specs)
    # The dashboard shows every metric of the registry somewhere.
    assert used == PYTHON_NAMES, sorted(PYTHON_NAMES - used)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_energy_per_run_panels_link_to_jaeger(path: Path) -> None:
    """Panels that show energy or CO2 per service link each series to that service's traces."""
    board = _load(path)
    per_run = [
        p
        for p in _panels(board)
        if any(
            "by (service_name)" in t["expr"]
            and ("hf_eco2ai_energy_joules_total" in t["expr"] or "emissions" in t["expr"])
            for t in p["targets"]
        )
    ]
    assert len(per_run) >= 3, [p["title"] for p in per_run]
    for panel in per_run:
        urls = [link["url"] for link in panel["fieldConfig"]["defaults"].get("links", [])]
        assert any(u.startswith("${jaeger_url}/search?service=") for u in urls), panel["title"]
        for url in urls:
            # Grafana's ${__from}/${__to} are ms; Jaeger's start/end are µs.
            assert "service=${__field.labels.service_name}" in url
            assert "start=${__from}000" in url
            assert "end=${__to}000" in url


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    assert doc["apiVersion"] == 1
    by_type = {d["type"]: d for d in doc["datasources"]}
    assert by_type["prometheus"]["uid"] == "prometheus"
    assert by_type["prometheus"]["isDefault"] is True
    assert by_type["prometheus"]["url"] == "http://prometheus:9090"
    jaeger = by_type["jaeger"]
    assert jaeger["url"] == "http://jaeger:16686"
    links = jaeger["jsonData"]["tracesToMetrics"]
    assert links["datasourceUid"] == "prometheus"
    for query in links["queries"]:
        # `$$` is a literal `$` in provisioning files (Grafana expands $VARS from the env).
        assert "{$$__tags}" in query["query"]
        assert metric_names(query["query"]) <= PYTHON_NAMES & OTLP_NAMES


def test_dashboard_provider_points_at_the_compose_mount() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((CONFIG / "docker-compose.yaml").read_text())
    volumes = compose["services"]["grafana"]["volumes"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in volumes}
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert home == provider["options"]["path"] + "/hf-eco2ai.json"
