"""The Collector, Prometheus and docker-compose files of ``collector-config/`` are well formed.

The Collector binary is not available here, so each ``otelcol*.yaml`` is parsed with PyYAML and
every component it names is checked against the component types of the otelcol-contrib
distribution (the list below, from its v0.136.0 manifest), pipelines are checked to reference
only defined components, and the deprecated/removed names (``logging``, ``jaeger``) are refused.
The Prometheus configs that Debian's Prometheus (2.42) understands go through
``promtool check config``; docker-compose.yaml must reference files that exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "collector-config"
COLLECTOR_CONFIGS = sorted(CONFIG.glob("otelcol*.yaml"))

# Component *types* (the part of an id before "/") of otelcol-contrib v0.136.0, from
# opentelemetry-collector-releases/distributions/otelcol-contrib/manifest.yaml (module
# e.g. memorylimiterprocessor -> type memory_limiter). Not every component, but every one a
# hf-eco2ai setup plausibly uses, vendor exporters included.
OTELCOL_CONTRIB_VERSION = "0.136.0"
OTELCOL_CONTRIB: dict[str, set[str]] = {
    "receivers": {
        "otlp",
        "prometheus",
        "hostmetrics",
        "filelog",
        "jaeger",
        "zipkin",
        "kafka",
        "nop",
    },
    "processors": {
        "batch",
        "memory_limiter",
        "resource",
        "attributes",
        "filter",
        "transform",
        "resourcedetection",
        "k8sattributes",
        "metricstransform",
        "cumulativetodelta",
        "deltatocumulative",
        "groupbyattrs",
        "probabilistic_sampler",
        "tail_sampling",
        "span",
    },
    "exporters": {
        "debug",
        "nop",
        "otlp",
        "otlphttp",
        "prometheus",
        "prometheusremotewrite",
        "file",
        "kafka",
        "loadbalancing",
        "zipkin",
        "datadog",
        "googlecloud",
        "googlemanagedprometheus",
        "awsemf",
        "awsxray",
        "azuremonitor",
        "elasticsearch",
        "clickhouse",
        "influxdb",
        "splunk_hec",
        "signalfx",
        "sumologic",
        "coralogix",
    },
    "extensions": {
        "health_check",
        "pprof",
        "zpages",
        "basicauth",
        "bearertokenauth",
        "oauth2client",
        "headers_setter",
        "file_storage",
    },
    "connectors": {"forward", "spanmetrics", "count", "routing"},
}
# Removed from otelcol-contrib: `logging` (renamed `debug` in v0.86.0, removed in v0.111.0),
# `jaeger` exporter (removed in v0.85.0; Jaeger takes OTLP).
REMOVED_EXPORTERS = {"logging", "jaeger", "jaeger_thrift"}
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    return doc


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_both_collector_configs_exist() -> None:
    assert [p.name for p in COLLECTOR_CONFIGS] == ["otelcol-prometheus-otlp.yaml", "otelcol.yaml"]


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_components_exist_in_otelcol_contrib(path: Path) -> None:
    doc = _load(path)
    assert set(doc) <= {*SECTIONS, "service"}, set(doc)
    for section in SECTIONS:
        for component_id in doc.get(section) or {}:
            assert re.fullmatch(r"[a-z_0-9]+(/[A-Za-z0-9_.-]+)?", component_id), component_id
            kind = _type(component_id)
            assert kind in OTELCOL_CONTRIB[section], (
                f"{path.name}: {section[:-1]} {kind!r} is not in otelcol-contrib "
                f"v{OTELCOL_CONTRIB_VERSION}"
            )
    assert not {_type(e) for e in doc["exporters"]} & REMOVED_EXPORTERS


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_pipelines_reference_defined_components(path: Path) -> None:
    doc = _load(path)
    service = doc["service"]
    for ext in service.get("extensions", []):
        assert ext in doc["extensions"], ext
    pipelines = service["pipelines"]
    assert {_type(name) for name in pipelines} == {"metrics", "traces"}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"], name
        assert pipeline["exporters"], name
        for section in ("receivers", "processors", "exporters"):
            for component_id in pipeline.get(section, []):
                assert component_id in doc[section], f"{name}: undefined {component_id}"
        processors = pipeline["processors"]
        # The Collector's guidance: memory_limiter first, batch last.
        assert processors[0] == "memory_limiter", name
        assert processors[-1] == "batch", name


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("path", COLLECTOR_CONFIGS, ids=lambda p: p.name)
def test_otlp_receiver_and_traces_to_jaeger(path: Path) -> None:
    doc = _load(path)
    protocols = doc["receivers"]["otlp"]["protocols"]
    assert _port(protocols["grpc"]["endpoint"]) == 4317
    assert _port(protocols["http"]["endpoint"]) == 4318
    (trace_exporter,) = doc["service"]["pipelines"]["traces"]["exporters"]
    assert _type(trace_exporter) == "otlp"
    exporter = doc["exporters"][trace_exporter]
    assert exporter["endpoint"] == "jaeger:4317"  # the compose service; Jaeger takes OTLP
    assert exporter["tls"]["insecure"] is True


def test_scrape_variant_exposes_prometheus_with_resource_labels() -> None:
    doc = _load(CONFIG / "otelcol.yaml")
    (exporter_id,) = doc["service"]["pipelines"]["metrics"]["exporters"]
    assert exporter_id == "prometheus"
    exporter = doc["exporters"]["prometheus"]
    assert _port(exporter["endpoint"]) == 8889
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is True
    # The identifying resource attributes the dashboard groups by are not deleted.
    deleted = {
        a["key"]
        for a in doc["processors"]["resource/drop-noisy"]["attributes"]
        if a["action"] == "delete"
    }
    assert not deleted & {"service.name", "host.name", "hf_eco2ai.rank", "hf_eco2ai.world_size"}


def test_push_variant_targets_prometheus_otlp_endpoint() -> None:
    doc = _load(CONFIG / "otelcol-prometheus-otlp.yaml")
    (exporter_id,) = doc["service"]["pipelines"]["metrics"]["exporters"]
    assert _type(exporter_id) == "otlphttp"
    # otlphttp appends /v1/metrics: Prometheus' receiver is /api/v1/otlp/v1/metrics.
    assert doc["exporters"][exporter_id]["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    prom = _load(CONFIG / "prometheus-otlp.yml")
    promoted = set(prom["otlp"]["promote_resource_attributes"])
    assert {"service.name", "hf_eco2ai.rank", "host.name"} <= promoted


# ---------------------------------------------------------------------------- Prometheus
def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    return found


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-direct.yml"])
def test_promtool_accepts_scrape_configs(name: str) -> None:
    proc = subprocess.run(
        [_promtool(), "check", "config", str(CONFIG / name)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_prometheus_scrapes_the_collector_exporter() -> None:
    prom = _load(CONFIG / "prometheus.yml")
    targets = [
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    ]
    collector = _load(CONFIG / "otelcol.yaml")
    port = _port(collector["exporters"]["prometheus"]["endpoint"])
    assert f"otel-collector:{port}" in targets


def test_direct_scrape_config_adds_service_name() -> None:
    prom = _load(CONFIG / "prometheus-direct.yml")
    (job,) = prom["scrape_configs"]
    (static,) = job["static_configs"]
    assert static["targets"] == ["localhost:9464"]  # OTEL_EXPORTER_PROMETHEUS_PORT's default
    assert static["labels"]["service_name"]


# ---------------------------------------------------------------------------- compose
_VAR = re.compile(r"\$\{(\w+):-([^}]*)\}")


def test_compose_services_images_and_ports() -> None:
    compose = _load(CONFIG / "docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"otel-collector", "prometheus", "jaeger", "grafana"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image, f"{name}: pin the image"
        assert not image.endswith(":latest"), name
    assert services["otel-collector"]["image"].startswith(
        f"otel/opentelemetry-collector-contrib:{OTELCOL_CONTRIB_VERSION}"
    )
    published = {p.split(":")[0] for p in services["otel-collector"]["ports"]}
    assert {"4317", "4318", "8889"} <= published
    assert "--web.enable-otlp-receiver" in services["prometheus"]["command"]


def test_compose_mounts_files_that_exist() -> None:
    compose = _load(CONFIG / "docker-compose.yaml")
    sources = []
    for svc in compose["services"].values():
        for volume in svc.get("volumes", []):
            source = volume.split(":/")[0]  # "./${X:-a.yaml}:/etc/b.yaml:ro" -> "./${X:-a.yaml}"
            if source.startswith("./"):  # bind mounts (named volumes have no "./")
                sources.append(_VAR.sub(lambda m: m.group(2), source))
    assert sources
    for source in sources:
        assert (CONFIG / source).exists(), source
    # The alternatives the comments name for the OTLP-push variant exist too.
    text = (CONFIG / "docker-compose.yaml").read_text()
    for alternative in ("otelcol-prometheus-otlp.yaml", "prometheus-otlp.yml"):
        assert alternative in text
        assert (CONFIG / alternative).exists()
    variables = dict(_VAR.findall(text))
    assert variables == {"OTELCOL_CONFIG": "otelcol.yaml", "PROMETHEUS_CONFIG": "prometheus.yml"}
