"""The ledger: cumulative energy and emissions per device, a bounded history, and snapshots.

The sampler is the only writer (:meth:`Ledger.record`, one commit at a time: on its thread, or on
a reader's when readings taken while nobody read wait to be committed). Everything else reads
immutable :class:`Snapshot` objects through :meth:`Ledger.snapshot`: no I/O, and no lock while
readings are committed as they come (with the sampler's idle batching, the next reader commits
the waiting ones first: arithmetic, under a lock it waits for at most
:data:`READ_FLUSH_TIMEOUT_S`). The snapshot of a tick is built by its first reader (a tick nobody
reads costs no snapshot), and shared by the others. Emissions are integrated per sample interval,
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
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.sensors.base import DeviceInfo, HwType
from hf_eco2ai.sensors.process_share import JobScope

J_PER_KWH = 3.6e6
READ_FLUSH_TIMEOUT_S = 0.5
"""A read of the ledger waits at most this long for readings being recorded by another thread
(arithmetic only, well under a millisecond); the totals as they stand otherwise."""

_State = tuple[Any, ...]
"""What :meth:`Ledger.record` publishes each tick (see :meth:`Ledger._freeze`)."""

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
    """Cumulative totals per device and a bounded ring buffer of recent samples.

    :meth:`record` (the sampler thread, once a tick) adds the interval and publishes the new
    totals as one immutable tuple; :meth:`snapshot` turns the latest tuple into a
    :class:`Snapshot` the first time a reader asks for it and hands the same object to every
    later reader until the next tick. A tick that nobody reads (an idle process: no training
    step, no metric export) never builds one.
    """

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
        self._seq = 0
        self._lock = threading.Lock()
        self._cap = int(history_size)
        # The ring: numpy arrays (zero pages until written, whatever history_size), written
        # through flat memoryviews (a C store per value, no numpy call per tick).
        self._t = np.zeros(self._cap, dtype=np.int64)
        self._p = np.zeros((self._cap, n), dtype=np.float64)
        self._e = np.zeros(self._cap, dtype=np.float64)
        self._he = np.zeros(self._cap, dtype=np.float64)
        self._ci = np.zeros(self._cap, dtype=np.float64)
        self._t_w = self._t.data.cast("B").cast("q")
        self._p_w = self._p.reshape(-1).data.cast("B").cast("d")
        self._e_w = self._e.data.cast("B").cast("d")
        self._he_w = self._he.data.cast("B").cast("d")
        self._ci_w = self._ci.data.cast("B").cast("d")
        self._count = 0
        self.interval_s = 0.0
        """Set by the sampler; carried on every snapshot (see :attr:`Snapshot.interval_s`)."""
        self._state: _State = self._freeze(0, [0.0] * n, _EMPTY_INTENSITY, None, None, None)
        self._built: tuple[_State, Snapshot] = (
            self._state,
            empty_snapshot(self.devices, self.pue),
        )
        self._read_seq = 0
        self._pending: Sized = ()
        self._flush: Callable[[float | None], object] | None = None

    def attach_pending(self, pending: Sized, flush: Callable[[float | None], object]) -> None:
        """Readings taken and not recorded yet (``pending``, non-empty while there are some),
        and how to record them (``flush(timeout)``): every read of the ledger calls it first,
        so a reader never sees totals older than the last reading (the sampler's idle batching,
        :data:`hf_eco2ai.sampling_thread.IDLE_BATCH`)."""
        self._pending = pending
        self._flush = flush

    @property
    def seq(self) -> int:
        """Ticks recorded so far."""
        return self._seq

    @property
    def read_seq(self) -> int:
        """``seq`` of the latest snapshot a reader asked for (0: none yet)."""
        return self._read_seq

    def unread(self) -> int:
        """Ticks recorded since the latest snapshot a reader asked for."""
        return self._seq - self._read_seq

    def last_intensity(self) -> CarbonIntensity:
        """The carbon intensity of the latest record (a placeholder before the first)."""
        intensity: CarbonIntensity = self._state[4]
        return intensity

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
        """Add one interval's energy per device (raw J, ≥ 0) and publish the new totals.

        ``energy_deltas_j`` and ``power_w`` are host scope (what the device drew); ``scope``
        gives each device's job share of the interval (None: all of it is the job's).
        """
        n = len(self.devices)
        pue = self.pue
        factor = pue * intensity.value / J_PER_KWH
        share, energy, host_energy = self._share, self._energy, self._host_energy
        with self._lock:
            slot = self._count % self._cap
            base = slot * n
            p_w = self._p_w
            for i in range(n):
                sc = scope[i] if scope is not None else None
                if sc is not None:
                    share[i] = sc.share
                    self._shared[i] = sc.shared
                    if sc.shared:
                        self._shared_n[i] += 1
                    self._job_cpu[i] += sc.job_cpu_s
                    self._busy_cpu[i] += sc.busy_cpu_s
                elif scope is not None:
                    share[i], self._shared[i] = 1.0, None
                delta = energy_deltas_j[i]
                if delta > 0.0:
                    job = delta * share[i]
                    host_energy[i] += delta
                    self._host_emissions[i] += delta * factor
                    energy[i] += job
                    self._emissions[i] += job * factor
                p_w[base + i] = power_w[i] * share[i]
            if status is not None:
                self._status = list(status)
            if errors is not None:
                self._errors = list(errors)
            self._seq += 1
            self._count += 1
            self._t_w[slot] = t_ns
            self._e_w[slot] = sum(energy) * pue
            self._he_w[slot] = sum(host_energy) * pue
            self._ci_w[slot] = intensity.value
            self._state = self._freeze(
                t_ns, power_w, intensity, utilization, memory_used, memory_limit
            )

    def set_device(self, index: int, info: DeviceInfo) -> None:
        """Replace one device's facts (e.g. its method after a counter fault), same ``hw_id``
        and type; published at the next record."""
        with self._lock:
            devices = list(self.devices)
            devices[index] = info
            self.devices = tuple(devices)

    def mark_stalled(self, indices: Sequence[int], note: str) -> None:
        """Publish ``indices`` as :attr:`DeviceStatus.STALLED` now, with ``note`` added to their
        facts and their power set to 0 (nothing is extrapolated for them); totals are kept.

        Called from a thread other than the sampler's (the sampler is the one that is stuck),
        so the totals are republished here rather than at the next record, with the same
        ``seq`` (no new reading: windows must not count this as a tick).
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
            (_, t_ns, _, power, intensity, utilization, used, limit) = self._state[:8]
            zeroed = list(power)
            for i in indices:
                zeroed[i] = 0.0
            self._state = self._freeze(t_ns, zeroed, intensity, utilization, used, limit)

    def _freeze(
        self,
        t_ns: int,
        power_w: Sequence[float],
        intensity: CarbonIntensity,
        utilization: Sequence[float | None] | None,
        memory_used: Sequence[int | None] | None,
        memory_limit: Sequence[int | None] | None,
    ) -> _State:
        """The totals as they stand, as one immutable tuple (call with the lock held)."""
        return (
            self._seq,
            t_ns,
            self.devices,
            tuple(power_w),
            intensity,
            None if utilization is None else tuple(utilization),
            None if memory_used is None else tuple(memory_used),
            None if memory_limit is None else tuple(memory_limit),
            tuple(self._status),
            tuple(self._errors),
            tuple(self._energy),
            tuple(self._emissions),
            tuple(self._host_energy),
            tuple(self._host_emissions),
            tuple(self._share),
            tuple(self._shared),
            tuple(self._shared_n),
            tuple(self._job_cpu),
            tuple(self._busy_cpu),
            self.interval_s,
        )

    def _build(self, state: _State) -> Snapshot:
        """The :class:`Snapshot` of ``state`` (pure: any thread, any number of times)."""
        (
            seq,
            t_ns,
            devices,
            power_w,
            intensity,
            utilization,
            memory_used,
            memory_limit,
            status,
            errors,
            energy,
            emissions,
            host_energy,
            host_emissions,
            share,
            shared,
            shared_n,
            job_cpu,
            busy_cpu,
            interval_s,
        ) = state
        pue = self.pue
        states = []
        e_type = dict.fromkeys(self._type_names, 0.0)
        c_type = dict.fromkeys(self._type_names, 0.0)
        p_type = dict.fromkeys(self._type_names, 0.0)
        he_type = dict.fromkeys(self._type_names, 0.0)
        hc_type = dict.fromkeys(self._type_names, 0.0)
        e_lo = e_hi = c_lo = c_hi = p_tot = hp_tot = 0.0
        for i, info in enumerate(devices):
            e, c, hp = energy[i], emissions[i], power_w[i]
            p = hp * share[i]
            lo, hi = info.band_low, info.band_high
            states.append(
                DeviceState(
                    info,
                    e,
                    p,
                    c,
                    utilization[i] if utilization is not None else None,
                    memory_used[i] if memory_used is not None else None,
                    memory_limit[i] if memory_limit is not None else None,
                    status[i],
                    errors[i],
                    host_energy_j=host_energy[i],
                    host_power_w=hp,
                    host_emissions_g=host_emissions[i],
                    job_share=share[i],
                    shared=shared[i],
                    shared_intervals=shared_n[i],
                    job_cpu_s=job_cpu[i],
                    busy_cpu_s=busy_cpu[i],
                )
            )
            t = self._types[i]
            e_type[t] += e * pue
            c_type[t] += c
            p_type[t] += p * pue
            he_type[t] += host_energy[i] * pue
            hc_type[t] += host_emissions[i]
            e_lo += e * lo
            e_hi += e * hi
            c_lo += c * lo
            c_hi += c * hi
            p_tot += p
            hp_tot += hp
        return Snapshot(
            t_ns=t_ns,
            seq=seq,
            devices=tuple(states),
            energy_j=sum(energy) * pue,
            energy_low_j=e_lo * pue,
            energy_high_j=e_hi * pue,
            emissions_g=sum(emissions),
            emissions_low_g=c_lo,
            emissions_high_g=c_hi,
            power_w=p_tot * pue,
            intensity=intensity,
            pue=pue,
            energy_by_type=e_type,
            emissions_by_type=c_type,
            power_by_type=p_type,
            host_energy_j=sum(host_energy) * pue,
            host_emissions_g=sum(host_emissions),
            host_power_w=hp_tot * pue,
            host_energy_by_type=he_type,
            host_emissions_by_type=hc_type,
            interval_s=interval_s,
        )

    # ------------------------------------------------------------------ reader side
    def snapshot(self) -> Snapshot:
        """The snapshot of the last tick: no I/O; no lock unless readings wait to be committed
        (then they are, first: see :meth:`attach_pending`).

        The first call after a tick builds it (O(devices), a few microseconds) from the totals
        that tick published; every other call returns that same object (two reference reads).
        Concurrent first calls may each build one: they are equal, and either is returned.
        """
        if self._pending and self._flush is not None:  # readings not recorded yet: now
            self._flush(READ_FLUSH_TIMEOUT_S)
        state = self._state
        built = self._built
        if built[0] is state:
            return built[1]
        snap = self._build(state)
        self._built = (state, snap)
        self._read_seq = state[0]
        return snap

    def history(self) -> History:
        """A copy of the ring buffer's contents, oldest first (for reports; not for hot paths)."""
        if self._pending and self._flush is not None:
            self._flush(READ_FLUSH_TIMEOUT_S)
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
