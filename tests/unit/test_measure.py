"""``hf_eco2ai.measure()``: windows for any code, instrumented or not.

Energies are exact: the devices draw constant power on a fake clock that also drives the
sampler and the window ends, and the sampler ticks only when a test says so.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import hf_eco2ai
from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.integrations import measure as measure_module
from hf_eco2ai.integrations.measure import DEVICE_IDS, DEVICE_JOULES, DEVICE_TYPES
from hf_eco2ai.sampling_thread import Sampler
from hf_eco2ai.sensors.base import HwType
from tests.fakes.synthetic import FakeClock, TraceSensor

GPU_W, CPU_W = 100.0, 20.0
INTENSITY = 500.0  # g/kWh
TOTAL_W = GPU_W + CPU_W


class Devices:
    """A monitor factory: one GPU (100 W, energy counter) and one CPU (20 W, RAPL) on a fake
    clock; the sampler ticks only at start, at stop and when :meth:`tick` is called."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.built: list[EnergyMonitor] = []
        self.configs: list[CarbonConfig] = []

    def __call__(self, config: CarbonConfig, local_rank: int = 0) -> EnergyMonitor:
        sensors = [
            TraceSensor(self.clock, lambda t: GPU_W, hw_id="gpu0"),
            TraceSensor(self.clock, lambda t: CPU_W, hw_type=HwType.CPU, hw_id="cpu"),
        ]
        intensity = StaticIntensity(CarbonIntensity(INTENSITY, "XX", "config"))
        monitor = EnergyMonitor(config, sensors=sensors, intensity=intensity)
        monitor.sampler = Sampler(
            monitor.sensors, monitor.ledger, interval_s=3600.0, intensity=intensity,
            clock=self.clock,
        )  # fmt: skip
        self.built.append(monitor)
        self.configs.append(config)
        return monitor

    def tick(self) -> None:
        shared = monitor_module.shared_monitor()
        assert shared is not None
        shared.sampler.tick()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(measure_module, "time", SimpleNamespace(monotonic_ns=fake))
    return fake


@pytest.fixture
def devices(clock: FakeClock) -> Iterator[Devices]:
    factory = Devices(clock)
    monitor_module.set_monitor_factory(factory)
    try:
        yield factory
    finally:
        monitor_module.set_monitor_factory(None)
        monitor_module.close_shared_monitor()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def instrumented(devices: Devices, provider: TracerProvider, tmp_path: Any) -> Iterator[Devices]:
    inst = HFEco2AIInstrumentor()
    config = CarbonConfig(output_dir=str(tmp_path), write_report=False)
    inst.instrument(tracer_provider=provider, meter_provider=MeterProvider(), config=config)
    try:
        yield devices
    finally:
        inst.uninstrument()


def spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    """The finished spans named ``name``, once the windows handed to the sampler thread are
    ended (``hf_eco2ai.flush()``, the documented step before reading an exporter)."""
    assert hf_eco2ai.flush()
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = spans(exporter, name)
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes[key]


