"""From readings to energy increments: one device's integration rules, checks and faults.

Per reading, :meth:`DeviceTrack.increment` returns the energy since the previous one:

* a hardware counter's difference where there is one; a step back or an absurd step is bridged
  by power for that interval (a driver reload);
* otherwise power integrated over the interval: the trapezoid rule for instantaneous power, a
  rectangle for methods whose power is already the mean over the interval just ended
  (:data:`INTERVAL_MEAN_METHODS`: the TDP model), so energy is not shifted half an interval;
* a counter found faulty — still for :data:`FREEZE_MIN_S` (or 3 intervals) while the device's
  own power reading says it drew at least :data:`FREEZE_MIN_J`, or stepping back twice — is
  dropped: its frozen stretch is filled from power, the device is integrated from power from
  then on, and its facts change to ``nvml-power`` with ``extra["counter_fault"]`` and a note.

Example:
    >>> from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading
    >>> gpu = DeviceInfo("GPU-1", HwType.GPU, "GPU", "NVIDIA", Method.NVML_ENERGY)
    >>> track = DeviceTrack(sensor=None, index=0)
    >>> track.increment(0, Reading(100.0, 50.0), 100.0, gpu, 1.0)
    (0.0, None)
    >>> track.increment(10**9, Reading(100.0, 150.0), 100.0, gpu, 1.0)
    (100.0, None)
"""

from __future__ import annotations

import dataclasses
import math

from hf_eco2ai.sensors.base import (
    DEFAULT_UNCERTAINTY,
    DeviceInfo,
    Method,
    Reading,
    Sensor,
    SensorError,
)

__all__ = [
    "FREEZE_MIN_J",
    "FREEZE_MIN_S",
    "INTERVAL_MEAN_METHODS",
    "MAX_DEVICE_POWER_W",
    "DeviceTrack",
    "ImplausibleReadingError",
    "check_reading",
]

MAX_DEVICE_POWER_W = 10_000.0
"""No single device read here draws more: a larger power, or a counter step implying more
(over at least 1 s, the coarsest counter update period), is a glitch, never energy."""


class ImplausibleReadingError(SensorError):
    """A reading with a non-finite or absurd value: counted and skipped like a failed read."""


def check_reading(reading: Reading) -> Reading:
    """``reading``, or :class:`ImplausibleReadingError` for a non-finite or absurd value."""
    power, energy = float(reading.power_w), reading.energy_j
    if not (math.isfinite(power) and power <= MAX_DEVICE_POWER_W) or (
        energy is not None and not math.isfinite(energy)
    ):
        raise ImplausibleReadingError(f"power {power!r} W, energy {energy!r} J")
    return reading


FREEZE_MIN_S = 2.0
"""A hardware counter that has not moved for ``max(FREEZE_MIN_S, 3 x interval)`` while the
device's own power reading says it drew at least :data:`FREEZE_MIN_J` is faulty."""
FREEZE_MIN_J = 10.0

INTERVAL_MEAN_METHODS = frozenset({Method.TDP_MODEL})
"""Methods whose ``power_w`` is the mean over the interval since the previous read: integrated
as a rectangle on that interval, not as a trapezoid (which would land half an interval late)."""


