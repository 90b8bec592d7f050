"""Issue 5 'done when': FR and PL runs report the shipped table's intensity, and
emissions = sum of energy x intensity over the run."""

from __future__ import annotations

import time

import pytest

from hf_eco2ai.carbon import tables
from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_ledger import J_PER_KWH
from hf_eco2ai.energy_monitor import EnergyMonitor
from tests.conftest import FAKE_CPU, FAKE_GPU, ConstantSensor


@pytest.mark.parametrize("country", ["FR", "PL"])
def test_country_run_uses_table_intensity_and_integrates(country: str) -> None:
    expected = tables.country_intensity(country)
    sensor = ConstantSensor([(FAKE_GPU, 300.0), (FAKE_CPU, 40.0)])
    monitor = EnergyMonitor(
        CarbonConfig(country=country, sample_interval=0.05, pue=1.1), sensors=[sensor]
    )
    try:
        assert monitor.location_method == "country"
        monitor.start()
        time.sleep(0.4)
        monitor.stop()
        snap = monitor.snapshot()
        history = monitor.history()
    finally:
        monitor.close()
    assert snap.intensity == expected
    assert snap.intensity.zone == country
    assert snap.intensity.source.startswith("table:")
    assert (history.intensity == expected.value).all()
    assert snap.energy_j > 0
    assert snap.emissions_g == pytest.approx(snap.energy_j / J_PER_KWH * expected.value, rel=1e-9)


def test_fr_and_pl_differ_as_the_table_says() -> None:
    fr, pl = tables.country_intensity("FR"), tables.country_intensity("PL")
    assert isinstance(fr, CarbonIntensity)
    # France's grid (nuclear, hydro) is several times cleaner than Poland's (coal)
    assert pl.value > 3 * fr.value
