"""End to end: ``opentelemetry-instrument python examples/train_hf.py`` → OTLP/gRPC → a receiver.

The subprocess trains the tiny BERT of ``examples/train_hf.py`` for one epoch under
auto-instrumentation (the ``hf_eco2ai`` entry point) and exports traces and metrics over
OTLP/gRPC to :class:`~tests.integration.otlp_receiver.OTLPReceiver`. The test decodes what
arrived: span names and parentage, energy/CO2 attributes, the resource's ``service.name``,
metric names, units, instrument kinds and values. A second run exports to a closed port and
must still train and exit 0: telemetry never breaks training.

Without a GPU or RAPL the devices are the CPU TDP model (``hw.type=cpu``) and the RAM model
(``hw.type=memory``), so every energy number here is modelled but strictly positive.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.integration.otlp_receiver import (
    OTLPReceiver,
    ReceivedMetric,
    ReceivedSpan,
    attributes,
    free_port,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "train_hf.py"
TIMEOUT_S = 120
SERVICE_NAME = "hf-eco2ai-e2e"
TRAIN_SIZE = 64
BATCH_SIZE = 8  # examples/train_hf.py's default per-device batch size

SUMMARY = "hf-eco2ai: transformers run used"

RUN = "transformers.trainer.train"
EPOCH = "transformers.trainer.epoch"
EVALUATE = "transformers.trainer.evaluate"


def _opentelemetry_instrument() -> Path:
    """The ``opentelemetry-instrument`` script next to this interpreter (the venv's)."""
    script = Path(sys.executable).parent / "opentelemetry-instrument"
    if not script.exists():
        pytest.skip(f"opentelemetry-instrument not found next to {sys.executable}")
    return script


def _other_instrumentations() -> str:
    """Every installed auto-instrumentation but ours, to disable (only hf_eco2ai is under test)."""
    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    return ",".join(sorted(names - {"hf_eco2ai"}))


def _env(endpoint: str) -> dict[str, str]:
    """The subprocess environment: inherited, minus any OTEL_* of the caller, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "OTEL_SERVICE_NAME": SERVICE_NAME,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_PYTHON_HF_ECO2AI_SAMPLE_INTERVAL": "0.1",
            "OTEL_PYTHON_HF_ECO2AI_COUNTRY": "FR",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": _other_instrumentations(),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _train(endpoint: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        str(_opentelemetry_instrument()),
        sys.executable,
        str(EXAMPLE),
        "--epochs",
        "1",
        "--train-size",
        str(TRAIN_SIZE),
    ]
    try:
        return subprocess.run(
            cmd,
            cwd=REPO,
            env=_env(endpoint),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"training under opentelemetry-instrument did not finish in {TIMEOUT_S} s\n"
            f"--- stderr ---\n{exc.stderr}"
        )


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit code {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
        f"--- stderr ---\n{proc.stderr[-8000:]}"
    )


@dataclass
class E2ERun:
    proc: subprocess.CompletedProcess[str]
    receiver: OTLPReceiver

    @property
    def log(self) -> str:
        return _describe(self.proc)

    def one_span(self, name: str) -> ReceivedSpan:
        spans = self.receiver.spans_named(name)
        assert len(spans) == 1, (
            f"expected one {name!r} span, got {len(spans)}; received "
            f"{sorted(s.name for s in self.receiver.spans())}\n{self.log}"
        )
        return spans[0]

    def metric(self, name: str) -> list[ReceivedMetric]:
        found = self.receiver.metrics_named(name)
        assert found, (
            f"metric {name!r} never arrived; received {sorted(self.receiver.metric_names())}\n"
            f"{self.log}"
        )
        return found


@pytest.fixture(scope="module")
def e2e() -> Iterator[E2ERun]:
    """One instrumented training run exporting to a live receiver (shared by the tests)."""
    with OTLPReceiver() as receiver:
        proc = _train(receiver.endpoint)
        run = E2ERun(proc, receiver)
        assert proc.returncode == 0, f"training failed under opentelemetry-instrument\n{run.log}"
        # The exporters flush at shutdown, so everything is here once the process has exited;
        # the short wait only covers a request still being handled by a server thread.
        receiver.wait_for(lambda r: bool(r.spans_named(RUN)), timeout=5)
        yield run


def _telemetry_errors(stderr: str) -> list[str]:
    """hf-eco2ai's own failure warnings and any traceback in the subprocess's stderr."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("Traceback")
        or (line.startswith("hf-eco2ai:") and ("could not" in line or "failed" in line))
    ]


