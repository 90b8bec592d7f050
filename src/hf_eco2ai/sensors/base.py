"""The sensor contract: what every hardware reader returns, with no threads and no OpenTelemetry.

A :class:`Sensor` owns one or more devices. The sampler thread calls :meth:`Sensor.read` once per
tick for each device; a sensor never spawns threads and never talks to OpenTelemetry.

Example:
    >>> info = DeviceInfo(hw_id="cpu0", hw_type=HwType.CPU, name="Example CPU", vendor="Acme",
    ...                   method=Method.TDP_MODEL)
    >>> info.measured
    False
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hf_eco2ai.sensors.bands import RAM_MODEL_BAND, TDP_TABLE_BAND, Band

if TYPE_CHECKING:
    from hf_eco2ai.sensors.process_share import JobScope


class HwType(str, enum.Enum):
    """``hw.type`` values (OpenTelemetry semantic conventions for hardware)."""

    GPU = "gpu"
    CPU = "cpu"
    MEMORY = "memory"


class Method(str, enum.Enum):
    """How a device's energy is obtained (``hf_eco2ai.measurement.method``)."""

    NVML_ENERGY = "nvml-energy"
    """NVML's hardware energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ)."""
    NVML_POWER = "nvml-power"
    """NVML power readings (``nvmlDeviceGetPowerUsage``, mW) integrated over time."""
    AMDSMI_ENERGY = "amdsmi-energy"
    """AMD's energy accumulator (``amdsmi_get_energy_count`` x counter resolution, µJ)."""
    AMDSMI_POWER = "amdsmi-power"
    """AMD socket power (``amdsmi_get_power_info``, W) integrated over time."""
    RAPL = "rapl"
    """Intel/AMD RAPL energy counters from powercap sysfs (µJ)."""
    TDP_MODEL = "tdp-model"
    """CPU power estimated from TDP x utilisation."""
    RAM_MODEL = "ram-model"
    """RAM power estimated from memory in use x W/GB."""

    @property
    def measured(self) -> bool:
        """True where a hardware counter is read, False for models and power integration."""
        return self in (Method.NVML_ENERGY, Method.AMDSMI_ENERGY, Method.RAPL)


# The band of each method: [value x low, value x high] and the share of cases it covers.
# Measured methods carry the vendor's or the literature's symmetric figure, whose coverage is not
# stated (None); the models carry bands derived by tools/derive_bands.py (sensors/bands.py).
# See docs/how-it-measures.md.
DEFAULT_BAND: Mapping[Method, Band | tuple[float, float, None]] = {
    Method.NVML_ENERGY: (0.95, 1.05, None),
    Method.NVML_POWER: (0.90, 1.10, None),
    Method.AMDSMI_ENERGY: (0.95, 1.05, None),
    Method.AMDSMI_POWER: (0.90, 1.10, None),
    Method.RAPL: (0.90, 1.10, None),
    Method.TDP_MODEL: TDP_TABLE_BAND,
    Method.RAM_MODEL: RAM_MODEL_BAND,
}


def _band_of(method: Method) -> tuple[float, float, float | None]:
    band = DEFAULT_BAND[method]
    if isinstance(band, Band):
        return band.low, band.high, band.coverage
    return band


