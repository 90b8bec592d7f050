"""The ledger: cumulative energy and emissions per device, a bounded history, and snapshots.

The sampler thread is the only writer (:meth:`Ledger.record`). Everything else reads immutable
:class:`Snapshot` objects through :meth:`Ledger.snapshot`, which returns the last published one:
no lock, no allocation, no I/O. Emissions are integrated per sample interval,
``Σ energy_i × PUE × intensity_i``, so a grid intensity that changes mid-run is accounted for.

Two scopes are kept for every device (see ``docs/how-it-measures.md``):

* **host** — what the hardware drew (``host_energy_j``, ``host_power_w``, ``host_emissions_g``):
  what ``hw.energy`` / ``hw.power`` report;
* **job** — this process tree's share (``energy_j``, ``power_w``, ``emissions_g``): each
  interval's host energy times the reading's :class:`~hf_eco2ai.sensors.process_share.JobScope`
  share (1 when the reading carries none). Runs, spans, the report headline and the
  ``hf_eco2ai.*`` metrics read this one.

CPU devices also accumulate this job's CPU seconds and the host's busy CPU seconds, so a window can
say how much of the host other processes used (:func:`hf_eco2ai.energy_windows.shared_host_note`).

Example:
    >>> from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity
    >>> cpu = DeviceInfo("cpu", HwType.CPU, "Example", "Acme", Method.TDP_MODEL)
    >>> ledger = Ledger([cpu], pue=1.5, history_size=16)
    >>> one_kwh = 3.6e6  # J
    >>> ledger.record(1_000_000_000, [one_kwh], [100.0], CarbonIntensity(360.0, "XX", "config"))
    >>> snap = ledger.snapshot()
    >>> snap.energy_j, round(snap.emissions_g, 3)  # 1 kWh x PUE 1.5 x 360 g/kWh
    (5400000.0, 540.0)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.sensors.base import DeviceInfo, HwType
from hf_eco2ai.sensors.process_share import JobScope

J_PER_KWH = 3.6e6

_EMPTY_INTENSITY = CarbonIntensity(0.0, "unknown", "none")


class DeviceStatus:
    """Status strings of a device in a snapshot."""

    OK = "ok"
    ERROR = "error"
    """The last read failed; the sampler keeps trying."""
    LOST = "lost"
    """The device is gone (e.g. GPU_IS_LOST); no longer read."""
    STALLED = "stalled"
    """A read did not return within the sampler's bound (a wedged driver call): the device
    keeps its last good total and is no longer read."""


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One device in a snapshot: raw energy (no PUE) since start, in both scopes.

    ``energy_j`` / ``power_w`` / ``emissions_g`` are this job's share (job scope);
    ``host_energy_j`` / ``host_power_w`` / ``host_emissions_g`` what the device drew (host scope,
    what ``hw.energy`` and ``hw.power`` report). They are equal where nothing is shared.
    """

    info: DeviceInfo
    energy_j: float
    power_w: float
    emissions_g: float
    utilization: float | None = None
    memory_used: int | None = None
    memory_limit: int | None = None
    status: str = DeviceStatus.OK
    errors: int = 0
    host_energy_j: float = 0.0
    host_power_w: float = 0.0
    host_emissions_g: float = 0.0
    job_share: float = 1.0
    """This job's share of the device in the latest interval (0..1)."""
    shared: bool | None = None
    """Other processes used the device in the latest interval (None: unknown)."""
    shared_intervals: int = 0
    """Intervals since start in which the device was shared."""
    job_cpu_s: float = 0.0
    """CPU seconds of this process tree since start (CPU devices; 0 elsewhere)."""
    busy_cpu_s: float = 0.0
    """Busy CPU seconds of the host since start (CPU devices; 0 elsewhere)."""

    @property
    def energy_low_j(self) -> float:
        """Lower end of the band of ``energy_j`` (``energy_j x info.band_low``)."""
        return self.energy_j * self.info.band_low

    @property
    def energy_high_j(self) -> float:
        """Upper end of the band of ``energy_j`` (``energy_j x info.band_high``)."""
        return self.energy_j * self.info.band_high


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything known at the last sampler tick. Immutable; safe to share across threads.

    ``energy_j`` and ``energy_by_type`` are *attributed* energy (device energy × PUE) of the
    **job** scope; ``host_*`` the same for the **host** scope (what the hardware drew).
    """

    t_ns: int
    seq: int
    devices: tuple[DeviceState, ...]
    energy_j: float
    energy_low_j: float
    energy_high_j: float
    emissions_g: float
    emissions_low_g: float
    emissions_high_g: float
    power_w: float
    """Attributed power now (Σ device power × PUE)."""
    intensity: CarbonIntensity
    pue: float
    energy_by_type: Mapping[str, float] = field(default_factory=dict)
    emissions_by_type: Mapping[str, float] = field(default_factory=dict)
    power_by_type: Mapping[str, float] = field(default_factory=dict)
    host_energy_j: float = 0.0
    """Attributed energy (PUE applied) of the host scope: what the devices drew."""
    host_emissions_g: float = 0.0
    host_power_w: float = 0.0
    host_energy_by_type: Mapping[str, float] = field(default_factory=dict)
    host_emissions_by_type: Mapping[str, float] = field(default_factory=dict)

    @property
    def band_coverage(self) -> float | None:
        """Coverage of ``[energy_low_j, energy_high_j]``: see :func:`combined_coverage`."""
        return combined_coverage(self.devices)

    interval_s: float = 0.0
    """The sampler's interval (0: unknown). Windows extrapolate a snapshot only a few intervals
    past ``t_ns``; time beyond that is a gap, not a measurement (:mod:`hf_eco2ai.energy_windows`)."""

    @property
    def methods(self) -> tuple[str, ...]:
        """Distinct measurement methods in use, sorted."""
        return tuple(sorted({d.info.method.value for d in self.devices}))

    @property
    def measured(self) -> bool:
        """True only when every device is read from a hardware counter."""
        return bool(self.devices) and all(d.info.measured for d in self.devices)


def combined_coverage(
    devices: Sequence[DeviceState], energies: Sequence[float] | None = None
) -> float | None:
    """Coverage of a summed band: ``1 - Σ(1 - coverage_i)`` over devices with energy.

    The sum of the devices' bands contains the true total whenever every device's band contains
    its own, so this union bound holds whatever the errors' correlation. Devices whose band has
    no stated coverage (measured methods: a vendor's accuracy figure) are left out; None when
    no device with energy states one.

    >>> from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
    >>> cpu = DeviceState(DeviceInfo("cpu", HwType.CPU, "c", "v", Method.TDP_MODEL), 5.0, 0, 0)
    >>> ram = DeviceState(DeviceInfo("memory", HwType.MEMORY, "r", "v", Method.RAM_MODEL), 1.0, 0, 0)
    >>> round(combined_coverage([cpu, ram]), 2), combined_coverage([cpu, ram], [0.0, 0.0])
    (0.9, None)
    """
    missed = 0.0
    stated = False
    for i, d in enumerate(devices):
        e = d.energy_j if energies is None else energies[i]
        c = d.info.band_coverage
        if e > 0.0 and c is not None:
            stated = True
            missed += 1.0 - c
    return max(0.0, 1.0 - missed) if stated else None


def empty_snapshot(devices: Sequence[DeviceInfo], pue: float, t_ns: int = 0) -> Snapshot:
    """A snapshot with all totals at zero (before the first tick)."""
    return Snapshot(
        t_ns=t_ns,
        seq=0,
        devices=tuple(DeviceState(d, 0.0, 0.0, 0.0) for d in devices),
        energy_j=0.0,
        energy_low_j=0.0,
        energy_high_j=0.0,
        emissions_g=0.0,
        emissions_low_g=0.0,
        emissions_high_g=0.0,
        power_w=0.0,
        intensity=_EMPTY_INTENSITY,
        pue=pue,
        energy_by_type={t.value: 0.0 for t in _types(devices)},
        emissions_by_type={t.value: 0.0 for t in _types(devices)},
        power_by_type={t.value: 0.0 for t in _types(devices)},
        host_energy_by_type={t.value: 0.0 for t in _types(devices)},
        host_emissions_by_type={t.value: 0.0 for t in _types(devices)},
    )


def _types(devices: Sequence[DeviceInfo]) -> list[HwType]:
    seen: list[HwType] = []
    for d in devices:
        if d.hw_type not in seen:
            seen.append(d.hw_type)
    return seen


@dataclass(frozen=True, slots=True)
class History:
    """A copy of the ring buffer, oldest first.

    ``t_ns`` (n,), ``power_w`` (n, devices) raw device power of the job scope, ``energy_j`` (n,)
    attributed cumulative energy of the job scope, ``intensity`` (n,) gCO2e/kWh in force;
    ``host_energy_j`` (n,) the attributed cumulative energy of the host scope.
    """

    devices: tuple[DeviceInfo, ...]
    t_ns: npt.NDArray[np.int64]
    power_w: npt.NDArray[np.float64]
    energy_j: npt.NDArray[np.float64]
    intensity: npt.NDArray[np.float64]
    host_energy_j: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.float64)
    )


class Ledger:
    """Cumulative totals per device and a bounded ring buffer of recent samples."""

    def __init__(self, devices: Sequence[DeviceInfo], *, pue: float, history_size: int) -> None:
        self.devices: tuple[DeviceInfo, ...] = tuple(devices)
        self.pue = float(pue)
        n = len(self.devices)
        self._energy = [0.0] * n  # job scope
        self._emissions = [0.0] * n
        self._host_energy = [0.0] * n
        self._host_emissions = [0.0] * n
        self._share = [1.0] * n
        self._shared: list[bool | None] = [None] * n
        self._shared_n = [0] * n
        self._job_cpu = [0.0] * n
        self._busy_cpu = [0.0] * n
        self._errors = [0] * n
        self._status = [DeviceStatus.OK] * n
        self._types = [d.hw_type.value for d in self.devices]
        self._type_names = [t.value for t in _types(self.devices)]
        self._band = [(d.band_low, d.band_high) for d in self.devices]
        self._seq = 0
        self._lock = threading.Lock()
        self._cap = int(history_size)
        self._t = np.zeros(self._cap, dtype=np.int64)
        self._p = np.zeros((self._cap, n), dtype=np.float64)
        self._e = np.zeros(self._cap, dtype=np.float64)
        self._he = np.zeros(self._cap, dtype=np.float64)
        self._ci = np.zeros(self._cap, dtype=np.float64)
        self._count = 0
        self.interval_s = 0.0
        """Set by the sampler; carried on every snapshot (see :attr:`Snapshot.interval_s`)."""
        self._latest = empty_snapshot(self.devices, self.pue)

    # ------------------------------------------------------------------ writer side
    def record(
        self,
        t_ns: int,
        energy_deltas_j: Sequence[float],
        power_w: Sequence[float],
        intensity: CarbonIntensity,
        *,
        utilization: Sequence[float | None] | None = None,
        memory_used: Sequence[int | None] | None = None,
        memory_limit: Sequence[int | None] | None = None,
        status: Sequence[str] | None = None,
        errors: Sequence[int] | None = None,
        scope: Sequence[JobScope | None] | None = None,
    ) -> None:
        """Add one interval's energy per device (raw J, ≥ 0) and publish a new snapshot.

        ``energy_deltas_j`` and ``power_w`` are host scope (what the device drew); ``scope``
        gives each device's job share of the interval (None: all of it is the job's).
        """
        n = len(self.devices)
        factor = self.pue * intensity.value / J_PER_KWH
        with self._lock:
            for i in range(n):
                sc = scope[i] if scope is not None else None
                if sc is not None:
                    self._share[i] = sc.share
                    self._shared[i] = sc.shared
                    self._shared_n[i] += 1 if sc.shared else 0
                    self._job_cpu[i] += sc.job_cpu_s
                    self._busy_cpu[i] += sc.busy_cpu_s
                elif scope is not None:
                    self._share[i], self._shared[i] = 1.0, None
                delta = energy_deltas_j[i]
                if delta > 0.0:
                    job = delta * (sc.share if sc is not None else 1.0)
                    self._host_energy[i] += delta
                    self._host_emissions[i] += delta * factor
                    self._energy[i] += job
                    self._emissions[i] += job * factor
            if status is not None:
                self._status = list(status)
            if errors is not None:
                self._errors = list(errors)
            self._seq += 1
            slot = self._count % self._cap
            self._count += 1
            self._t[slot] = t_ns
            if n:
                self._p[slot, :] = [p * self._share[i] for i, p in enumerate(power_w)]
            self._e[slot] = sum(self._energy) * self.pue
            self._he[slot] = sum(self._host_energy) * self.pue
            self._ci[slot] = intensity.value
            self._latest = self._build(
                t_ns, power_w, intensity, utilization, memory_used, memory_limit
            )

    def set_device(self, index: int, info: DeviceInfo) -> None:
        """Replace one device's facts (e.g. its method after a counter fault), same ``hw_id``
        and type; published at the next record."""
        with self._lock:
            devices = list(self.devices)
            devices[index] = info
            self.devices = tuple(devices)
            self._band[index] = (info.band_low, info.band_high)

    def mark_stalled(self, indices: Sequence[int], note: str) -> None:
        """Publish ``indices`` as :attr:`DeviceStatus.STALLED` now, with ``note`` added to their
        facts and their power set to 0 (nothing is extrapolated for them); totals are kept.

        Called from a thread other than the sampler's (the sampler is the one that is stuck),
        so the snapshot is republished here rather than at the next record.
        """
        if not indices:
            return
        with self._lock:
            devices = list(self.devices)
            for i in indices:
                self._status[i] = DeviceStatus.STALLED
                old = devices[i]
                devices[i] = dataclasses.replace(
                    old, note=f"{old.note}; {note}" if old.note else note
                )
            self.devices = tuple(devices)
            latest = self._latest
            states = list(latest.devices)
            power = [d.power_w for d in states]
            for i in indices:
                power[i] = 0.0
            self._latest = dataclasses.replace(
                self._build(
                    latest.t_ns,
                    power,
                    latest.intensity,
                    [d.utilization for d in states],
                    [d.memory_used for d in states],
                    [d.memory_limit for d in states],
                ),
                seq=latest.seq,  # no new reading: windows must not count this as a tick
            )

    def _build(
        self,
        t_ns: int,
        power_w: Sequence[float],
        intensity: CarbonIntensity,
        utilization: Sequence[float | None] | None,
        memory_used: Sequence[int | None] | None,
        memory_limit: Sequence[int | None] | None,
    ) -> Snapshot:
        pue = self.pue
        states = []
        e_type = dict.fromkeys(self._type_names, 0.0)
        c_type = dict.fromkeys(self._type_names, 0.0)
        p_type = dict.fromkeys(self._type_names, 0.0)
        he_type = dict.fromkeys(self._type_names, 0.0)
        hc_type = dict.fromkeys(self._type_names, 0.0)
        e_lo = e_hi = c_lo = c_hi = p_tot = hp_tot = 0.0
        for i, info in enumerate(self.devices):
            e, c, hp = self._energy[i], self._emissions[i], power_w[i]
            p = hp * self._share[i]
            lo, hi = self._band[i]
            states.append(
                DeviceState(
                    info,
                    e,
                    p,
                    c,
                    utilization[i] if utilization is not None else None,
                    memory_used[i] if memory_used is not None else None,
                    memory_limit[i] if memory_limit is not None else None,
                    self._status[i],
                    self._errors[i],
                    host_energy_j=self._host_energy[i],
                    host_power_w=hp,
                    host_emissions_g=self._host_emissions[i],
                    job_share=self._share[i],
                    shared=self._shared[i],
                    shared_intervals=self._shared_n[i],
                    job_cpu_s=self._job_cpu[i],
                    busy_cpu_s=self._busy_cpu[i],
                )
            )
            t = self._types[i]
            e_type[t] += e * pue
            c_type[t] += c
            p_type[t] += p * pue
            he_type[t] += self._host_energy[i] * pue
            hc_type[t] += self._host_emissions[i]
            e_lo += e * lo
            e_hi += e * hi
            c_lo += c * lo
            c_hi += c * hi
            p_tot += p
            hp_tot += hp
        return Snapshot(
            t_ns=t_ns,
            seq=self._seq,
            devices=tuple(states),
            energy_j=sum(self._energy) * pue,
            energy_low_j=e_lo * pue,
            energy_high_j=e_hi * pue,
            emissions_g=sum(self._emissions),
            emissions_low_g=c_lo,
            emissions_high_g=c_hi,
            power_w=p_tot * pue,
            intensity=intensity,
            pue=pue,
            energy_by_type=e_type,
            emissions_by_type=c_type,
            power_by_type=p_type,
            host_energy_j=sum(self._host_energy) * pue,
            host_emissions_g=sum(self._host_emissions),
            host_power_w=hp_tot * pue,
            host_energy_by_type=he_type,
            host_emissions_by_type=hc_type,
            interval_s=self.interval_s,
        )

    # ------------------------------------------------------------------ reader side
    def snapshot(self) -> Snapshot:
        """The last published snapshot (O(1): a reference read, no lock, no I/O)."""
        return self._latest

    def history(self) -> History:
        """A copy of the ring buffer's contents, oldest first (for reports; not for hot paths)."""
        with self._lock:
            n = min(self._count, self._cap)
            start = self._count % self._cap if self._count > self._cap else 0
            idx = (np.arange(n) + start) % self._cap
            return History(
                self.devices,
                self._t[idx].copy(),
                self._p[idx].copy(),
                self._e[idx].copy(),
                self._ci[idx].copy(),
                self._he[idx].copy(),
            )

    def reset_lock(self) -> None:
        """Give the ledger a fresh lock (used in a forked child, where the old one may be held)."""
        self._lock = threading.Lock()
