"""Measurement windows: the energy and emissions between two points in time.

A span (run, epoch, evaluation, step) is a window. It keeps the snapshot and monotonic time at
its start, and at its end :func:`measure_window` takes the difference. Both ends are
extrapolated from the nearest snapshot with the power then in force, so a window shorter than
the sampler interval is not a silent zero; such a window is flagged ``extrapolated``.

Energy and emissions are the **job** scope (this process tree's share); ``host_*`` fields carry
the **host** scope (what the hardware drew). :func:`shared_host_note` says, in one line, when
other processes used a significant share of the host's CPU time during the window.

Extrapolation is bounded: at most :func:`extrapolation_limit_s` past a snapshot (a few sampler
intervals). When the sampler stalled (a wedged driver call, or it was stopped while the run went
on), the time after that bound is not filled in: it is a gap, counted in ``gap_s``, and the
window is ``extrapolated``; its energy there is not counted.

Example:
    >>> from hf_eco2ai.energy_ledger import empty_snapshot
    >>> w = measure_window(empty_snapshot([], 1.0), 0, empty_snapshot([], 1.0), 10**9)
    >>> w.energy_j, w.duration_s, w.extrapolated
    (0.0, 1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from hf_eco2ai.energy_ledger import J_PER_KWH, DeviceStatus, Snapshot, combined_coverage
from hf_eco2ai.sensors.base import HwType
from hf_eco2ai.sensors.process_share import SHARED_THRESHOLD

__all__ = [
    "EnergyWindow",
    "device_energies",
    "extrapolation_limit_s",
    "measure_window",
    "scope_facts",
    "shared_host_note",
    "unmeasured_s",
]


@dataclass(frozen=True, slots=True)
class EnergyWindow:
    """Energy (attributed, PUE applied) and emissions of one time window, job scope first."""

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
    extrapolated: bool
    """True when no sampler tick fell inside the window (both ends extrapolated), when an end
    lies further past its snapshot than extrapolation may reach (a gap), or when a device is
    stalled (its energy after its last good reading is missing)."""
    gap_s: float = 0.0
    """Seconds at the window's end not covered by any reading (the sampler stalled or was
    stopped): not extrapolated, not counted in the energy."""
    host_energy_j: float = 0.0
    """What the devices drew in the window (host scope, PUE applied)."""
    host_emissions_g: float = 0.0
    host_energy_by_type: Mapping[str, float] = field(default_factory=dict)
    job_cpu_s: float = 0.0
    """CPU seconds of this process tree in the window (summed over CPU devices)."""
    busy_cpu_s: float = 0.0
    """Busy CPU seconds of the host in the window (summed over CPU devices)."""
    shared_devices: tuple[str, ...] = ()
    """``hw.id`` of the devices other processes used during the window (GPUs, CPUs)."""
    band_coverage: float | None = None
    """Share of cases ``[energy_low_j, energy_high_j]`` covers (union bound over the devices'
    derived bands); None when only measured devices (no stated coverage) contributed."""

    @property
    def other_cpu_share(self) -> float | None:
        """Share of the host's busy CPU time used by other processes (None: not known).

        >>> EnergyWindow(1, 0, 0, 0, 0, {}, {}, 0, "", "", (), False, job_cpu_s=1.0,
        ...              busy_cpu_s=4.0).other_cpu_share
        0.75
        """
        if self.busy_cpu_s <= 0.0:
            return None
        return min(max(1.0 - self.job_cpu_s / self.busy_cpu_s, 0.0), 1.0)

    @property
    def method(self) -> str:
        """Measurement methods as one attribute value, e.g. ``"nvml-energy,tdp-model"``."""
        return ",".join(self.methods)


EXTRAPOLATE_INTERVALS = 3.0
EXTRAPOLATE_MIN_S = 2.0


def extrapolation_limit_s(snap: Snapshot) -> float:
    """How far past ``snap`` its power may be extrapolated: ``max(2 s, 3 x interval)``
    (unbounded when the interval is unknown).

    >>> from hf_eco2ai.energy_ledger import empty_snapshot
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

    >>> from hf_eco2ai.energy_ledger import empty_snapshot
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


def _host_at(snap: Snapshot, t_ns: int) -> tuple[list[float], list[float]]:
    """Host-scope (energy J, emissions g) of each device, extrapolated to ``t_ns`` (at most
    :func:`extrapolation_limit_s` past the snapshot)."""
    dt = _reach_s(snap, t_ns)
    factor = snap.pue * snap.intensity.value / J_PER_KWH
    energy = [d.host_energy_j + d.host_power_w * dt for d in snap.devices]
    emissions = [d.host_emissions_g + d.host_power_w * dt * factor for d in snap.devices]
    return energy, emissions


