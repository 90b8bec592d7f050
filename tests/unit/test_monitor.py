from __future__ import annotations

import time

import pytest

from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_monitor import EnergyMonitor, acquire_monitor, release_monitor, shared_monitor
from tests.conftest import FAKE_CPU, FAKE_GPU, ConstantSensor

CI = StaticIntensity(CarbonIntensity(50.0, "FR", "config"))


def test_monitor_measures_and_stops_cleanly() -> None:
    sensor = ConstantSensor([(FAKE_GPU, 100.0), (FAKE_CPU, 20.0)])
    mon = EnergyMonitor(CarbonConfig(sample_interval=0.05, pue=1.2), sensors=[sensor], intensity=CI)
    assert mon.devices == (FAKE_GPU, FAKE_CPU)
    assert not mon.running
    mon.start()
    assert mon.running
    time.sleep(0.3)
    mon.stop()
    snap = mon.snapshot()
    assert snap.energy_j > 0
    assert snap.energy_by_type["gpu"] == pytest.approx(5 * snap.energy_by_type["cpu"], rel=0.05)
    assert snap.pue == 1.2
    assert mon.history().t_ns.size == snap.seq
    mon.close()
    mon.close()
    assert sensor.closed


def test_monitor_close_contains_sensor_errors() -> None:
    class Broken(ConstantSensor):
        def close(self) -> None:
            raise OSError("cannot close")

    class BadIntensity(StaticIntensity):
        def close(self) -> None:
            raise OSError("nope")

    mon = EnergyMonitor(
        CarbonConfig(),
        sensors=[Broken([(FAKE_GPU, 1.0)])],
        intensity=BadIntensity(CarbonIntensity(1.0, "XX", "config")),
    )
    mon.start()
    mon.close()  # must not raise
    assert not mon.running


def test_monitor_discovers_sensors_and_intensity_from_config() -> None:
    mon = EnergyMonitor(
        CarbonConfig(track_gpu=False, country="FR", sample_interval=0.05), notes=["given note"]
    )
    try:
        assert mon.notes[0] == "given note"
        assert len(mon.notes) > 1  # discovery explains what it found
        assert mon.location_method == "country"
        assert all(d.hw_type.value in {"cpu", "memory"} for d in mon.devices)
        mon.start()
        time.sleep(0.15)
        assert mon.snapshot().intensity.zone.startswith("FR")
    finally:
        mon.close()


def test_shared_monitor_is_reference_counted(fake_devices: None) -> None:
    cfg = CarbonConfig(sample_interval=0.05)
    a = acquire_monitor(cfg)
    b = acquire_monitor(cfg.replace(pue=1.5))  # same process: same monitor, first config wins
    assert a is b
    assert shared_monitor() is a
    assert a.running
    release_monitor(a)
    assert a.running
    release_monitor(b)
    assert not a.running
    assert shared_monitor() is None
    c = acquire_monitor(cfg)
    assert c is not a
    release_monitor(c)


def test_release_of_a_private_monitor_closes_it(fake_devices: None) -> None:
    sensor = ConstantSensor([(FAKE_GPU, 1.0)])
    mon = EnergyMonitor(CarbonConfig(), sensors=[sensor], intensity=CI)
    mon.start()
    release_monitor(mon)
    assert sensor.closed
    assert monitor_module.shared_monitor() is None
