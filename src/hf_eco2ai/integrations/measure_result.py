"""What a measurement window measured: :class:`Measurement`, computed from its two ends.

A closed window is two immutable ledger snapshots and their monotonic times
(:data:`WindowEnds`); :func:`compute_measurement` turns them into the window's energy (with
band), emissions and per-device joules, and puts the ``hf_eco2ai.*`` attributes on its span.

Example:
    >>> from hf_eco2ai.energy_ledger import empty_snapshot
    >>> snap = empty_snapshot([], 1.0)
    >>> m = compute_measurement(("w", snap, 0, snap, 2_000_000_000), None)
    >>> m.name, m.duration_s, m.energy_j, dict(m.devices)
    ('w', 2.0, 0.0, {})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.trace import Span

from hf_eco2ai.energy_ledger import Snapshot
from hf_eco2ai.energy_windows import device_energies, measure_window
from hf_eco2ai.telemetry import attributes as A
from hf_eco2ai.telemetry.spans import window_attributes

DEVICE_IDS = A.DEVICE_IDS
DEVICE_TYPES = A.DEVICE_TYPES
DEVICE_JOULES = A.DEVICE_JOULES
"""Per-device breakdown on the span: three parallel arrays (hw.id, hw.type, J drawn, no PUE)."""

NAN = math.nan


@dataclass(frozen=True, slots=True)
class Measurement:
    """What one window measured.

    ``energy_j`` is attributed energy (device energy × PUE) in the band
    ``[energy_low_j, energy_high_j]``; ``devices`` maps each device's ``hw.id`` to the joules
    that device drew in the window (no PUE), so ``sum(devices.values()) * pue == energy_j``;
    ``device_types`` maps the same ids to ``hw.type`` (``gpu``, ``cpu``, ``memory``).
    ``extrapolated`` is True when no sampler tick fell inside the window (both ends
    extrapolated from the power then in force).

    Example:
        >>> m = Measurement("x", 2.0, 30.0, 27.0, 33.0, 0.5, {"cpu": 30.0}, {"cpu": "cpu"},
        ...                 {"cpu": 30.0}, 1.0, "tdp-model", False)
        >>> m.energy_kwh, m.mean_power_w
        (8.333333333333334e-06, 15.0)
    """

    name: str
    duration_s: float
    energy_j: float
    energy_low_j: float
    energy_high_j: float
    emissions_g: float
    devices: Mapping[str, float]
    device_types: Mapping[str, str]
    energy_by_type: Mapping[str, float]
    pue: float
    method: str
    extrapolated: bool

    @property
    def energy_kwh(self) -> float:
        """``energy_j`` in kWh."""
        return self.energy_j / 3.6e6

    @property
    def mean_power_w(self) -> float:
        """Mean attributed power over the window (W); NaN for an empty window."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else NAN


WindowEnds = tuple[str, Snapshot, int, Snapshot, int]
"""A closed window not computed yet: name, start snapshot and ns, end snapshot and ns."""


def compute_measurement(ends: WindowEnds, span: Span | None) -> Measurement:
    """The window's numbers; its ``hf_eco2ai.*`` attributes go on ``span`` when given."""
    name, start, start_ns, end, end_ns = ends
    window = measure_window(start, start_ns, end, end_ns)
    pue = end.pue
    before, after = device_energies(start, start_ns), device_energies(end, end_ns)
    if len(before) != len(after):
        before = after
    infos = [dev.info for dev in end.devices]
    ids = [info.hw_id for info in infos]
    joules = [a - b if a > b else 0.0 for a, b in zip(after, before, strict=True)]
    devices: dict[str, float] = dict(zip(ids, joules, strict=True))
    types: dict[str, str] = {info.hw_id: info.hw_type.value for info in infos}
    if len(devices) != len(ids):  # one hw.id for several devices: their sum
        devices = {}
        for hw_id, j in zip(ids, joules, strict=True):
            devices[hw_id] = devices.get(hw_id, 0.0) + j
    if span is not None:
        attrs = window_attributes(window, pue)
        attrs[DEVICE_IDS] = list(devices)
        attrs[DEVICE_TYPES] = list(types.values())
        attrs[DEVICE_JOULES] = list(devices.values())
        span.set_attributes(attrs)
    return Measurement(
        name=name,
        duration_s=window.duration_s,
        energy_j=window.energy_j,
        energy_low_j=window.energy_low_j,
        energy_high_j=window.energy_high_j,
        emissions_g=window.emissions_g,
        devices=devices,
        device_types=types,
        energy_by_type=window.energy_by_type,  # a dict measure_window built for this window
        pue=pue,
        method=window.method,
        extrapolated=window.extrapolated,
    )


def unmeasured(name: str, start_ns: int, end_ns: int) -> Measurement:
    return Measurement(
        name, max(0, end_ns - start_ns) / 1e9, NAN, NAN, NAN, NAN,
        {}, {}, {}, NAN, "", True,
    )  # fmt: skip
