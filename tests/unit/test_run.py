from __future__ import annotations

import time

import pytest

from hf_eco2ai import CarbonConfig
from hf_eco2ai.carbon.intensity import StaticIntensity
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.run import Run, summary_line
from hf_eco2ai.telemetry.session import TelemetrySession
from tests.conftest import FAKE_GPU, FAKE_INTENSITY, ConstantSensor


@pytest.fixture
def run() -> Run:
    monitor = EnergyMonitor(
        CarbonConfig(sample_interval=0.05),
        sensors=[ConstantSensor([(FAKE_GPU, 100.0)])],
        intensity=StaticIntensity(FAKE_INTENSITY),
    )
    session = TelemetrySession(CarbonConfig(write_report=False), monitor=monitor)
    yield Run(session, "synthetic", "synthetic.trainer")
    session.close()


def test_frozen_run_end_is_what_the_run_span_reports(run: Run) -> None:
    assert run.freeze_end() is None  # no run yet
    run.begin({})
    time.sleep(0.15)
    frozen = run.freeze_end()
    time.sleep(0.15)  # energy used after the freeze is not the run's
    assert frozen is not None
    assert run.window() == frozen
    window = run.finish({})
    assert window is not None
    assert window.energy_j == frozen.energy_j
    assert window.duration_s == frozen.duration_s
    # the next run starts unfrozen
    run.begin({})
    time.sleep(0.05)
    first = run.window()
    time.sleep(0.05)
    second = run.window()
    assert first is not None
    assert second is not None
    assert second.energy_j > first.energy_j
    run.finish({})


def test_summary_line_mentions_band_and_efficiency(run: Run) -> None:
    run.begin({})
    run.step(1, samples=10, tokens=100)
    time.sleep(0.06)
    window = run.finish({})
    assert window is not None
    line = summary_line("synthetic", window, 10, 100)
    assert "J/sample" in line
    assert "J/token" in line
    assert "nvml-energy" in line
    assert ".." in line