# ---------------------------------------------------------------------- while instrumented
def test_window_energy_emissions_devices_and_span(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    with hf_eco2ai.measure("tokenize", {"data.split": "train"}, batch_size=8) as m:
        clock.advance(2.0)
        instrumented.tick()  # a sampler tick inside the window
        clock.advance(1.0)  # the end is extrapolated with the power then in force
    assert m.duration_s == pytest.approx(3.0)
    assert m.energy_j == pytest.approx(TOTAL_W * 3.0)
    assert m.emissions_g == pytest.approx(TOTAL_W * 3.0 / 3.6e6 * INTENSITY)
    assert dict(m.devices) == pytest.approx({"gpu0": GPU_W * 3.0, "cpu": CPU_W * 3.0})
    result = m.result
    assert result is not None
    assert result.device_types == {"gpu0": "gpu", "cpu": "cpu"}
    assert result.energy_low_j < result.energy_j < result.energy_high_j
    assert result.extrapolated is False
    assert result.energy_by_type == pytest.approx({"gpu": 300.0, "cpu": 60.0})

    span = one(exporter, "tokenize")
    assert span.kind is SpanKind.INTERNAL
    assert attr(span, "hf_eco2ai.energy.joules") == pytest.approx(360.0)
    assert attr(span, "hf_eco2ai.energy.joules.low") == pytest.approx(result.energy_low_j)
    assert attr(span, "hf_eco2ai.energy.joules.high") == pytest.approx(result.energy_high_j)
    assert attr(span, "hf_eco2ai.emissions.grams") == pytest.approx(result.emissions_g)
    assert attr(span, "hf_eco2ai.duration.seconds") == pytest.approx(3.0)
    assert attr(span, "hf_eco2ai.energy.gpu.joules") == pytest.approx(300.0)
    assert list(attr(span, DEVICE_IDS)) == ["gpu0", "cpu"]
    assert list(attr(span, DEVICE_TYPES)) == ["gpu", "cpu"]
    assert list(attr(span, DEVICE_JOULES)) == pytest.approx([300.0, 60.0])
    assert attr(span, "data.split") == "train"
    assert attr(span, "batch_size") == 8
    assert attr(span, "hf_eco2ai.rank") == 0  # the session's identity
    assert span.status.status_code is StatusCode.UNSET
    # the instrumentor's monitor was shared, not a second one built
    assert len(instrumented.built) == 1


def test_nested_windows_nest_spans_and_energies(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    tracer = provider.get_tracer("user")
    with (
        tracer.start_as_current_span("user.request") as outer_user,
        hf_eco2ai.measure("outer") as outer,
    ):
        clock.advance(1.0)
        with hf_eco2ai.measure("inner") as inner:
            clock.advance(2.0)
            with tracer.start_as_current_span("user.work"):
                pass
        clock.advance(0.5)
    assert inner.energy_j == pytest.approx(TOTAL_W * 2.0)
    assert outer.energy_j == pytest.approx(TOTAL_W * 3.5)
    outer_span, inner_span = one(exporter, "outer"), one(exporter, "inner")
    work = one(exporter, "user.work")
    assert outer_span.parent is not None and inner_span.parent is not None
    assert outer_span.parent.span_id == outer_user.get_span_context().span_id
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert work.parent is not None and work.parent.span_id == inner_span.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # context restored


def test_overlapping_start_stop_windows_do_not_touch_the_context(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    tracer = provider.get_tracer("user")
    with tracer.start_as_current_span("user.request") as request:
        a = hf_eco2ai.measure("a").start()
        clock.advance(1.0)
        b = hf_eco2ai.measure("b").start()
        clock.advance(1.0)
        ra = a.stop()
        clock.advance(1.5)
        rb = b.stop()
        assert trace.get_current_span() is request
    assert ra is not None and rb is not None
    assert ra.energy_j == pytest.approx(TOTAL_W * 2.0)
    assert rb.energy_j == pytest.approx(TOTAL_W * 2.5)
    for name in ("a", "b"):
        parent = one(exporter, name).parent
        assert parent is not None and parent.span_id == request.get_span_context().span_id
    assert b.stop() is None  # already stopped


def test_decorator_measures_each_call_in_a_fresh_window(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    @hf_eco2ai.measure("eval", split="test")
    def evaluate(seconds: float, *, tag: str) -> str:
        """Docstring kept."""
        clock.advance(seconds)
        return tag

    assert evaluate(1.0, tag="x") == "x"
    first = evaluate.__wrapped__  # type: ignore[attr-defined]
    assert evaluate.__doc__ == "Docstring kept." and first is not None
    assert evaluate.window.energy_j == pytest.approx(TOTAL_W * 1.0)  # type: ignore[attr-defined]
    assert evaluate(2.0, tag="y") == "y"
    assert evaluate.window.energy_j == pytest.approx(TOTAL_W * 2.0)  # type: ignore[attr-defined]
    energies = sorted(attr(s, "hf_eco2ai.energy.joules") for s in spans(exporter, "eval"))
    assert energies == pytest.approx([TOTAL_W * 1.0, TOTAL_W * 2.0])
    assert all(attr(s, "split") == "test" for s in spans(exporter, "eval"))


def test_decorator_recursion_gets_a_window_per_call(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    @hf_eco2ai.measure("fib")
    def depth(n: int) -> int:
        clock.advance(1.0)
        return 0 if n == 0 else 1 + depth(n - 1)

    assert depth(2) == 2
    found = spans(exporter, "fib")
    assert len(found) == 3
    energies = sorted(attr(s, "hf_eco2ai.energy.joules") for s in found)
    assert energies == pytest.approx([TOTAL_W * 1.0, TOTAL_W * 2.0, TOTAL_W * 3.0])
    roots = [s for s in found if s.parent is None]
    assert len(roots) == 1


def test_async_tasks_overlapping_windows_each_measure_their_own(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    tracer = provider.get_tracer("user")
    order: list[str] = []

    @hf_eco2ai.measure("request")
    async def handle(name: str, entered: asyncio.Event, release: asyncio.Event) -> str:
        order.append(f"enter {name}")
        entered.set()
        await release.wait()
        with tracer.start_as_current_span(f"work.{name}"):
            pass
        order.append(f"exit {name}")
        return name

    async def main() -> list[str]:
        a_in, b_in, a_go, b_go = (asyncio.Event() for _ in range(4))
        with tracer.start_as_current_span("task.a"):
            ta = asyncio.create_task(handle("a", a_in, a_go))
        await a_in.wait()
        clock.advance(1.0)
        with tracer.start_as_current_span("task.b"):
            tb = asyncio.create_task(handle("b", b_in, b_go))
        await b_in.wait()
        clock.advance(1.0)
        a_go.set()
        await ta
        clock.advance(2.0)
        b_go.set()
        await tb
        return [ta.result(), tb.result()]

    assert asyncio.run(main()) == ["a", "b"]
    assert order == ["enter a", "enter b", "exit a", "exit b"]
    by_parent = {}
    for span in spans(exporter, "request"):
        assert span.parent is not None
        by_parent[span.parent.span_id] = span
    for name, seconds in (("a", 2.0), ("b", 3.0)):
        task = one(exporter, f"task.{name}")
        window = by_parent[task.context.span_id]
        assert attr(window, "hf_eco2ai.energy.joules") == pytest.approx(TOTAL_W * seconds)
        work = one(exporter, f"work.{name}")
        assert work.parent is not None and work.parent.span_id == window.context.span_id


def test_threads_each_get_their_own_window(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    tracer = provider.get_tracer("user")
    entered = threading.Barrier(3)
    advanced = threading.Event()
    results: dict[str, Any] = {}

    def worker(name: str) -> None:
        with (
            tracer.start_as_current_span(f"thread.{name}"),
            hf_eco2ai.measure("job", worker=name) as m,
        ):
            entered.wait(10)
            assert advanced.wait(10)
        results[name] = m

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    entered.wait(10)  # both windows open
    clock.advance(2.0)
    advanced.set()
    for t in threads:
        t.join(10)
    assert set(results) == {"a", "b"}
    for name in ("a", "b"):
        assert results[name].energy_j == pytest.approx(TOTAL_W * 2.0)
        window = next(s for s in spans(exporter, "job") if attr(s, "worker") == name)
        parent = one(exporter, f"thread.{name}")
        assert window.parent is not None
        assert window.parent.span_id == parent.context.span_id


def test_error_is_recorded_and_propagates(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    class Boom(RuntimeError):
        pass

    window = hf_eco2ai.measure("step")

    def failing_step() -> None:
        with window:
            clock.advance(1.0)
            raise Boom("bad batch")

    with pytest.raises(Boom, match="bad batch"):
        failing_step()
    m = window
    assert m.energy_j == pytest.approx(TOTAL_W)
    span = one(exporter, "step")
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, "error.type").endswith("Boom")
    assert [e.name for e in span.events] == ["exception"]


def test_async_with_and_async_decorator_errors(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    @hf_eco2ai.measure("fails")
    async def fails() -> None:
        clock.advance(1.0)
        raise KeyError("k")

    async def main() -> float:
        async with hf_eco2ai.measure("ok") as m:
            clock.advance(0.5)
        with pytest.raises(KeyError):
            await fails()
        return m.energy_j

    assert asyncio.run(main()) == pytest.approx(TOTAL_W * 0.5)
    assert one(exporter, "fails").status.status_code is StatusCode.ERROR
    assert one(exporter, "ok").status.status_code is StatusCode.UNSET


def test_reentering_an_open_window_is_refused_and_reuse_after_stop_works(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    window = hf_eco2ai.measure("w")
    with window:
        clock.advance(1.0)
        with pytest.raises(RuntimeError, match="already open"):
            window.start()
    first = window.result
    with window:
        clock.advance(2.0)
    assert first is not None and first.energy_j == pytest.approx(TOTAL_W)
    assert window.energy_j == pytest.approx(TOTAL_W * 2.0)
    assert len(spans(exporter, "w")) == 2


# ---------------------------------------------------------------------- without instrument()
def test_without_instrument_the_window_runs_its_own_measurement(
    devices: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    config = CarbonConfig(pue=1.5, write_report=False)
    assert monitor_module.shared_monitor() is None
    with hf_eco2ai.measure("standalone", config=config, tracer_provider=provider) as outer:
        shared = monitor_module.shared_monitor()
        assert shared is not None and shared.running
        clock.advance(1.0)
        with hf_eco2ai.measure("nested", config=config, tracer_provider=provider) as inner:
            clock.advance(1.0)
        assert monitor_module.shared_monitor() is shared  # still running for the outer one
    assert monitor_module.shared_monitor() is None  # stopped and released at the end
    assert len(devices.built) == 1 and devices.configs[0] is config
    assert devices.built[0].running is False
    assert outer.energy_j == pytest.approx(TOTAL_W * 2.0 * 1.5)
    assert inner.energy_j == pytest.approx(TOTAL_W * 1.0 * 1.5)
    assert sum(outer.devices.values()) * 1.5 == pytest.approx(outer.energy_j)
    assert outer.result is not None and outer.result.extrapolated is False  # ticked at both ends
    span = one(exporter, "standalone")
    assert attr(span, "hf_eco2ai.pue") == 1.5
    assert attr(span, "hf_eco2ai.rank") == 0  # identity from the environment
    nested = one(exporter, "nested")
    assert nested.parent is not None and nested.parent.span_id == span.context.span_id


def test_without_instrument_the_global_provider_is_used(
    devices: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    real_get_tracer = trace.get_tracer

    def get_tracer(name: str, version: Any = None, tp: Any = None, **kw: Any) -> Any:
        return real_get_tracer(name, version, tp or provider, **kw)

    monkeypatch.setattr(measure_module.trace, "get_tracer", get_tracer)
    with hf_eco2ai.measure("global", config=CarbonConfig(write_report=False)):
        clock.advance(1.0)
    assert attr(one(exporter, "global"), "hf_eco2ai.energy.joules") == pytest.approx(TOTAL_W)


# ---------------------------------------------------------------------- containment
def test_a_failing_monitor_never_breaks_the_code_and_is_logged_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, provider: Any,
    exporter: InMemorySpanExporter,
) -> None:  # fmt: skip
    def broken(config: CarbonConfig, local_rank: int = 0) -> EnergyMonitor:
        raise OSError("no sensors today")

    monitor_module.set_monitor_factory(broken)
    try:
        with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
            for _ in range(3):
                with hf_eco2ai.measure("x", tracer_provider=provider) as m:
                    clock.advance(1.0)
    finally:
        monitor_module.set_monitor_factory(None)
    assert math.isnan(m.energy_j) and math.isnan(m.emissions_g)
    assert m.duration_s == pytest.approx(1.0)
    assert dict(m.devices) == {}
    warnings = [r for r in caplog.records if "could not start" in r.getMessage()]
    assert len(warnings) == 1
    assert "OSError" in warnings[0].getMessage()
    assert exporter.get_finished_spans() == ()


def test_a_failing_snapshot_at_the_end_ends_the_span_and_releases(
    devices: Devices, clock: FakeClock, provider: Any, exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    def snapshot() -> Any:
        raise RuntimeError("ledger gone")

    with (
        caplog.at_level(logging.WARNING, logger="hf_eco2ai"),
        hf_eco2ai.measure("x", config=CarbonConfig(), tracer_provider=provider) as m,
    ):
        shared = monitor_module.shared_monitor()
        assert shared is not None
        shared.snapshot = snapshot  # type: ignore[method-assign]
        clock.advance(1.0)
    assert math.isnan(m.energy_j)
    assert monitor_module.shared_monitor() is None  # released despite the failure
    assert len(exporter.get_finished_spans()) == 1  # the span still ended
    assert any("could not end" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------- bad input
def test_bad_use_fails_at_the_call_site() -> None:
    with pytest.raises(TypeError, match="non-empty span name"):
        hf_eco2ai.measure("")
    with pytest.raises(TypeError, match="generator function"):

        @hf_eco2ai.measure("gen")
        def gen() -> Iterator[int]:
            yield 1


def test_attribute_values_are_made_valid() -> None:
    window = hf_eco2ai.measure(
        "x", obj=object, names=("a", "b"), sizes=[1, 2.5], flag=True, ratio=0.5
    )
    attrs = dict(window.attributes)
    assert attrs["obj"] == str(object)
    assert attrs["names"] == ["a", "b"]
    assert attrs["sizes"] == [1.0, 2.5]
    assert attrs["flag"] is True and attrs["ratio"] == 0.5


def test_values_before_the_first_window_ends_are_nan() -> None:
    window = hf_eco2ai.measure("x")
    assert math.isnan(window.energy_j) and math.isnan(window.duration_s)
    assert window.result is None and not window.open
    assert "closed" in repr(window)


def test_unrecorded_span_numbers_are_computed_on_first_use(
    instrumented: Devices, clock: FakeClock
) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    dropped = TracerProvider(sampler=ALWAYS_OFF)
    with hf_eco2ai.measure("x", tracer_provider=dropped) as m:
        clock.advance(1.0)
    assert m._pending is not None and m._result is None  # nothing computed at the end
    clock.advance(5.0)  # later reads still see the window's own ends
    assert m.energy_j == pytest.approx(TOTAL_W)
    assert m.devices == pytest.approx({"gpu0": GPU_W, "cpu": CPU_W})
    assert m._pending is None
    dropped.shutdown()


# ---------------------------------------------------------------------- a real GPU
@pytest.mark.gpu
def test_real_gpu_window_standalone(provider: Any, exporter: InMemorySpanExporter) -> None:
    """Without instrument(): the window discovers the GPU, reads it at both ends (NVML)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import time

    assert monitor_module.shared_monitor() is None
    x = torch.randn(4096, 4096, device="cuda")
    with hf_eco2ai.measure(
        "gpu.matmul", config=CarbonConfig(sample_interval=0.1, write_report=False),
        tracer_provider=provider,
    ) as m:  # fmt: skip
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            x = (x @ x).tanh_()
        torch.cuda.synchronize()
    result = m.result
    assert result is not None
    gpus = {k: j for k, j in result.devices.items() if result.device_types[k] == "gpu"}
    assert gpus, result
    assert all(k.startswith(("GPU-", "MIG-")) for k in gpus)
    assert all(j > 0 for j in gpus.values()), gpus  # never a silent 0 J
    assert 2.0 <= result.duration_s < 30.0
    assert result.energy_by_type["gpu"] > 2.0 * 10.0  # at least ~10 W over two busy seconds
    assert "nvml" in result.method
    assert monitor_module.shared_monitor() is None
    span = one(exporter, "gpu.matmul")
    assert any(i.startswith(("GPU-", "MIG-")) for i in attr(span, DEVICE_IDS))


def test_devices_sharing_an_id_are_summed_and_the_window_is_exact() -> None:
    from hf_eco2ai.energy_ledger import Ledger
    from hf_eco2ai.integrations.measure_result import compute_measurement
    from hf_eco2ai.sensors.base import DeviceInfo, Method

    package = DeviceInfo("cpu", HwType.CPU, "Package", "Acme", Method.RAPL)
    gpu = DeviceInfo("gpu0", HwType.GPU, "GPU", "Acme", Method.NVML_ENERGY)
    ledger = Ledger([package, package, gpu], pue=2.0, history_size=8)
    ci = CarbonIntensity(360.0, "XX", "config")
    ledger.record(1_000_000_000, [5.0, 5.0, 5.0], [10.0, 20.0, 30.0], ci)
    start = ledger.snapshot()
    ledger.record(2_000_000_000, [10.0, 20.0, 30.0], [10.0, 20.0, 30.0], ci)
    end = ledger.snapshot()
    m = compute_measurement(("w", start, 1_000_000_000, end, 2_000_000_000), None)
    assert m.devices == pytest.approx({"cpu": 30.0, "gpu0": 30.0})
    assert m.device_types == {"cpu": "cpu", "gpu0": "gpu"}
    assert m.energy_j == pytest.approx(60.0 * 2.0)  # PUE applied to the sum
    assert m.emissions_g == pytest.approx(120.0 / 3.6e6 * 360.0)
    assert m.extrapolated is False