# ---------------------------------------------------------------------- process
def test_run_logs_summary_and_no_telemetry_errors(e2e: E2ERun) -> None:
    assert SUMMARY in e2e.proc.stderr, e2e.log
    assert _telemetry_errors(e2e.proc.stderr) == [], e2e.log


# ---------------------------------------------------------------------- spans
def test_span_names_and_parentage(e2e: E2ERun) -> None:
    run = e2e.one_span(RUN)
    epoch = e2e.one_span(EPOCH)
    evals = e2e.receiver.spans_named(EVALUATE)
    assert len(evals) >= 1, f"no {EVALUATE!r} span\n{e2e.log}"

    assert run.parent_span_id == b"", "the run span must be a root span"
    assert epoch.trace_id == run.trace_id
    assert epoch.parent_span_id == run.span_id
    for ev in evals:
        assert ev.trace_id == run.trace_id
        # With eval_strategy="epoch" the evaluation runs after the epoch span ended, so its
        # parent is the run; an evaluation inside an open epoch would be the epoch's child.
        assert ev.parent_span_id in (run.span_id, epoch.span_id)


def test_run_span_energy_attributes(e2e: E2ERun) -> None:
    attrs = e2e.one_span(RUN).attributes
    assert attrs.get("hf_eco2ai.energy.joules", 0) > 0, attrs
    assert attrs.get("hf_eco2ai.emissions.grams", 0) > 0, attrs
    assert isinstance(attrs.get("hf_eco2ai.energy.method"), str), attrs
    assert attrs["hf_eco2ai.energy.method"], attrs
    assert attrs.get("hf_eco2ai.grid.zone") == "FR", attrs
    assert attrs.get("hf_eco2ai.framework") == "transformers", attrs
    assert attrs.get("hf_eco2ai.global_step") == TRAIN_SIZE // BATCH_SIZE, attrs
    assert attrs.get("hf_eco2ai.training.samples") == TRAIN_SIZE, attrs
    # Modelled devices on a CPU-only machine still report a per-type breakdown.
    assert attrs.get("hf_eco2ai.energy.cpu.joules", 0) > 0, attrs


def test_epoch_and_evaluate_spans_carry_energy(e2e: E2ERun) -> None:
    run_joules = e2e.one_span(RUN).attributes["hf_eco2ai.energy.joules"]
    for span in [e2e.one_span(EPOCH), *e2e.receiver.spans_named(EVALUATE)]:
        attrs = span.attributes
        assert attrs.get("hf_eco2ai.energy.joules", 0) > 0, (span.name, attrs)
        assert attrs["hf_eco2ai.energy.joules"] <= run_joules, (span.name, attrs)
        assert attrs.get("hf_eco2ai.emissions.grams", 0) > 0, (span.name, attrs)


def test_resource_service_name(e2e: E2ERun) -> None:
    for span in e2e.receiver.spans():
        assert span.resource.get("service.name") == SERVICE_NAME, span.resource
    for metric in e2e.receiver.metrics():
        assert metric.resource.get("service.name") == SERVICE_NAME, metric.resource
    assert {s.scope for s in e2e.receiver.spans() if s.name.startswith("transformers.")} == {
        "hf_eco2ai"
    }


