"""A real Prometheus scrapes real hf-eco2ai metrics; every PromQL of the shipped dashboard returns data.

Two scrape targets, one Prometheus (``/usr/bin/prometheus``, Debian's package; ``.ci/run``
installs it), all on 127.0.0.1 with free ports and a temporary TSDB:

* ``training``: ``opentelemetry-instrument python <script>`` trains the tiny BERT of
  ``examples/train_hf.py`` with ``OTEL_METRICS_EXPORTER=prometheus``, so
  opentelemetry-exporter-prometheus serves ``/metrics``; the script then stays up until the test
  has queried what it needs. On a machine without GPU or RAPL its devices are the CPU TDP model
  (``hw.type=cpu``) and the RAM model (``hw.type=memory``).
* ``fake-gpu``: this test process instruments itself (``HFEco2AIInstrumentor``) with a
  ``PrometheusMetricReader`` served by ``prometheus_client``, measuring one GPU through the real
  ``NvmlSensor`` over the fake NVML of ``tests/fakes`` (set with
  ``hf_eco2ai.energy_monitor.set_monitor_factory``). The GPU-only panels (``hw.gpu.*``) are proven on it.

The scrape config adds a ``service_name`` label per target, as ``collector-config/
prometheus-direct.yml`` tells users to (the Python exporter keeps the resource in
``target_info``). The tests then query Prometheus' HTTP API: series and labels of
``hw_energy_joules_total``, ``hw_power_watts``, ``hf_eco2ai_emissions_grams_total``; every
registry metric under the name :attr:`MetricSpec.prometheus` says; and every ``expr`` of
``collector-config/grafana/dashboards/*.json`` after substituting Grafana's variables.

Opt-in, ``HF_ECO2AI_RENDER_DASHBOARD=docs/img/dashboard.png`` draws six of the dashboard's panels
from this Prometheus with matplotlib (the picture in docs/backends.md);
``HF_ECO2AI_PROM_TRAIN_SIZE`` trains longer for it (default 64 samples).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from hf_eco2ai.sensors.base import Method
from hf_eco2ai.telemetry.names import METRICS, MetricSpec
from tests.integration.otlp_receiver import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DASHBOARDS = REPO / "collector-config" / "grafana" / "dashboards"
SERVICE = "hf-eco2ai-prom-e2e"
FAKE_SERVICE = "hf-eco2ai-fake-gpu"
TRAIN_SIZE = int(os.environ.get("HF_ECO2AI_PROM_TRAIN_SIZE", "64"))  # more for a longer picture
BATCH_SIZE = 8  # examples/train_hf.py's default per-device batch size
STEPS = TRAIN_SIZE // BATCH_SIZE
GPU_UUID = "GPU-0b5e7c39-0000-4000-8000-00000000e2e0"
TRAIN_TIMEOUT_S = 120
RATE_INTERVAL = "10s"  # what Grafana would give $__rate_interval with a 1 s scrape, rounded up

# The child: train, say so, then keep the exporter's HTTP server up until told to stop.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    sys.path.insert(0, os.environ["HF_ECO2AI_TEST_EXAMPLES"])
    from train_hf import main

    main(["--epochs", "1", "--train-size", os.environ["HF_ECO2AI_TEST_TRAIN_SIZE"]])
    print("hf-eco2ai-test: trained", flush=True)
    stop = Path(os.environ["HF_ECO2AI_TEST_STOP_FILE"])
    deadline = time.monotonic() + float(os.environ["HF_ECO2AI_TEST_HOLD_S"])
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    """
)


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.skip(
            "the prometheus binary is not installed (Debian: apt-get install prometheus; "
            ".ci/run installs it)"
        )
    return found


def _http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # 127.0.0.1 only
        return json.load(response)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, log: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{log()}")


