# ruff: noqa: F811 - the fixtures of test_measure.py are imported and used as parameters
"""The end of a ``with measure()`` window while instrumented: handed to the sampler thread.

The calling thread keeps the window's times, its two snapshots and, on error, the span's status;
the sampler thread computes the numbers, sets the attributes and ends the span at the window's
own end time. These tests check that nothing is lost on the way: the span (times, attributes,
parent, status), the order, and every path that must finish a pending window (reading the
result, ``flush()``, ``uninstrument()``, the SIGTERM flush, exit).

To hold windows pending deterministically, :func:`sampler_busy` takes the sampler's job lock on
the test's thread: the sampler thread then cannot run jobs (it never blocks on that lock, it
looks again every few ms), while the test's thread still can (the lock is re-entrant).
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import hf_eco2ai
from hf_eco2ai import HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.integrations import measure as measure_module
from hf_eco2ai.run.sigterm import flush_providers
from hf_eco2ai.sampling_thread import Sampler
from tests.fakes.synthetic import FakeClock
from tests.unit.test_measure import (  # noqa: F401 - fixtures
    TOTAL_W,
    Devices,
    attr,
    clock,
    devices,
    exporter,
    instrumented,
    one,
    provider,
)

SAMPLER_THREAD = "hf-eco2ai-sampler"


@contextmanager
def sampler_busy() -> Iterator[Sampler]:
    """Windows closed inside stay pending until the block ends (see the module docstring)."""
    shared = monitor_module.shared_monitor()
    assert shared is not None and shared.running
    sampler = shared.sampler
    with sampler._jobs_lock:
        yield sampler


def finished(exporter: InMemorySpanExporter) -> list[str]:
    """Names of the spans ended so far, in order, without flushing anything."""
    return [s.name for s in exporter.get_finished_spans()]


class EndThreads(SpanProcessor):
    """Records on which thread each span ended."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.ended = threading.Event()

    def on_end(self, span: ReadableSpan) -> None:
        self.threads[span.name] = threading.current_thread().name
        self.ended.set()


