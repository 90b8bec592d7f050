"""instrument()/uninstrument() in a loop: nothing leaks, nothing goes dark.

Real discovery is used (no fake devices): whatever sensors this host has (NVML, RAPL or the
TDP/RAM models) are opened and closed 100 times.
"""

from __future__ import annotations

import gc
import signal
import threading
import time

import pytest
import wrapt

from hf_eco2ai import HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.telemetry.session import active_session
from tests.reliability.conftest import Telemetry, open_fds, sampler_threads

CYCLES = 100


def test_instrument_uninstrument_100_times_leaks_no_thread_fd_or_handler(
    telemetry: Telemetry,
) -> None:
    """Would catch: a sampler thread not joined at uninstrument, a sensor or provider handle
    (NVML, sysfs files, sockets) not closed, a SIGTERM handler left behind, or the shared monitor
    kept alive by a stale reference count."""
    config = CarbonConfig(sample_interval=0.05, country="FR")
    instrumentor = HFEco2AIInstrumentor()

    def cycle() -> None:
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            config=config,
        )
        session = active_session()
        assert session is not None and session.monitor.running
        instrumentor.uninstrument()

    cycle()  # warm-up: lazy imports and caches open what they keep for good
    gc.collect()
    threads, fds = threading.active_count(), open_fds()
    handler = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    for _ in range(CYCLES):
        cycle()
    elapsed = time.monotonic() - started
    gc.collect()
    time.sleep(0.05)  # a daemon thread that was told to stop gets a moment to go
    assert sampler_threads() == []
    assert threading.active_count() <= threads, [t.name for t in threading.enumerate()]
    if open_fds() > fds + 1:  # a leftover of an earlier test (e.g. a retrying exporter)?
        time.sleep(2.0)
    assert open_fds() <= fds + 1, "file descriptors leaked"
    assert signal.getsignal(signal.SIGTERM) is handler
    assert monitor.shared_monitor() is None
    assert active_session() is None
    assert elapsed < 30, f"{CYCLES} cycles took {elapsed:.1f} s"


def test_metrics_flow_again_after_reinstrumenting_on_the_same_meter_provider(
    fake_devices: None, telemetry: Telemetry
) -> None:
    """OpenTelemetry keeps the first callbacks of an instrument name on a meter and ignores the
    ones given when the same name is created again. Would catch: after uninstrument() and
    instrument() on the same (e.g. global) meter provider, every hf-eco2ai metric silently
    reporting nothing; and, the other way round, one point per device per cycle (duplicates)."""
    config = CarbonConfig(sample_interval=0.05)
    instrumentor = HFEco2AIInstrumentor()
    for cycle in range(5):
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            config=config,
        )
        try:
            time.sleep(0.12)
            points = telemetry.points("hw.energy")
        finally:
            instrumentor.uninstrument()
        assert len(points) == 3, f"cycle {cycle}: {len(points)} hw.energy points"
        assert all(p.value > 0 for p in points)
        assert telemetry.points("hw.energy") == [], "metrics reported after uninstrument()"


@pytest.mark.parametrize("runs", [3])
def test_explicit_callback_runs_keep_reporting_metrics(
    fake_devices: None, telemetry: Telemetry, runs: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An explicit ``Eco2AICallback`` (no instrumentor) opens and closes a session per run.
    Would catch: metrics of every run after the first reporting nothing (a sweep of Trainer
    runs in one process measured once)."""
    from opentelemetry import metrics as otel_metrics
    from train_hf import make_trainer

    from hf_eco2ai import Eco2AICallback

    def get_meter(name: str, version: str | None = None, *args: object, **kwargs: object) -> object:
        return telemetry.meter_provider.get_meter(name, version, kwargs.get("schema_url"))

    monkeypatch.setattr(otel_metrics, "get_meter", get_meter)  # as if it were the global one
    seen = []

    class Probe(Eco2AICallback):
        def on_epoch_end(self, *args: object, **kwargs: object) -> None:
            super().on_epoch_end(*args, **kwargs)  # type: ignore[arg-type]
            time.sleep(0.12)
            seen.append(len(telemetry.points("hw.energy")))

    for _ in range(runs):
        callback = Probe(CarbonConfig(sample_interval=0.05, write_report=False))
        make_trainer("out", train_size=16, eval_size=8, epochs=1, callbacks=[callback]).train()
    assert seen == [3] * runs, seen


def test_fresh_instrumentor_objects_in_a_loop_unwrap_everything(
    fake_devices: None, telemetry: Telemetry
) -> None:
    """``HFEco2AIInstrumentor()`` is a process-wide singleton (``BaseInstrumentor``), and the
    usual pattern constructs it at each call: ``HFEco2AIInstrumentor().uninstrument()``.
    Would catch: a construction while instrumented forgetting what was patched, so
    ``uninstrument()`` leaves ``Trainer`` wrapped and every cycle nests one more wrapper."""
    from transformers import Trainer

    config = CarbonConfig(sample_interval=0.05)
    for _ in range(20):
        HFEco2AIInstrumentor().instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            config=config,
        )
        HFEco2AIInstrumentor().uninstrument()
        for name in ("__init__", "train", "evaluate", "training_step", "log"):
            # wrapt's wrappers (transformers 4.x's own decorators also set __wrapped__)
            assert not isinstance(Trainer.__dict__[name], wrapt.FunctionWrapper), name
    assert active_session() is None
    assert sampler_threads() == []