# ---------------------------------------------------------------------------- servers
@dataclass
class Prometheus:
    """A Prometheus server on 127.0.0.1 with a temporary TSDB."""

    binary: str
    workdir: Path
    scrape_targets: dict[str, tuple[str, dict[str, str]]]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        jobs = [
            {
                "job_name": job,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [target], "labels": labels}],
            }
            for job, (target, labels) in self.scrape_targets.items()
        ]
        # JSON is YAML: no YAML writer needed.
        return json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}, indent=2)

    def start(self) -> None:
        config = self.workdir / "prometheus.yml"
        config.write_text(self.config())
        self.log_path = self.workdir / "prometheus.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        _wait(self._ready, 30, "Prometheus to be ready", self.log)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        try:
            return "--- prometheus log ---\n" + self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises AssertionError with Prometheus' error for a bad expression."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = _http_json(url)
        except urllib.error.HTTPError as exc:  # 400/422: PromQL parse or execution error
            raise AssertionError(f"{expr!r}: {exc.read().decode(errors='replace')}") from exc
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] in ("vector", "matrix"):
            return list(data["result"])
        return [{"metric": {}, "value": data["result"]}]  # scalar / string

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _other_instrumentations() -> str:
    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    return ",".join(sorted(names - {"hf_eco2ai"}))


@dataclass
class TrainingProcess:
    """``opentelemetry-instrument`` training that serves /metrics via the Python exporter."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None

    @property
    def stop_file(self) -> Path:
        return self.workdir / "stop"

    def start(self) -> None:
        script = self.workdir / "train_and_hold.py"
        script.write_text(CHILD)
        instrument = Path(sys.executable).parent / "opentelemetry-instrument"
        if not instrument.exists():
            pytest.skip(f"opentelemetry-instrument not found next to {sys.executable}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            {
                "OTEL_SERVICE_NAME": SERVICE,
                "OTEL_METRICS_EXPORTER": "prometheus",
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
                "OTEL_EXPORTER_PROMETHEUS_PORT": str(self.port),
                "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.1",
                "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "FR",
                "OTEL_PYTHON_HF_ECO2AI_OUTPUT_DIR": str(self.workdir / "reports"),
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": _other_instrumentations(),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "HF_ECO2AI_TEST_EXAMPLES": str(EXAMPLES),
                "HF_ECO2AI_TEST_TRAIN_SIZE": str(TRAIN_SIZE),
                "HF_ECO2AI_TEST_STOP_FILE": str(self.stop_file),
                "HF_ECO2AI_TEST_HOLD_S": str(TRAIN_TIMEOUT_S),
            }
        )
        self.out = (self.workdir / "train.log").open("w")
        self.proc = subprocess.Popen(
            [str(instrument), sys.executable, str(script)],
            cwd=self.workdir,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self) -> str:
        try:
            return "--- training log ---\n" + (self.workdir / "train.log").read_text()[-6000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        """Let the script exit on its own (exporters shut down cleanly); kill if it hangs."""
        if self.proc is None:
            return None
        self.stop_file.touch()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            code = None
        self.out.close()
        return code


class FakeGpuTarget:
    """This process, instrumented with one fake-NVML GPU, served by prometheus_client."""

    def __init__(self) -> None:
        self.port = free_port()

    def start(self) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from prometheus_client import CollectorRegistry, start_http_server

        from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
        from hf_eco2ai import energy_monitor as monitor_module
        from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
        from hf_eco2ai.energy_monitor import EnergyMonitor
        from hf_eco2ai.sensors.nvml import NvmlSensor
        from tests.fakes.fake_nvml import FakeGpu, FakeNVML

        self.nvml = FakeNVML(
            [
                FakeGpu(
                    uuid=GPU_UUID,
                    power_w=240.0,
                    utilization=75,
                    memory_total=80 * 1024**3,
                    memory_used=12 * 1024**3,
                )
            ],
            real_time=True,  # its energy counter follows the clock (a frozen one is a fault)
        )

        def factory(config: CarbonConfig, local_rank: int = 0) -> EnergyMonitor:
            sensor = NvmlSensor.create(nvml=self.nvml, environ={})
            assert sensor is not None, "the fake NVML offered no GPU"
            return EnergyMonitor(
                config,
                sensors=[sensor],
                intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "config")),
            )

        self.monitor_module = monitor_module
        monitor_module.set_monitor_factory(factory)
        self.registry = CollectorRegistry()
        self.reader = PrometheusMetricReader(registry=self.registry)
        resource = Resource.create({"service.name": FAKE_SERVICE})
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.tracer_provider = TracerProvider(resource=resource)
        self.instrumentor = HFEco2AIInstrumentor()
        self.instrumentor.instrument(
            meter_provider=self.meter_provider,
            tracer_provider=self.tracer_provider,
            config=CarbonConfig(sample_interval=0.1),
        )
        self.httpd, _ = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    def tick(self) -> None:
        """Move the fake GPU clock with the wall clock, so its energy counter grows."""
        self.nvml.advance(0.2)

    def stop(self) -> None:
        for step in (
            self.httpd.shutdown,
            self.httpd.server_close,
            self.instrumentor.uninstrument,
            self.meter_provider.shutdown,
            self.tracer_provider.shutdown,
            lambda: self.monitor_module.set_monitor_factory(None),
        ):
            try:
                step()
            except Exception as exc:  # teardown goes on; the failure is printed
                print(f"fake-gpu teardown: {step}: {exc!r}")


@dataclass
class Stack:
    prometheus: Prometheus
    training: TrainingProcess
    fake_gpu: FakeGpuTarget
    started_at: float = field(default_factory=time.time)

    def log(self) -> str:
        return self.training.log() + "\n" + self.prometheus.log()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Training process + fake-GPU target, scraped every second by a real Prometheus."""
    binary = _prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus-e2e")
    training = TrainingProcess(workdir)
    fake_gpu = FakeGpuTarget()
    prometheus = Prometheus(
        binary,
        workdir,
        {
            "training": (f"127.0.0.1:{training.port}", {"service_name": SERVICE}),
            "fake-gpu": (f"127.0.0.1:{fake_gpu.port}", {"service_name": FAKE_SERVICE}),
        },
    )
    started: list[Callable[[], object]] = []
    try:
        fake_gpu.start()
        started.append(fake_gpu.stop)
        # Prometheus first: its first scrapes come ~5 s after start (target discovery is
        # batched), which the training process spends importing torch and transformers.
        prometheus.start()
        started.append(prometheus.stop)
        training.start()
        started.append(training.stop)
        s = Stack(prometheus, training, fake_gpu)

        def trained_and_scraped() -> bool:
            fake_gpu.tick()
            if training.proc is not None and training.proc.poll() is not None:
                pytest.fail(f"training exited early ({training.proc.returncode})\n{s.log()}")
            steps = prometheus.value('sum(hf_eco2ai_training_steps_total{job="training"})')
            return steps == STEPS

        _wait(trained_and_scraped, TRAIN_TIMEOUT_S, f"{STEPS} training steps in Prometheus", s.log)
        # A few more scrapes of both targets, so every rate() window holds several samples.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            fake_gpu.tick()
            time.sleep(0.2)
        yield s
    finally:
        for stop in reversed(started):
            stop()


