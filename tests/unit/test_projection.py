from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor
from hf_eco2ai.carbon.intensity import StaticIntensity
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.projection import Projector
from hf_eco2ai.run import Run
from hf_eco2ai.telemetry.session import TelemetrySession
from tests.conftest import FAKE_CPU, FAKE_GPU, FAKE_INTENSITY, ConstantSensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from train_hf import make_trainer


def test_projector_linear_and_min_progress() -> None:
    p = Projector(co2_budget=None, energy_budget=None, action="warn")
    assert p.update(0.005, 1.0, 1.0) is None  # too early to say
    proj = p.update(0.5, 10.0, 2.0)
    assert proj is not None
    assert (proj.energy_j, proj.emissions_g) == (20.0, 4.0)
    assert p.update(1.5, 30.0, 3.0).progress == 1.0  # type: ignore[union-attr]
    assert not p.has_budget


def test_projector_budget_warns_once_then_stops(caplog: pytest.LogCaptureFixture) -> None:
    p = Projector(co2_budget=5.0, energy_budget=None, action="stop")
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
        p.update(0.2, 10.0, 1.5)  # projected 7.5 g > 5 g
        p.update(0.3, 15.0, 2.0)
        assert p.projected_over
        assert not p.exceeded
        p.update(0.8, 50.0, 5.5)
        p.update(0.9, 55.0, 6.0)
    assert p.exceeded
    assert p.should_stop
    assert p.exceeded_what is not None
    assert "emissions" in p.exceeded_what
    messages = [r.getMessage() for r in caplog.records]
    assert sum("projected to exceed" in m for m in messages) == 1
    assert sum("budget exceeded" in m for m in messages) == 1


def test_projector_warn_action_never_stops() -> None:
    p = Projector(co2_budget=None, energy_budget=10.0, action="warn")
    p.update(0.5, 11.0, 0.0)
    assert p.exceeded
    assert not p.should_stop


def test_projection_within_5_percent_after_25_percent_of_a_steady_run() -> None:
    sensor = ConstantSensor([(FAKE_GPU, 200.0), (FAKE_CPU, 50.0)])
    monitor = EnergyMonitor(
        CarbonConfig(sample_interval=0.05),
        sensors=[sensor],
        intensity=StaticIntensity(FAKE_INTENSITY),
    )
    session = TelemetrySession(
        CarbonConfig(sample_interval=0.05, write_report=False), monitor=monitor
    )
    try:
        run = Run(session, "synthetic", "synthetic.trainer")
        total = 100
        run.begin({}, total_steps=total)
        early = None
        for step in range(1, total + 1):
            time.sleep(0.006)  # a steady step
            run.step(step, samples=8, tokens=0)
            if step == total // 4:
                early = run.counters.shared.projected_energy_j
        window = run.finish({})
    finally:
        session.close()
    assert early is not None
    assert window is not None
    assert early == pytest.approx(window.energy_j, rel=0.05)
    assert run.projector.latest is not None
    assert run.projector.latest.progress == 1.0


@pytest.mark.parametrize(("action", "stops"), [("stop", True), ("warn", False)])
def test_trainer_budget(fake_devices: None, tmp_path: Path, action: str, stops: bool) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = HFEco2AIInstrumentor()
    # fake devices draw 255 W: a 1 J budget is exceeded within the first steps
    inst.instrument(
        tracer_provider=provider,
        meter_provider=MeterProvider(),
        config=CarbonConfig(
            sample_interval=0.05,
            energy_budget=1.0,
            budget_action=action,
            output_dir=str(tmp_path / "runs"),
        ),
    )
    try:
        trainer = make_trainer(str(tmp_path / "t"), train_size=1600, eval_size=8, epochs=1)
        result = trainer.train()
    finally:
        inst.uninstrument()
    planned = trainer.state.max_steps
    assert planned == 200
    if stops:
        assert result.global_step < planned
    else:
        assert result.global_step == planned
    run = next(s for s in exporter.get_finished_spans() if s.name == "transformers.trainer.train")
    assert run.attributes["hf_eco2ai.budget.exceeded"] is True
    assert run.attributes["hf_eco2ai.budget.stopped"] is stops
    assert run.attributes["hf_eco2ai.budget.energy.joules"] == 1.0
    assert run.attributes["hf_eco2ai.projected.energy.joules"] > 1.0
    import json

    [report] = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/report.json")]
    assert report["budget"]["exceeded"] is True
    assert report["budget"]["stopped"] is stops


def test_budget_never_stops_one_rank_of_a_distributed_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hf_eco2ai.distributed import RankInfo

    for rank, stops in ((RankInfo(1, 1, 2, 2, "h"), False), (RankInfo(), True)):
        monitor = EnergyMonitor(
            CarbonConfig(), sensors=[], intensity=StaticIntensity(FAKE_INTENSITY)
        )
        session = TelemetrySession(CarbonConfig(write_report=False), monitor=monitor, rank=rank)
        try:
            run = Run(session, "demo", "demo")
            run.begin({})
            run.projector.should_stop = True
            with caplog.at_level(logging.WARNING, logger="hf_eco2ai"):
                assert run.step(1, 1, 0) is stops
                assert run.step(2, 1, 0) is False  # asked once
            run.finish({})
        finally:
            session.close()
    assert caplog.text.count("not stopping a multi-rank job") == 1