# ---------------------------------------------------------------------- the span
def test_the_span_ends_on_the_sampler_thread_at_the_windows_own_end(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    ends = EndThreads()
    provider.add_span_processor(ends)
    with hf_eco2ai.measure("w", split="test") as m:
        clock.advance(2.0)
        inside = time.time_ns()
    after = time.time_ns()
    assert ends.ended.wait(10)  # the sampler thread ends it without being asked
    assert ends.threads == {"w": SAMPLER_THREAD}
    span = one(exporter, "w")
    assert span.start_time is not None and span.end_time is not None
    assert span.start_time <= inside <= span.end_time <= after
    assert attr(span, "hf_eco2ai.energy.joules") == pytest.approx(TOTAL_W * 2.0)
    assert attr(span, "split") == "test" and attr(span, "hf_eco2ai.rank") == 0
    assert m.energy_j == pytest.approx(TOTAL_W * 2.0)


def test_a_late_finish_keeps_the_windows_times(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    with sampler_busy() as sampler:
        with hf_eco2ai.measure("late"):
            clock.advance(1.0)
        window_ended = time.time_ns()
        assert sampler.pending_jobs == 1 and finished(exporter) == []
        time.sleep(0.01)
        held_until = time.time_ns()
    assert hf_eco2ai.flush()
    span = one(exporter, "late")
    assert span.end_time is not None
    assert span.end_time <= window_ended < held_until  # not the time it was processed
    assert attr(span, "hf_eco2ai.duration.seconds") == pytest.approx(1.0)


def test_reading_the_result_finishes_the_window_at_once_and_only_once(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    with caplog.at_level(logging.WARNING), sampler_busy() as sampler:
        with hf_eco2ai.measure("read") as m:
            clock.advance(1.0)
        assert finished(exporter) == []
        assert m.energy_j == pytest.approx(TOTAL_W)  # computed here, span ended here
        assert finished(exporter) == ["read"]
        assert sampler.pending_jobs == 1  # its job is still queued: a no-op when it runs
    assert hf_eco2ai.flush() and sampler.pending_jobs == 0
    assert finished(exporter) == ["read"]  # ended once
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_a_reader_stuck_in_a_span_processor_never_holds_up_the_sampler_thread(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    entered, release = threading.Event(), threading.Event()

    class Blocking(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            if span.name == "stuck":
                entered.set()
                release.wait(10)

    provider.add_span_processor(Blocking())
    readings: dict[str, float] = {}
    with sampler_busy() as sampler:
        with hf_eco2ai.measure("stuck") as m:
            clock.advance(1.0)
        first = threading.Thread(target=lambda: readings.setdefault("first", m.energy_j))
        first.start()  # finishes the window itself, and blocks in the processor
        assert entered.wait(10)
    try:
        done = threading.Event()
        assert sampler.call_soon(done.set)
        assert done.wait(10)  # the window's job was skipped, not waited on: sampling goes on
        assert sampler.pending_jobs == 0
        second = threading.Thread(target=lambda: readings.setdefault("second", m.energy_j))
        second.start()
        second.join(0.05)
        assert "second" not in readings  # it waits for the first reader's result
    finally:
        release.set()
    first.join(10)
    second.join(10)
    assert readings == {"first": pytest.approx(TOTAL_W), "second": pytest.approx(TOTAL_W)}
    assert finished(exporter) == ["stuck"]


def test_pending_windows_end_in_the_order_they_closed_with_the_synchronous_attributes(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    with sampler_busy():
        with hf_eco2ai.measure("outer"):
            with hf_eco2ai.measure("inner"):
                clock.advance(1.0)
            for i in range(3):
                with hf_eco2ai.measure(f"w{i}"):
                    clock.advance(1.0)
        sync = hf_eco2ai.measure("sync").start()  # stop() returns the numbers: ended here
        clock.advance(1.0)
        sync.stop()
        assert finished(exporter) == ["sync"]
    assert hf_eco2ai.flush()
    assert finished(exporter) == ["sync", "inner", "w0", "w1", "w2", "outer"]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["inner"].parent is not None
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert set(spans["w0"].attributes or {}) == set(spans["sync"].attributes or {})
    assert attr(spans["outer"], "hf_eco2ai.energy.joules") == pytest.approx(TOTAL_W * 4.0)


def test_windows_closed_in_threads_are_each_ended_once_under_their_own_parent(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    tracer = provider.get_tracer("user")
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait(10)
        with tracer.start_as_current_span(f"parent.{k}"):
            for _ in range(20):
                with hf_eco2ai.measure("job", worker=k):
                    pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert hf_eco2ai.flush()
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}
    jobs = [s for s in by_id.values() if s.name == "job"]
    assert len(jobs) == 80 == len(exporter.get_finished_spans()) - 4  # each ended once
    for span in jobs:
        assert span.parent is not None
        assert by_id[span.parent.span_id].name == f"parent.{attr(span, 'worker')}"


# ---------------------------------------------------------------------- errors
def test_an_exception_in_the_window_is_recorded_at_the_windows_end(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    with sampler_busy() as sampler:

        def fails() -> None:
            with hf_eco2ai.measure("fails"):
                clock.advance(1.0)
                raise KeyError("k")

        with pytest.raises(KeyError):
            fails()
        left = time.time_ns()
        assert sampler.pending_jobs == 1  # handed over like any recorded window
        time.sleep(0.01)
    assert hf_eco2ai.flush()
    span = one(exporter, "fails")
    assert span.status.status_code is StatusCode.ERROR
    assert attr(span, "error.type") == "KeyError"
    (event,) = span.events
    assert span.end_time is not None and event.timestamp <= span.end_time <= left
    assert attr(span, "hf_eco2ai.energy.joules") == pytest.approx(TOTAL_W)


def test_a_failure_on_the_sampler_thread_still_ends_the_span_and_is_logged_once(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("no numbers today")

    monkeypatch.setattr(measure_module, "compute_measurement", broken)
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        windows = []
        for _ in range(3):
            with hf_eco2ai.measure("broken") as m:
                clock.advance(1.0)
            windows.append(m)
        assert hf_eco2ai.flush()
    spans = [s for s in exporter.get_finished_spans() if s.name == "broken"]
    assert len(spans) == 3 and all(s.end_time is not None for s in spans)
    assert all(math.isnan(w.energy_j) for w in windows)
    assert windows[-1].duration_s == pytest.approx(1.0)
    warnings = [r for r in caplog.records if "could not end" in r.getMessage()]
    assert len(warnings) == 1 and "ZeroDivisionError" in warnings[0].getMessage()
    shared = monitor_module.shared_monitor()
    assert shared is not None and shared.running  # sampling goes on


def test_a_span_processor_that_raises_on_end_breaks_nothing(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    class Raising(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            raise RuntimeError("processor bug")

    provider.add_span_processor(Raising())
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        for _ in range(2):
            with hf_eco2ai.measure("w") as m:
                clock.advance(1.0)
        assert hf_eco2ai.flush()
    assert finished(exporter) == ["w", "w"]  # processors before the raising one got them
    assert m.energy_j == pytest.approx(TOTAL_W)
    assert len([r for r in caplog.records if "RuntimeError" in r.getMessage()]) == 1


# ---------------------------------------------------------------------- who finishes
def test_uninstrument_ends_pending_windows_and_later_windows_end_at_once(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    with sampler_busy() as sampler:
        with hf_eco2ai.measure("pending"):
            clock.advance(1.0)
        straddling = hf_eco2ai.measure("straddling")
        straddling.__enter__()
        clock.advance(1.0)
        assert sampler.pending_jobs == 1
        HFEco2AIInstrumentor().uninstrument()
        assert finished(exporter) == ["pending"]  # ended by uninstrument, no flush needed
        assert sampler.pending_jobs == 0 and not sampler.running
    straddling.__exit__(None, None, None)  # its sampler is gone: finished here, at once
    assert finished(exporter) == ["pending", "straddling"]
    assert straddling.energy_j == pytest.approx(TOTAL_W)


def test_the_sigterm_flush_ends_pending_windows_before_flushing_the_providers(
    instrumented: Devices, clock: FakeClock, exporter: InMemorySpanExporter
) -> None:
    class Provider:
        def __init__(self) -> None:
            self.saw: list[str] = []

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            self.saw = finished(exporter)
            return True

    flushed = Provider()
    with sampler_busy():
        with hf_eco2ai.measure("w"):
            clock.advance(1.0)
        flush_providers(flushed)(5.0)
    assert flushed.saw == ["w"]


def test_without_instrument_the_window_ends_its_span_itself(
    devices: Devices, clock: FakeClock, exporter: InMemorySpanExporter, provider: Any
) -> None:
    ends = EndThreads()
    provider.add_span_processor(ends)
    with hf_eco2ai.measure("alone", tracer_provider=provider):
        clock.advance(1.0)
    assert finished(exporter) == ["alone"]
    assert ends.threads == {"alone": threading.current_thread().name}


def test_a_not_recorded_span_is_never_handed_over(
    instrumented: Devices, clock: FakeClock
) -> None:  # fmt: skip
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    dropped = TracerProvider(sampler=ALWAYS_OFF)
    with sampler_busy() as sampler:
        with hf_eco2ai.measure("x", tracer_provider=dropped) as m:
            clock.advance(1.0)
        assert sampler.pending_jobs == 0  # nothing to do for it but its numbers, on read
    assert m.energy_j == pytest.approx(TOTAL_W)
    dropped.shutdown()


@pytest.mark.slow  # a subprocess that instruments (imports transformers): ~5 s
def test_pending_windows_are_ended_at_exit_before_the_providers_shut_down(
    tmp_path: Path,
) -> None:
    """A provider made after ``import hf_eco2ai`` shuts down at exit before the hooks hf-eco2ai
    registered at import: the hook registered at the first hand-off runs before it."""
    script = textwrap.dedent(
        """
        import sys
        import hf_eco2ai
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult
        from hf_eco2ai import energy_monitor
        from tests.conftest import fake_monitor

        class Lines(SpanExporter):
            def export(self, spans):
                for s in spans:
                    print("span", s.name, "joules" if "hf_eco2ai.energy.joules" in s.attributes
                          else "none", flush=True)
                return SpanExportResult.SUCCESS
            def shutdown(self):
                print("exporter shut down", flush=True)

        provider = TracerProvider()  # registers its own shutdown at exit
        provider.add_span_processor(SimpleSpanProcessor(Lines()))
        energy_monitor.set_monitor_factory(fake_monitor)
        config = hf_eco2ai.CarbonConfig(sample_interval=60.0, write_report=False,
                                        output_dir=sys.argv[1])
        hf_eco2ai.HFEco2AIInstrumentor().instrument(
            tracer_provider=provider, meter_provider=MeterProvider(), config=config)
        sampler = energy_monitor.shared_monitor().sampler
        sampler._jobs_lock.acquire()  # the sampler thread cannot end it: exit must
        with hf_eco2ai.measure("at.exit"):
            pass
        print("pending", sampler.pending_jobs, flush=True)
        """
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["pending 1", "span at.exit joules", "exporter shut down"], proc.stderr


def test_flush_reports_a_window_it_could_not_finish_in_time(
    instrumented: Devices, clock: FakeClock
) -> None:
    shared = monitor_module.shared_monitor()
    assert shared is not None
    release, entered = threading.Event(), threading.Event()
    assert shared.sampler.call_soon(lambda: (entered.set(), release.wait(10)))
    try:
        assert entered.wait(10)
        assert hf_eco2ai.flush(timeout_s=0.05) is False
    finally:
        release.set()
    assert hf_eco2ai.flush() is True


def test_the_context_is_restored_at_once(
    instrumented: Devices, clock: FakeClock, provider: Any
) -> None:
    with sampler_busy(), hf_eco2ai.measure("w"):
        inside = trace.get_current_span()
        assert isinstance(inside, Span) and inside.name == "w"
    assert trace.get_current_span() is trace.INVALID_SPAN
