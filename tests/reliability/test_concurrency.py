"""Concurrency: two Trainers in one process, a Trainer in a thread, nested evaluate() calls."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode
from train_hf import make_trainer
from transformers import TrainerCallback

from hf_eco2ai import HFEco2AIInstrumentor
from hf_eco2ai import energy_monitor as monitor
from hf_eco2ai.telemetry.session import active_session
from tests.reliability.conftest import (
    RUN,
    Telemetry,
    assert_energy_is_power_times_duration,
    fast_config,
    instrumented,
    reports,
    sampler_threads,
)

pytestmark = pytest.mark.usefixtures("fake_devices")


class OpenSpans(SpanProcessor):
    """Counts spans started and ended: every span started must end."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


class Slow(TrainerCallback):  # type: ignore[misc]
    """Makes steps last long enough for two runs to overlap."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        time.sleep(self.seconds)


def test_two_trainers_one_after_the_other(telemetry: Telemetry) -> None:
    """Would catch: the second run inheriting the first run's samples, windows or spans, or the
    shared monitor being started twice (two sampler threads measuring the same devices)."""
    with instrumented(telemetry, fast_config()):
        first = make_trainer("a", train_size=32, eval_size=8, epochs=1)
        second = make_trainer("b", train_size=48, eval_size=8, epochs=1)
        first.train()
        second.train()
        assert len(sampler_threads()) == 1
    found = reports("runs")
    assert [r["efficiency"]["samples"] for r in found] == [32, 48]
    for report in found:
        assert_energy_is_power_times_duration(report)
    runs = telemetry.finished(RUN)
    assert [s.attributes["hf_eco2ai.training.samples"] for s in runs] == [32, 48]


def test_two_trainers_training_at_once_in_two_threads(telemetry: Telemetry) -> None:
    """Two runs overlap in time in one process. Each run's energy is the devices' energy over
    its own window (the overlap is in both: the devices are shared), but its sample count and
    J/sample are its own. Would catch: per-run counters shared between the runs (each run's
    start resetting the other's, samples counted into both), and lost or unended spans."""
    processor = OpenSpans()
    telemetry.tracer_provider.add_span_processor(processor)
    errors: list[BaseException] = []
    with instrumented(telemetry, fast_config()):
        trainers = [
            make_trainer(name, train_size=size, eval_size=8, epochs=1, callbacks=[Slow(0.02)])
            for name, size in (("a", 64), ("b", 96))
        ]

        def train(trainer: Any) -> None:
            try:
                trainer.train()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=train, args=(t,)) for t in trainers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a training thread hung"
    assert errors == []
    found = sorted(reports("runs"), key=lambda r: r["efficiency"]["samples"])
    assert [r["efficiency"]["samples"] for r in found] == [64, 96]
    for report in found:
        assert report["run"]["status"] == "ok"
        assert_energy_is_power_times_duration(report)
    runs = sorted(telemetry.finished(RUN), key=lambda s: s.attributes["hf_eco2ai.training.samples"])
    assert [s.attributes["hf_eco2ai.training.samples"] for s in runs] == [64, 96]
    assert sorted(processor.started) == sorted(processor.ended)


def test_trainer_inside_a_thread_and_instrument_from_a_thread(telemetry: Telemetry) -> None:
    """Would catch: instrument() failing outside the main thread (``signal.signal`` raises
    ValueError there), and a run in a worker thread not ending its spans or writing its
    report."""
    handler = signal.getsignal(signal.SIGTERM)
    outcome: dict[str, Any] = {}

    def work() -> None:
        instrumentor = HFEco2AIInstrumentor()
        try:
            instrumentor.instrument(
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
                config=fast_config(),
            )
            outcome["session"] = active_session() is not None
            make_trainer("t", train_size=32, eval_size=8, epochs=1).train()
        except BaseException as exc:  # pragma: no cover - reported below
            outcome["error"] = exc
        finally:
            instrumentor.uninstrument()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["session"] is True
    assert signal.getsignal(signal.SIGTERM) is handler  # only the main thread may install one
    (run,) = telemetry.finished(RUN)
    assert run.status.status_code is StatusCode.UNSET
    assert_energy_is_power_times_duration(reports("runs")[0])
    assert monitor.shared_monitor() is None


def test_nested_evaluate_calls(telemetry: Telemetry) -> None:
    """A callback evaluates on a second dataset from inside an evaluation, and another one
    evaluates in the middle of an epoch. Would catch: an evaluation span never ended (or ended
    twice), an exception from the span bookkeeping, or the run span left open."""
    processor = OpenSpans()
    telemetry.tracer_provider.add_span_processor(processor)

    class EvaluateAgain(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.trainer: Any = None
            self.depth = 0

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.depth == 0:
                self.depth += 1
                try:
                    self.trainer.evaluate(self.trainer.eval_dataset, metric_key_prefix="extra")
                finally:
                    self.depth -= 1

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2 and self.depth == 0:
                self.depth += 1
                try:
                    self.trainer.evaluate()
                finally:
                    self.depth -= 1

    again = EvaluateAgain()
    with instrumented(telemetry, fast_config()):
        trainer = make_trainer("n", train_size=32, eval_size=8, epochs=2, callbacks=[again])
        again.trainer = trainer
        trainer.train()
        trainer.evaluate()  # and once more after the run, with no run open
    assert sorted(processor.started) == sorted(processor.ended)
    (run,) = telemetry.finished(RUN)
    assert run.status.status_code is StatusCode.UNSET
    evaluations = telemetry.finished("transformers.trainer.evaluate")
    assert len(evaluations) >= 3
    for span in evaluations:
        assert span.attributes["hf_eco2ai.energy.joules"] >= 0
    assert reports("runs")[0]["run"]["status"] == "ok"
