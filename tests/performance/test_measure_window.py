"""Cost of one ``hf_eco2ai.measure()`` window on the calling thread while instrumented.

Budgets are reported, not asserted (timings on a shared machine are noise-prone): issue 16 asks
≤ 20 µs per window. docs/benchmarks.md shows the table from::

    .venv/bin/python -m pytest tests/performance/test_measure_window.py -q --benchmark-only \\
        --benchmark-columns=min,median,iqr,mean,rounds

One window is ``with hf_eco2ai.measure("w"): pass`` (two ledger snapshots, the span started
and made current, the context restored; when the span records, its end — the window's energy
per device, the ``hf_eco2ai.*`` attributes, ``span.end`` — is handed to the sampler thread).
Modes (the tracer provider given to ``instrument()``):

* ``noop-provider``: OpenTelemetry's no-op provider: our own work only;
* ``not-sampled``: an SDK provider whose sampler drops every span: our work plus the SDK's
  sampling decision;
* ``recorded``: an SDK provider with a ``BatchSpanProcessor`` (its exporter drops everything):
  what a window costs the calling thread when its span is kept;
* ``recorded-on-caller``: the same, with the sampler thread refusing the hand-off, so the
  calling thread ends the window itself (as ``stop()`` and windows without ``instrument()``
  do): the whole work, of which ``recorded`` keeps only the part that cannot move;
* ``sdk-span-only``: the same provider, a bare ``start_as_current_span`` without hf-eco2ai:
  what the SDK itself charges for any span (start and end, on the calling thread).

Every test asserts what the window did (its result, its span), never how long it took.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import hf_eco2ai
from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.sampling_thread import Sampler
from tests.conftest import fake_monitor

BUDGET_US = 20.0
FAST = {"max_time": 0.4, "min_rounds": 2000, "warmup": True, "warmup_iterations": 200}
MODES = ("noop-provider", "not-sampled", "recorded", "recorded-on-caller", "sdk-span-only")


class CountingExporter(SpanExporter):
    """Drops spans, counting them by name."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.names[span.name] = self.names.get(span.name, 0) + 1
        return SpanExportResult.SUCCESS


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, CountingExporter]]:
    """Instrumented with fake devices: ``(mode, tracer provider, exporter)``."""
    name = request.param
    exporter = CountingExporter()
    provider: Any
    if name == "noop-provider":
        provider = trace.NoOpTracerProvider()
    elif name == "not-sampled":
        provider = TracerProvider(sampler=ALWAYS_OFF)
    else:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    monitor_module.set_monitor_factory(fake_monitor)
    inst = HFEco2AIInstrumentor()
    config = CarbonConfig(sample_interval=1.0, write_report=False)
    inst.instrument(tracer_provider=provider, meter_provider=MeterProvider(), config=config)
    try:
        with pytest.MonkeyPatch.context() as patch:
            if name == "recorded-on-caller":
                patch.setattr(Sampler, "call_soon", lambda self, job: False)
            yield name, provider, exporter
    finally:
        inst.uninstrument()
        monitor_module.set_monitor_factory(None)
        if isinstance(provider, TracerProvider):
            provider.shutdown()


@pytest.mark.benchmark(group="measure-window", **FAST)
def test_measure_window(benchmark: Any, mode: Any) -> None:
    """One ``with measure(...)`` block around nothing."""
    name, provider, exporter = mode
    last: list[Any] = []

    if name == "sdk-span-only":
        tracer = provider.get_tracer("baseline")

        def window() -> None:
            with tracer.start_as_current_span("w"):
                pass

    else:

        def window() -> None:
            with hf_eco2ai.measure("w") as m:
                pass
            last.append(m)

    benchmark.extra_info["mode"] = name
    benchmark.extra_info["budget_us"] = BUDGET_US
    benchmark(window)
    assert hf_eco2ai.flush()  # window spans still being ended on the sampler thread
    if isinstance(provider, TracerProvider):
        provider.force_flush()
    if name == "sdk-span-only":
        assert exporter.names.get("w", 0) > 0
        return
    result = last[-1].result
    assert result is not None
    assert set(result.devices) == {"GPU-fake-0", "cpu", "memory"}
    assert result.energy_j >= 0.0 and result.duration_s >= 0.0
    assert (exporter.names.get("w", 0) > 0) == name.startswith("recorded")
    assert trace.get_current_span() is trace.INVALID_SPAN