# ---------------------------------------------------------------------------- helpers
def _series(stack: Stack, expr: str) -> list[dict[str, Any]]:
    result = stack.prometheus.query(expr)
    assert result, f"no data for {expr!r}\n{stack.log()}"
    return result


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


KNOWN_METHODS = {m.value for m in Method}


# ---------------------------------------------------------------------------- scraped data
def test_targets_are_up(stack: Stack) -> None:
    up = {s["metric"]["job"]: _value(s) for s in _series(stack, "up")}
    assert up == {"training": 1.0, "fake-gpu": 1.0}, up


def test_resource_is_in_target_info(stack: Stack) -> None:
    info = _series(stack, 'target_info{job="training"}')
    # The scrape label service_name wins; the resource's own value is kept as exported_*.
    assert {s["metric"].get("service_name") for s in info} == {SERVICE}
    assert {s["metric"].get("exported_service_name") for s in info} == {SERVICE}


def test_hw_energy_series_and_labels(stack: Stack) -> None:
    series = _series(stack, 'hw_energy_joules_total{job="training"}')
    by_type = {s["metric"]["hw_type"]: s for s in series}
    # No GPU here: the CPU (RAPL or TDP model) and the RAM model, each with positive energy.
    assert {"cpu", "memory"} <= set(by_type), sorted(by_type)
    for sample in series:
        labels = sample["metric"]
        assert labels["service_name"] == SERVICE
        assert labels["hw_id"], labels
        assert "hw_name" in labels, labels
        assert "hw_vendor" in labels, labels
        assert labels["hf_eco2ai_measurement_method"] in KNOWN_METHODS, labels
        assert labels["hf_eco2ai_rank"] == "0", labels
        assert labels["otel_scope_name"] == "hf_eco2ai", labels
        assert _value(sample) > 0, labels
    assert by_type["memory"]["metric"]["hf_eco2ai_measurement_method"] == "ram-model"
    assert by_type["cpu"]["metric"]["hf_eco2ai_measurement_method"] in {"rapl", "tdp-model"}