class DeviceTrack:
    """One device's integration state and rules (used by the sampler thread only)."""

    __slots__ = (
        "backwards",
        "counter_fault",
        "errors",
        "frozen_evidence_j",
        "frozen_j",
        "frozen_s",
        "index",
        "last_energy",
        "last_power",
        "last_t",
        "logged",
        "lost",
        "mean_method",
        "sensor",
        "stalled",
    )

    def __init__(self, sensor: Sensor, index: int) -> None:
        self.sensor = sensor
        self.index = index
        self.last_t: int | None = None
        self.last_energy: float | None = None
        self.last_power = 0.0
        self.errors = 0
        self.lost = False
        self.stalled = False
        self.counter_fault = False
        self.backwards = 0
        self.frozen_s = 0.0
        self.frozen_j = 0.0
        self.frozen_evidence_j = 0.0
        self.logged: set[str] = set()
        self.mean_method: tuple[Method | None, bool] = (None, False)
        """The device's method as last seen, and whether it is in :data:`INTERVAL_MEAN_METHODS`
        (looked up once per method, not per reading)."""

    def increment(
        self, t: int, reading: Reading, power: float, info: DeviceInfo, interval_s: float
    ) -> tuple[float, DeviceInfo | None]:
        """The energy (J) since the previous reading at monotonic ``t`` (ns), and the device's
        new facts when its counter is found faulty at this reading (else None)."""
        delta = 0.0
        faulted = None
        if self.last_t is not None:
            dt = (t - self.last_t) / 1e9
            if info.method is not self.mean_method[0]:
                self.mean_method = (info.method, info.method in INTERVAL_MEAN_METHODS)
            # the mean over this very interval (a rectangle), or the trapezoid rule
            mean = self.mean_method[1]
            by_power = power * dt if mean else 0.5 * (power + self.last_power) * dt
            energy = None if self.counter_fault else reading.energy_j
            if energy is not None and self.last_energy is not None:
                delta = energy - self.last_energy
                bridged = delta < 0.0 or delta > MAX_DEVICE_POWER_W * max(dt, 1.0)
                if bridged:
                    # counter reset (driver reload, device reset) or glitch: bridge by power
                    self.backwards += delta < 0.0
                    delta = by_power
                backlog, faulted = self._counter_check(
                    info, delta, by_power, min(self.last_power, power) * dt, dt, bridged, interval_s
                )
                delta += backlog
            else:
                delta = by_power
        self.last_t = t
        self.last_energy = reading.energy_j
        self.last_power = power
        return max(0.0, delta), faulted

    def _counter_check(
        self,
        info: DeviceInfo,
        delta: float,
        by_power: float,
        evidence_j: float,
        dt: float,
        bridged: bool,
        interval_s: float,
    ) -> tuple[float, DeviceInfo | None]:
        """Energy to add when the counter is found faulty now (its frozen stretch, by power),
        and the device's new facts.

        Only where power is read independently of the counter (``nvml-energy``): a counter that
        stays still for a while, or steps back twice, while the power reading says the device
        draws power, undercounts; from then on the device is integrated from power and flagged.
        The evidence is the lower of the two power readings around each interval (``evidence_j``):
        a device whose power fell to zero legitimately stops its counter.
        """
        if info.method is not Method.NVML_ENERGY:
            return 0.0, None
        if (delta > 0.0 and not bridged) or (bridged and self.backwards < 2):
            self.frozen_s = self.frozen_j = self.frozen_evidence_j = 0.0
            return 0.0, None
        self.frozen_s += dt
        self.frozen_j += by_power
        self.frozen_evidence_j += evidence_j
        frozen = self.frozen_s >= max(FREEZE_MIN_S, 3.0 * interval_s)
        if not (self.backwards >= 2 or (frozen and self.frozen_evidence_j >= FREEZE_MIN_J)):
            return 0.0, None
        self.counter_fault = True
        how = "ran backwards" if self.backwards >= 2 else f"did not move for {self.frozen_s:.3g} s"
        note = (
            f"counter fault: the energy counter {how} while the power reading showed"
            f" {self.frozen_j:.4g} J drawn; power integrated from then on"
        )
        faulted = dataclasses.replace(
            info,
            method=Method.NVML_POWER,
            uncertainty=DEFAULT_UNCERTAINTY[Method.NVML_POWER],
            note=f"{info.note}; {note}" if info.note else note,
            extra={**info.extra, "counter_fault": "true"},
        )
        backlog = self.frozen_j - (by_power if bridged else 0.0)  # bridged: already counted
        self.frozen_s = self.frozen_j = self.frozen_evidence_j = 0.0
        return backlog, faulted
