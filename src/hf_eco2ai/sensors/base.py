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
from typing import Protocol, runtime_checkable


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


# Documented relative uncertainty of each method (half-width of the band around the value).
# See docs/how-it-measures.md for where these come from.
DEFAULT_UNCERTAINTY: Mapping[Method, float] = {
    Method.NVML_ENERGY: 0.05,
    Method.NVML_POWER: 0.10,
    Method.AMDSMI_ENERGY: 0.05,
    Method.AMDSMI_POWER: 0.10,
    Method.RAPL: 0.10,
    Method.TDP_MODEL: 0.50,
    Method.RAM_MODEL: 0.60,
}


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Identity and measurement facts of one device (become ``hw.*`` attributes)."""

    hw_id: str
    hw_type: HwType
    name: str
    vendor: str
    method: Method
    uncertainty: float = -1.0
    """Relative half-width of the uncertainty band (0.05 = ±5 %); < 0 means the method default."""
    note: str = ""
    """Why this method was chosen (e.g. 'RAPL: permission denied on …/energy_uj')."""
    extra: Mapping[str, str] = field(default_factory=dict)
    """Additional facts, e.g. ``{"uuid": "GPU-…", "mig": "true"}``."""

    def __post_init__(self) -> None:
        if self.uncertainty < 0:
            object.__setattr__(self, "uncertainty", DEFAULT_UNCERTAINTY[self.method])

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