def shared_host_note(window: EnergyWindow, threshold: float = SHARED_THRESHOLD) -> str | None:
    """One line when other processes used more than ``threshold`` of the host's CPU time, or
    other processes used a GPU, during ``window``; None otherwise.

    >>> w = EnergyWindow(1, 0, 0, 0, 0, {}, {}, 0, "", "", (), False, job_cpu_s=1.0,
    ...                  busy_cpu_s=4.0)
    >>> shared_host_note(w)
    "host was shared: 75 % of its busy CPU time was other processes; job energy is this run's share"
    """
    parts = []
    other = window.other_cpu_share
    if other is not None and other > threshold:
        parts.append(f"{other:.0%} of its busy CPU time was other processes".replace("%", " %"))
    gpus = [d for d in window.shared_devices if d != "cpu" and not d.startswith("cpu")]
    if gpus:
        parts.append(f"other processes used {', '.join(gpus)}")
    if not parts:
        return None
    return f"host was shared: {'; '.join(parts)}; job energy is this run's share"


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
    (h0, hc0), (h1, hc1) = _host_at(start, start_t_ns), _host_at(end, end_t_ns)
    same = len(start.devices) == len(end.devices)
    if not same:
        h0, hc0 = h1, hc1
    e_type: dict[str, float] = {}
    c_type: dict[str, float] = {}
    h_type: dict[str, float] = {}
    energy = low = high = emissions = host_energy = host_emissions = 0.0
    job_cpu = busy_cpu = 0.0
    shared: list[str] = []
    des: list[float] = []
    for i, dev in enumerate(end.devices):
        de = max(0.0, e1[i] - e0[i]) * pue
        dc = max(0.0, c1[i] - c0[i])
        dh = max(0.0, h1[i] - h0[i]) * pue
        t = dev.info.hw_type.value
        e_type[t] = e_type.get(t, 0.0) + de
        c_type[t] = c_type.get(t, 0.0) + dc
        h_type[t] = h_type.get(t, 0.0) + dh
        energy += de
        emissions += dc
        host_energy += dh
        host_emissions += max(0.0, hc1[i] - hc0[i])
        low += de * dev.info.band_low
        high += de * dev.info.band_high
        des.append(de)
        before = start.devices[i] if same else dev
        if dev.info.hw_type is HwType.CPU:
            job_cpu += max(0.0, dev.job_cpu_s - before.job_cpu_s)
            busy_cpu += max(0.0, dev.busy_cpu_s - before.busy_cpu_s)
        if dev.shared_intervals > before.shared_intervals or (end.seq == start.seq and dev.shared):
            shared.append(dev.info.hw_id)
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
        extrapolated=end.seq == start.seq or gap_s > 0.0 or stale_start or stalled,
        gap_s=gap_s,
        host_energy_j=host_energy,
        host_emissions_g=host_emissions,
        host_energy_by_type=h_type,
        job_cpu_s=job_cpu,
        busy_cpu_s=busy_cpu,
        shared_devices=tuple(shared),
        band_coverage=combined_coverage(end.devices, des),
    )


def scope_facts(window: EnergyWindow) -> dict[str, object]:
    """Both scopes of ``window``, named, for a report (JSON-ready).

    >>> w = EnergyWindow(1, 2.0, 2.0, 3.0, 0.1, {"cpu": 2.0}, {}, 0, "", "", (), False,
    ...                  host_energy_j=8.0, host_energy_by_type={"cpu": 8.0}, job_cpu_s=1.0,
    ...                  busy_cpu_s=4.0, shared_devices=("cpu",), band_coverage=0.9)
    >>> facts = scope_facts(w)
    >>> facts["job"]["energy_j"], facts["host"]["energy_j"], facts["other_cpu_share"]
    (2.0, 8.0, 0.75)
    """
    return {
        "job": {
            "what": "this process tree's share of each device",
            "energy_j": window.energy_j,
            "emissions_g": window.emissions_g,
            "energy_by_type": dict(window.energy_by_type),
        },
        "host": {
            "what": "what the hardware drew, every process included",
            "energy_j": window.host_energy_j,
            "emissions_g": window.host_emissions_g,
            "energy_by_type": dict(window.host_energy_by_type),
        },
        "job_cpu_s": window.job_cpu_s,
        "busy_cpu_s": window.busy_cpu_s,
        "other_cpu_share": window.other_cpu_share,
        "shared_devices": list(window.shared_devices),
        "shared_host_note": shared_host_note(window),
        "band_coverage": window.band_coverage,
    }
