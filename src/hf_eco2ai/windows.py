"""Measurement windows: the energy and emissions between two points in time.

A span (run, epoch, evaluation, step) is a window. It keeps the snapshot and monotonic time at
its start, and at its end :func:`measure_window` takes the difference. Both ends are
extrapolated from the nearest snapshot with the power then in force, so a window shorter than
the sampler interval is not a silent zero; such a window is flagged ``approximate``.

Extrapolation is bounded: at most :func:`extrapolation_limit_s` past a snapshot (a few sampler
intervals). When the sampler stalled (a wedged driver call, or it was stopped while the run went
on), the time after that bound is not filled in: it is a gap, counted in ``gap_s``, and the
window is ``approximate``; its energy there is not counted.

Example:
    >>> from hf_eco2ai.ledger import empty_snapshot
    >>> w = measure_window(empty_snapshot([], 1.0), 0, empty_snapshot([], 1.0), 10**9)
    >>> w.energy_j, w.duration_s, w.approximate
    (0.0, 1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hf_eco2ai.ledger import J_PER_KWH, DeviceStatus, Snapshot


@dataclass(frozen=True, slots=True)
class EnergyWindow:
    """Energy (attributed, PUE applied) and emissions of one time window."""

    duration_s: float
    energy_j: float
    energy_low_j: float
    energy_high_j: float
    emissions_g: float
    energy_by_type: Mapping[str, float]
    emissions_by_type: Mapping[str, float]
    mean_intensity: float
    """gCO2e/kWh averaged over the window (emissions / energy)."""
    zone: str
    source: str
    methods: tuple[str, ...]
    approximate: bool
    """True when no sampler tick fell inside the window (both ends extrapolated), when an end
    lies further past its snapshot than extrapolation may reach (a gap), or when a device is
    stalled (its energy after its last good reading is missing)."""
    gap_s: float = 0.0
    """Seconds at the window's end not covered by any reading (the sampler stalled or was
    stopped): not extrapolated, not counted in the energy."""

    @property
    def method(self) -> str:
        """Measurement methods as one attribute value, e.g. ``"nvml-energy,tdp-model"``."""
        return ",".join(self.methods)


EXTRAPOLATE_INTERVALS = 3.0
EXTRAPOLATE_MIN_S = 2.0


def extrapolation_limit_s(snap: Snapshot) -> float:
    """How far past ``snap`` its power may be extrapolated: ``max(2 s, 3 x interval)``
    (unbounded when the interval is unknown).

    >>> from hf_eco2ai.ledger import empty_snapshot
    >>> extrapolation_limit_s(empty_snapshot([], 1.0))
    inf
    """
    if snap.interval_s <= 0:
        return math.inf
    return max(EXTRAPOLATE_MIN_S, EXTRAPOLATE_INTERVALS * snap.interval_s)


def _reach_s(snap: Snapshot, t_ns: int) -> float:
    if not snap.seq:
        return 0.0
    return min(max(0, t_ns - snap.t_ns) / 1e9, extrapolation_limit_s(snap))


def unmeasured_s(snap: Snapshot, t_ns: int) -> float:
    """Seconds before ``t_ns`` that ``snap`` cannot account for (beyond extrapolation).

    >>> from hf_eco2ai.ledger import empty_snapshot
    >>> unmeasured_s(empty_snapshot([], 1.0), 10**9)
    0.0
    """
    if not snap.seq:
        return 0.0
    return max(0.0, max(0, t_ns - snap.t_ns) / 1e9 - extrapolation_limit_s(snap))


def device_energies(snap: Snapshot, t_ns: int) -> list[float]:
    """Raw energy (J, no PUE) of each device of ``snap`` extrapolated to ``t_ns`` (at most
    :func:`extrapolation_limit_s` past the snapshot)."""
    dt = _reach_s(snap, t_ns)
    return [d.energy_j + d.power_w * dt for d in snap.devices]


def _emissions_at(snap: Snapshot, t_ns: int) -> list[float]:
    dt = _reach_s(snap, t_ns)
    factor = snap.pue * snap.intensity.value / J_PER_KWH
    return [d.emissions_g + d.power_w * dt * factor for d in snap.devices]


def measure_window(start: Snapshot, start_t_ns: int, end: Snapshot, end_t_ns: int) -> EnergyWindow:
    """Energy and emissions between ``start_t_ns`` and ``end_t_ns`` (monotonic ns).

    ``start`` and ``end`` are the ledger snapshots read at those times. Devices are matched by
    position, so both snapshots must come from the same ledger.
    """
    pue = end.pue
    e0, e1 = device_energies(start, start_t_ns), device_energies(end, end_t_ns)
    c0, c1 = _emissions_at(start, start_t_ns), _emissions_at(end, end_t_ns)
    if len(e0) != len(e1):  # different ledgers: refuse to mix, report nothing
        e0, c0 = e1, c1
    e_type: dict[str, float] = {}
    c_type: dict[str, float] = {}
    energy = low = high = emissions = 0.0
    for i, dev in enumerate(end.devices):
        de = max(0.0, e1[i] - e0[i]) * pue
        dc = max(0.0, c1[i] - c0[i])
        t = dev.info.hw_type.value
        e_type[t] = e_type.get(t, 0.0) + de
        c_type[t] = c_type.get(t, 0.0) + dc
        energy += de
        emissions += dc
        u = dev.info.uncertainty
        low += de * (1.0 - u)
        high += de * (1.0 + u)
    kwh = energy / J_PER_KWH  # 0.0 for a subnormal energy: test kwh, not energy
    mean_intensity = emissions / kwh if kwh > 0 else end.intensity.value
    duration_s = max(0, end_t_ns - start_t_ns) / 1e9
    gap_s = min(duration_s, unmeasured_s(end, end_t_ns))
    stale_start = unmeasured_s(start, start_t_ns) > 0.0
    stalled = any(d.status == DeviceStatus.STALLED for d in end.devices)
    return EnergyWindow(
        duration_s=duration_s,
        energy_j=energy,
        energy_low_j=low,
        energy_high_j=high,
        emissions_g=emissions,
        energy_by_type=e_type,
        emissions_by_type=c_type,
        mean_intensity=mean_intensity,
        zone=end.intensity.zone,
        source=end.intensity.source,
        methods=end.methods,
        approximate=end.seq == start.seq or gap_s > 0.0 or stale_start or stalled,
        gap_s=gap_s,
    )
