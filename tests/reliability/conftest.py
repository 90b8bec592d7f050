"""Shared pieces of the reliability suite: in-memory telemetry, instrumented runs, reports.

The fake devices of ``tests/conftest.py`` (``fake_devices``: GPU 200 W with an energy counter,
CPU 50 W and RAM 5 W modelled) draw a constant 255 W, so every energy figure of a run is known
exactly: ``255 W × duration``. A fault that corrupts accounting shows as a departure from it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

FAKE_POWER_W = 255.0
"""Total draw of the ``fake_devices`` (GPU 200 W + CPU 50 W + RAM 5 W)."""

RUN = "transformers.trainer.train"


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run reports under the fallback location (`./hf-eco2ai-runs` when output_dir is unset and
    the framework names no directory) land in a temp dir."""
    monkeypatch.chdir(tmp_path)


@dataclass
class Telemetry:
    """SDK providers that keep everything in memory."""

    tracer_provider: TracerProvider
    spans: InMemorySpanExporter
    meter_provider: MeterProvider
    metrics: InMemoryMetricReader

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        return [
            p
            for rm in (data.resource_metrics if data else [])
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == metric
            for p in m.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(tracer_provider, spans, meter_provider, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@contextmanager
def instrumented(telemetry: Telemetry, config: CarbonConfig) -> Iterator[HFEco2AIInstrumentor]:
    """``HFEco2AIInstrumentor`` instrumented on ``telemetry``'s providers for the block."""
    instrumentor = HFEco2AIInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        config=config,
    )
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()


def fast_config(output_dir: str | os.PathLike[str] | None = "runs", **changes: Any) -> CarbonConfig:
    """A config that samples often and writes reports under ``output_dir`` (None: the
    framework's own output location)."""
    values: dict[str, Any] = {
        "sample_interval": 0.05,
        "output_dir": None if output_dir is None else str(output_dir),
    }
    values.update(changes)
    return CarbonConfig(**values)


def reports(output_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every report.json under ``output_dir``, oldest first."""
    paths = sorted(Path(output_dir).glob("*/report.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def one_report(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    found = reports(output_dir)
    assert len(found) == 1, f"expected one run report under {output_dir}, found {len(found)}"
    return found[0]


def assert_energy_is_power_times_duration(report: dict[str, Any], rel: float = 0.05) -> None:
    """The report's total is the fake devices' 255 W over the run's own duration."""
    duration = report["run"]["duration_s"]
    energy = report["totals"]["energy_j"]
    assert duration > 0, report["run"]
    assert energy == pytest.approx(FAKE_POWER_W * duration, rel=rel), (energy, duration)


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hf-eco2ai-sampler" and t.is_alive()]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
