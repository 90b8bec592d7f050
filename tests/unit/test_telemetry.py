"""The telemetry room on its own: span ids, span emission from windows, instruments.

Real SDK providers with in-memory exporters and readers; no training.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import StatusCode

from hf_eco2ai import CarbonConfig
from hf_eco2ai.carbon.intensity import StaticIntensity
from hf_eco2ai.energy_ledger import Ledger
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.energy_windows import measure_window
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.ids import SystemRandomIdGenerator, use_private_ids
from hf_eco2ai.telemetry.metrics import EnergyMetrics, TrainingCounters
from hf_eco2ai.telemetry.session import TelemetrySession
from hf_eco2ai.telemetry.spans import end_span, open_span, record_error, window_attributes
from tests.conftest import FAKE_CPU, FAKE_GPU, FAKE_INTENSITY, ConstantSensor

S = 10**9


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


# ---------------------------------------------------------------------- ids
def test_private_ids_replace_only_the_sdk_default_of_our_tracer() -> None:
    provider, _ = _provider()
    ours = provider.get_tracer("hf_eco2ai-test-ids")
    theirs = provider.get_tracer("someone-else")
    assert use_private_ids(ours) is True
    assert isinstance(ours.id_generator, SystemRandomIdGenerator)  # type: ignore[attr-defined]
    assert type(theirs.id_generator) is RandomIdGenerator  # type: ignore[attr-defined]
    assert type(provider.id_generator) is RandomIdGenerator  # the user's provider untouched
    assert use_private_ids(ours) is True  # idempotent

    class Custom(RandomIdGenerator):  # e.g. OTEL_PYTHON_ID_GENERATOR=xray
        pass

    chosen = provider.get_tracer("chosen")
    chosen.id_generator = Custom()  # type: ignore[attr-defined]
    assert use_private_ids(chosen) is False
    assert type(chosen.id_generator) is Custom  # type: ignore[attr-defined]


def test_spans_of_a_private_tracer_never_touch_the_global_random() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("hf_eco2ai-test-rng")
    use_private_ids(tracer)
    random.seed(42)
    expected = [random.random() for _ in range(3)]
    random.seed(42)
    ids = set()
    for _ in range(50):
        span = tracer.start_span("x")
        span.end()
    ids = {s.context.trace_id for s in exporter.get_finished_spans()}
    assert len(ids) == 50
    assert [random.random() for _ in range(3)] == expected


def test_private_ids_are_unique_non_zero_and_a_forked_child_draws_its_own() -> None:
    import os

    from hf_eco2ai.telemetry.ids import BLOCK

    gen = SystemRandomIdGenerator()
    span_ids = [gen.generate_span_id() for _ in range(5 * BLOCK + 3)]  # several blocks
    trace_ids = [gen.generate_trace_id() for _ in range(5 * BLOCK + 3)]
    assert len(set(span_ids)) == len(span_ids) and all(0 < i < 2**64 for i in span_ids)
    assert len(set(trace_ids)) == len(trace_ids) and all(0 < i < 2**128 for i in trace_ids)
    assert any(i >= 2**63 for i in span_ids) and any(i >= 2**127 for i in trace_ids)
    if not hasattr(os, "fork"):
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: what it draws next must not be what the parent draws next
        os.close(read)
        os.write(write, f"{gen.generate_span_id()} {gen.generate_trace_id()}".encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = tuple(int(v) for v in pipe.read().split())
    os.waitpid(pid, 0)
    assert child != (gen.generate_span_id(), gen.generate_trace_id())


# ---------------------------------------------------------------------- spans
def _window(energy_per_s: float = 100.0) -> Any:
    ledger = Ledger([FAKE_GPU, FAKE_CPU], pue=1.5, history_size=10)
    ledger.record(0, [0.0, 0.0], [energy_per_s, 10.0], FAKE_INTENSITY)
    start = ledger.snapshot()
    ledger.record(2 * S, [2 * energy_per_s, 20.0], [energy_per_s, 10.0], FAKE_INTENSITY)
    return measure_window(start, 0, ledger.snapshot(), 2 * S)


def test_window_attributes_are_registered_and_say_their_scope() -> None:
    attrs = window_attributes(_window(), 1.5)
    assert attrs[A.ENERGY_JOULES] == pytest.approx((200 + 20) * 1.5)
    assert attrs[A.ENERGY_SCOPE] == "job"
    assert attrs[A.ENERGY_HOST_JOULES] == pytest.approx(attrs[A.ENERGY_JOULES])
    assert attrs[A.ENERGY_EXTRAPOLATED] is False
    assert attrs[A.energy_by_type("gpu")] == pytest.approx(300.0)
    assert A.ENERGY_GAP_SECONDS not in attrs  # only when a gap exists
    for key in attrs:
        assert A.lookup(key) is not None, key


def test_open_and_end_span_with_parent_error_and_a_past_end_time() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("t")
    snap = Ledger([], pue=1.0, history_size=10).snapshot()
    parent = open_span(tracer, "parent", None, {"a": 1}, snap, 0)
    child = open_span(tracer, "child", parent, {}, snap, 0)
    child.attrs["late"] = True
    end_span(child, _window(), 1.5, {"b": 2}, error=RuntimeError("boom"))
    end_span(parent, _window(), 1.5, end_time=123_000_000_000)
    child_span, parent_span = exporter.get_finished_spans()
    assert child_span.parent is not None
    assert child_span.parent.span_id == parent_span.context.span_id
    assert child_span.attributes["late"] is True and child_span.attributes["b"] == 2
    assert child_span.status.status_code is StatusCode.ERROR
    assert child_span.attributes["error.type"] == "RuntimeError"
    assert parent_span.end_time == 123_000_000_000
    assert parent_span.attributes["a"] == 1


def test_record_error_on_a_non_recording_span_does_nothing() -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    record_error(NonRecordingSpan(SpanContext(1, 1, False)), ValueError("x"))


# ---------------------------------------------------------------------- instruments
def test_instruments_report_for_the_live_session_and_nothing_after_close() -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    monitor = EnergyMonitor(
        CarbonConfig(sample_interval=0.05),
        sensors=[ConstantSensor([(FAKE_GPU, 200.0)])],
        intensity=StaticIntensity(FAKE_INTENSITY),
    )
    session = TelemetrySession(CarbonConfig(), meter_provider=meters, monitor=monitor)
    session.counters("demo").add(3, 24, 0)
    monitor.sampler.tick()

    def points(name: str) -> list[Any]:
        data = reader.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    (steps,) = points("hf_eco2ai.training.steps")
    assert steps.value == 3 and steps.attributes["hf_eco2ai.framework"] == "demo"
    (power,) = points("hw.power")
    assert power.value == 200.0 and power.attributes["hw.id"] == FAKE_GPU.hw_id
    assert "hf_eco2ai.rank" in power.attributes  # identity merged into the observation
    session.close()
    assert points("hw.power") == []


def test_a_failing_observation_is_contained_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def snapshot(self) -> Any:
            raise OSError("gone")

    metrics = EnergyMetrics(MeterProvider().get_meter("m"), lambda: Broken())  # type: ignore[arg-type, return-value]
    with caplog.at_level("WARNING", logger="hf_eco2ai.telemetry.metrics"):
        assert list(metrics.observe("hw_power")) == []
        assert list(metrics.observe("hw_power")) == []
    assert sum("collecting hw_power failed" in r.getMessage() for r in caplog.records) == 1


def test_training_counters_keep_the_ended_runs_energy() -> None:
    c = TrainingCounters("demo")
    c.start_run(10.0)
    c.add(1, 8, 0)
    assert c.run_energy_j is None
    c.finish_run(40.0)
    assert c.run_energy_j == 40.0
    c.start_run(50.0)
    assert c.run_energy_j is None and c.run_samples == 0