def test_hw_energy_grows_during_training(stack: Stack) -> None:
    increase = stack.prometheus.value('sum(increase(hw_energy_joules_total{job="training"}[1m]))')
    assert increase is not None
    assert increase > 0


def test_hw_power_series_and_labels(stack: Stack) -> None:
    series = _series(stack, 'hw_power_watts{job="training"}')
    assert {s["metric"]["hw_type"] for s in series} >= {"cpu", "memory"}
    for sample in series:
        assert sample["metric"]["hf_eco2ai_measurement_method"] in KNOWN_METHODS
        assert _value(sample) >= 0
    assert any(_value(s) > 0 for s in series)


def test_emissions_by_device_type(stack: Stack) -> None:
    series = _series(stack, 'hf_eco2ai_emissions_grams_total{job="training"}')
    assert {s["metric"]["hw_type"] for s in series} >= {"cpu", "memory"}
    assert all(_value(s) > 0 for s in series)
    # emissions = energy (PUE 1) x intensity, so g/J is the zone's intensity / 3.6e6
    grams = stack.prometheus.value('sum(hf_eco2ai_emissions_grams_total{job="training"})')
    joules = stack.prometheus.value('sum(hf_eco2ai_energy_joules_total{job="training"})')
    intensity = stack.prometheus.value(
        'max(hf_eco2ai_carbon_intensity_grams_per_kW_h{job="training"})'
    )
    assert grams is not None
    assert joules is not None
    assert intensity is not None
    assert grams == pytest.approx(joules * intensity / 3.6e6, rel=0.05)


def test_carbon_intensity_zone(stack: Stack) -> None:
    series = _series(stack, 'hf_eco2ai_carbon_intensity_grams_per_kW_h{job="training"}')
    assert {s["metric"]["hf_eco2ai_grid_zone"] for s in series} == {"FR"}
    assert all(_value(s) > 0 for s in series)


def test_training_counters(stack: Stack) -> None:
    assert stack.prometheus.value('sum(hf_eco2ai_training_samples_total{job="training"})') == (
        TRAIN_SIZE
    )
    tokens = stack.prometheus.value('sum(hf_eco2ai_training_tokens_total{job="training"})')
    assert tokens is not None
    assert tokens > 0


def test_fake_gpu_series(stack: Stack) -> None:
    energy = _series(stack, f'hw_energy_joules_total{{job="fake-gpu", hw_id="{GPU_UUID}"}}')
    labels = energy[0]["metric"]
    assert labels["hw_type"] == "gpu"
    assert labels["hf_eco2ai_measurement_method"] == "nvml-energy"
    util = _series(stack, f'hw_gpu_utilization{{job="fake-gpu", hw_id="{GPU_UUID}"}}')
    assert _value(util[0]) == pytest.approx(0.75)
    used = _series(stack, 'hw_gpu_memory_usage_bytes{job="fake-gpu"}')
    assert _value(used[0]) == 12 * 1024**3


# ---------------------------------------------------------------------------- registry names
@pytest.mark.parametrize("spec", METRICS, ids=lambda m: m.name)
def test_registry_prometheus_name_is_what_prometheus_stores(stack: Stack, spec: MetricSpec) -> None:
    """``MetricSpec.prometheus`` is the name opentelemetry-exporter-prometheus really renders."""
    result = stack.prometheus.query(f'count({{__name__="{spec.prometheus}"}})')
    assert result, (
        f"{spec.name}: no series named {spec.prometheus!r}; "
        f"names stored: {_stored_names(stack)}\n{stack.log()}"
    )


