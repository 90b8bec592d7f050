from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from hf_eco2ai import energy_monitor as monitor_module
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading


class ConstantSensor:
    """Devices with constant power and an exact energy counter on the real monotonic clock."""

    def __init__(self, devices: list[tuple[DeviceInfo, float]]) -> None:
        import time

        self._devices = tuple(d for d, _ in devices)
        self._power = [p for _, p in devices]
        self._t0 = time.monotonic()
        self.closed = False

    @property
    def devices(self) -> tuple[DeviceInfo, ...]:
        return self._devices

    def read(self, index: int) -> Reading:
        import time

        p = self._power[index]
        energy = p * (time.monotonic() - self._t0)
        counter = self._devices[index].method.measured
        return Reading(power_w=p, energy_j=energy if counter else None)

    def close(self) -> None:
        self.closed = True


FAKE_GPU = DeviceInfo("GPU-fake-0", HwType.GPU, "Fake GPU", "NVIDIA", Method.NVML_ENERGY)
FAKE_CPU = DeviceInfo("cpu", HwType.CPU, "Fake CPU", "Acme", Method.TDP_MODEL)
FAKE_RAM = DeviceInfo("memory", HwType.MEMORY, "RAM", "", Method.RAM_MODEL)
FAKE_INTENSITY = CarbonIntensity(100.0, "XX", "config")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests (marker ``soak``, minutes long) run only when ``-m`` names them."""
    if "soak" in (config.option.markexpr or ""):
        return
    soak = [item for item in items if item.get_closest_marker("soak") is not None]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if item.get_closest_marker("soak") is None]


def fake_monitor(config: CarbonConfig, local_rank: int = 0) -> EnergyMonitor:
    sensor = ConstantSensor([(FAKE_GPU, 200.0), (FAKE_CPU, 50.0), (FAKE_RAM, 5.0)])
    return EnergyMonitor(config, sensors=[sensor], intensity=StaticIntensity(FAKE_INTENSITY))


@pytest.fixture(autouse=True)
def _fresh_warn_once() -> None:
    """Each test sees the once-per-process warnings again."""
    from hf_eco2ai._logging import reset_once

    reset_once()


REPO = Path(__file__).resolve().parents[1]

# Hypothesis keeps its files out of the checkout (it defaults to ./.hypothesis).
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "hf-eco2ai-hypothesis"))
settings.register_profile(
    "hf-eco2ai",
    database=DirectoryBasedExampleDatabase(
        str(Path(tempfile.gettempdir()) / "hf-eco2ai-hypothesis")
    ),
)
settings.load_profile("hf-eco2ai")


@pytest.fixture(autouse=True, scope="session")
def _nothing_written_into_the_repository() -> Iterator[None]:
    """The suite writes its files under temporary directories, never into the checkout."""
    before = set(REPO.iterdir())
    yield
    from hf_eco2ai.run import end_open_runs

    end_open_runs(RuntimeError("the test session ended with the run still open"))
    # dot-entries are the tools' own (.pytest_cache, .coverage); hypothesis's is kept in the
    # temp directory above
    new = sorted(p.name for p in set(REPO.iterdir()) - before if not p.name.startswith("."))
    assert new == [], f"tests left files in the repository: {new}"


@pytest.fixture(autouse=True)
def _no_run_left_open() -> Iterator[None]:
    """A run a test leaves open is ended after it (its report goes where the run began)."""
    yield
    from hf_eco2ai.run import end_open_runs

    end_open_runs(RuntimeError("the test ended with the run still open"))


@pytest.fixture
def fake_devices() -> Iterator[None]:
    """The shared monitor measures three synthetic devices (GPU 200 W, CPU 50 W, RAM 5 W)."""
    monitor_module.set_monitor_factory(fake_monitor)
    try:
        yield
    finally:
        monitor_module.set_monitor_factory(None)
        monitor_module.close_shared_monitor()