# ---------------------------------------------------------------------- metrics
EXPECTED_UNITS = {
    "hw.energy": "J",
    "hw.power": "W",
    "hf_eco2ai.energy": "J",
    "hf_eco2ai.emissions": "g",
    "hf_eco2ai.carbon_intensity": "g/kW.h",
    "hf_eco2ai.training.steps": "{step}",
    "hf_eco2ai.training.samples": "{sample}",
}


@pytest.mark.parametrize(("name", "unit"), sorted(EXPECTED_UNITS.items()))
def test_metric_name_and_unit(e2e: E2ERun, name: str, unit: str) -> None:
    units = {m.unit for m in e2e.metric(name)}
    assert units == {unit}, f"{name}: units {units}"
    assert {m.scope for m in e2e.metric(name)} == {"hf_eco2ai"}


def test_hw_energy_is_monotonic_cumulative_sum(e2e: E2ERun) -> None:
    metrics = e2e.metric("hw.energy")
    for m in metrics:
        assert m.kind == "sum", m.metric
        assert m.metric.sum.is_monotonic
        assert m.metric.sum.aggregation_temporality == (
            AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        )
    types = {attributes(p.attributes).get("hw.type") for m in metrics for p in m.points()}
    assert "cpu" in types, types
    last = {}
    for m in metrics:  # per device, the cumulative value never goes down and ends > 0
        for p in m.points():
            key = attributes(p.attributes).get("hw.id")
            assert p.as_double >= last.get(key, 0.0), (key, p)
            last[key] = p.as_double
    assert all(v > 0 for v in last.values()), last


def test_hw_power_is_gauge(e2e: E2ERun) -> None:
    metrics = e2e.metric("hw.power")
    assert {m.kind for m in metrics} == {"gauge"}
    points = [p for m in metrics for p in m.points()]
    assert points
    assert all(p.as_double >= 0 for p in points)
    assert any(p.as_double > 0 for p in points)
    for p in points:
        attrs = attributes(p.attributes)
        assert attrs.get("hw.type") in {"cpu", "memory", "gpu"}, attrs
        assert attrs.get("hf_eco2ai.measurement.method"), attrs


def test_energy_and_emissions_counters(e2e: E2ERun) -> None:
    for name in ("hf_eco2ai.energy", "hf_eco2ai.emissions"):
        metrics = e2e.metric(name)
        assert {m.kind for m in metrics} == {"sum"}
        assert all(m.metric.sum.is_monotonic for m in metrics)
        final = max(p.as_double for m in metrics for p in m.points())
        assert final > 0, name


def test_carbon_intensity_zone(e2e: E2ERun) -> None:
    metrics = e2e.metric("hf_eco2ai.carbon_intensity")
    assert {m.kind for m in metrics} == {"gauge"}
    points = [p for m in metrics for p in m.points()]
    zones = {attributes(p.attributes).get("hf_eco2ai.grid.zone") for p in points}
    assert zones == {"FR"}, zones
    assert all(p.as_double > 0 for p in points)


def test_training_steps_match_run(e2e: E2ERun) -> None:
    steps = e2e.one_span(RUN).attributes["hf_eco2ai.global_step"]
    metrics = e2e.metric("hf_eco2ai.training.steps")
    assert {m.kind for m in metrics} == {"sum"}
    points = [p for m in metrics for p in m.points()]
    assert {attributes(p.attributes).get("hf_eco2ai.framework") for p in points} == {"transformers"}
    final = max(points, key=lambda p: p.time_unix_nano).as_int
    assert final == steps, f"last exported hf_eco2ai.training.steps {final} != run steps {steps}"


# ---------------------------------------------------------------------- no collector
def test_training_survives_unreachable_collector() -> None:
    """Nothing listens on the endpoint: training still completes and exits 0."""
    proc = _train(f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, f"training failed with no collector listening\n{_describe(proc)}"
    # The run was measured and summarised even though every export failed.
    assert SUMMARY in proc.stderr, _describe(proc)
    assert _telemetry_errors(proc.stderr) == [], _describe(proc)