def _stored_names(stack: Stack) -> list[str]:
    body = _http_json(f"{stack.prometheus.url}/api/v1/label/__name__/values")
    return sorted(n for n in body["data"] if n.startswith(("hw_", "hf_eco2ai_")))


# ---------------------------------------------------------------------------- dashboards
@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref_id}"


def _walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def dashboard_queries() -> list[PanelQuery]:
    """Every Prometheus ``expr`` of the shipped dashboards (template variables included)."""
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in _walk_panels(board.get("panels", [])):
            for target in panel.get("targets", []):
                if "expr" in target:
                    queries.append(
                        PanelQuery(path.name, panel["title"], target["refId"], target["expr"])
                    )
        for var in board.get("templating", {}).get("list", []):
            query = var.get("query")
            if var.get("type") == "query" and isinstance(query, dict):
                queries.append(PanelQuery(path.name, f"${var['name']}", "var", query["query"]))
    return queries


_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


def grafana_to_promql(expr: str) -> str:
    """Substitute what Grafana substitutes: intervals, ranges, and "All" for every variable."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    expr = expr.replace("$__interval", "1s").replace("$__range", "1m")
    expr = re.sub(r"\$\{?(service|rank)\}?", ".*", expr)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
    return expr


def test_dashboards_have_queries() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20, queries
    assert any(q.ref_id == "var" for q in queries)


@pytest.mark.parametrize("query", dashboard_queries(), ids=str)
def test_dashboard_query_returns_data(stack: Stack, query: PanelQuery) -> None:
    expr = grafana_to_promql(query.expr)
    match = _LABEL_VALUES.match(expr)
    if match:  # a template variable: Grafana asks /api/v1/series; the selector must match
        series = stack.prometheus.query(match["selector"])
        values = {s["metric"].get(match["label"]) for s in series} - {None}
        assert values, f"{query}: variable has no values ({expr})\n{stack.log()}"
        return
    result = stack.prometheus.query(expr)
    assert result, f"{query}: no data for {expr!r}\nnames stored: {_stored_names(stack)}"
    assert any(s["value"][1] not in ("NaN", "+Inf", "-Inf") for s in result), (query, result)


# ---------------------------------------------------------------------------- docs picture
RENDER_ENV = "HF_ECO2AI_RENDER_DASHBOARD"
PICTURE_PANELS = (
    "Power by device",
    "Energy by device type (PUE applied)",
    "Emission rate by device type",
    "Energy per sample and per token (current run)",
    "Throughput",
    "GPU utilization",
)


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def test_render_dashboard_picture(stack: Stack) -> None:
    """Opt-in: draw the dashboard's time-series panels from this Prometheus (docs/img)."""
    out = os.environ.get(RENDER_ENV)
    if not out:
        pytest.skip(f"set {RENDER_ENV}=PATH.png to render the dashboard picture for the docs")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = json.loads((DASHBOARDS / "hf-eco2ai.json").read_text())
    panels = {p["title"]: p for p in _walk_panels(board["panels"])}
    end = time.time()
    fig, axes = plt.subplots(3, 2, figsize=(14, 10), constrained_layout=True)
    for ax, title in zip(axes.flat, PICTURE_PANELS, strict=True):
        panel = panels[title]
        for target in panel["targets"]:
            query = urllib.parse.urlencode(
                {
                    "query": grafana_to_promql(target["expr"]),
                    "start": stack.started_at,
                    "end": end,
                    "step": "1",
                }
            )
            body = _http_json(f"{stack.prometheus.url}/api/v1/query_range?{query}")
            for series in body["data"]["result"]:
                t = [float(v[0]) - stack.started_at for v in series["values"]]
                y = [float(v[1]) for v in series["values"]]
                ax.plot(t, y, label=_legend(target["legendFormat"], series["metric"]))
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(title)
        ax.set_xlabel("seconds since the stack started")
        ax.set_ylabel(unit.replace("suffix: ", "").replace("percentunit", "fraction"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(
        f"{board['title']}: tiny BERT on CPU (TDP and RAM models, {SERVICE}) "
        f"and one fake-NVML GPU ({FAKE_SERVICE}), from a real Prometheus"
    )
    fig.savefig(out, dpi=80)
    plt.close(fig)
    assert Path(out).stat().st_size > 10_000