DEFAULT_UNCERTAINTY: Mapping[Method, float] = {
    m: max(1.0 - _band_of(m)[0], _band_of(m)[1] - 1.0) for m in Method
}
"""Largest relative distance of each method's band from the value (for a one-number display)."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity and measurement facts of one device (become ``hw.*`` attributes)."""

    hw_id: str
    hw_type: HwType
    name: str
    vendor: str
    method: Method
    uncertainty: float = -1.0
    """Largest relative distance of the band from the value (0.05 = ±5 %); < 0: from the band.
    Setting it (>= 0) without ``band_low``/``band_high`` makes the band ``1 -/+ uncertainty``."""
    note: str = ""
    """Why this method was chosen (e.g. 'RAPL: permission denied on …/energy_uj')."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Additional facts, e.g. ``{"uuid": "GPU-…", "mig": "true"}``."""
    band_low: float = -1.0
    """The truth is at least ``value x band_low`` (< 0: the method default)."""
    band_high: float = -1.0
    """The truth is at most ``value x band_high`` (< 0: the method default)."""
    band_coverage: float | None = -1.0
    """Share of cases the band covers (0.9 = 90 %); None when the source states none;
    -1: the method default."""

    def __post_init__(self) -> None:
        low, high, coverage = _band_of(self.method)
        if self.band_low < 0 or self.band_high < 0:
            if self.uncertainty >= 0:  # an explicit symmetric figure
                low, high, coverage = max(0.0, 1.0 - self.uncertainty), 1.0 + self.uncertainty, None
            object.__setattr__(self, "band_low", low)
            object.__setattr__(self, "band_high", high)
        if self.band_coverage is not None and self.band_coverage < 0:
            object.__setattr__(self, "band_coverage", coverage)
        if self.uncertainty < 0:
            spread = max(1.0 - self.band_low, self.band_high - 1.0)
            object.__setattr__(self, "uncertainty", spread)

    @property
    def measured(self) -> bool:
        """True when the energy comes from a hardware counter."""
        return self.method.measured

    def attributes(self) -> dict[str, str]:
        """OpenTelemetry attributes identifying this device."""
        return {
            "hw.id": self.hw_id,
            "hw.type": self.hw_type.value,
            "hw.name": self.name,
            "hw.vendor": self.vendor,
            "hf_eco2ai.measurement.method": self.method.value,
        }


@dataclass(slots=True)
class Reading:
    """One reading of one device.

    ``energy_j`` is a cumulative energy counter in joules (monotonic, wrap-around already handled
    by the sensor, arbitrary origin) or ``None`` when the device only offers power, in which case
    the sampler integrates ``power_w`` over time.
    """

    power_w: float
    energy_j: float | None = None
    utilization: float | None = None
    """0..1 (``hw.gpu.utilization``); None when unknown."""
    memory_used: int | None = None
    """Bytes in use (GPU memory); None when unknown."""
    memory_limit: int | None = None
    """Bytes available (GPU memory); None when unknown."""
    scope: JobScope | None = None
    """This job's part of the interval since the previous reading (share of the device's energy,
    whether other processes used it); None: all of it is this job's (e.g. the RAM model, which is
    already per process tree)."""


class SensorError(Exception):
    """A device could not be read this time; the sampler counts it and tries again next tick."""


class DeviceLostError(SensorError):
    """A device is gone for good (e.g. NVML GPU_IS_LOST); the sampler stops reading it."""


@runtime_checkable
class Sensor(Protocol):
    """A reader of one or more devices of one kind."""

    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """The devices this sensor reads, in a fixed order."""
        ...

    def read(self, index: int) -> Reading:
        """Read device ``index``; raise :class:`SensorError` (or any exception) on failure."""
        ...

    def close(self) -> None:
        """Release handles (e.g. ``nvmlShutdown``). Idempotent."""
        ...


@runtime_checkable
class TwoStepSensor(Sensor, Protocol):
    """A sensor that can read in two steps, so the sampler takes the system calls on time and
    may do the arithmetic later (its idle batching, :mod:`hf_eco2ai.sampling_thread`).

    ``read(i)`` must equal ``decode(i, read_raw(i))``. ``decode`` does no I/O and may run on
    another thread than ``read_raw``, later; every raw reading is decoded exactly once, in the
    order read, so the two steps must keep separate state. The CPU TDP and RAM models do.
    """

    def read_raw(self, index: int) -> Any:
        """Device ``index``'s system or driver calls, as little else as possible."""
        ...

    def decode(self, index: int, raw: Any) -> Reading:
        """The reading from ``read_raw``'s value; raise :class:`SensorError` when unusable."""
        ...
