"""CPU power estimated from the CPU's TDP, the cores this process may use and their utilisation.

Used when RAPL counters are absent or unreadable. The model (:data:`TDP_MODEL_DOC`)::

    P_host = W_core x (usable threads / threads per core) x (f_idle + (1 - f_idle) x u)
    P_job  = share x P_host        (share: this process tree's CPU time / busy CPU time)

* ``W_core`` — TDP per physical core: the package TDP (``CarbonConfig.cpu_tdp`` when set, else
  the shipped table ``data/cpu_tdp.csv``, matched on the normalised CPU model string) divided by
  the package's physical cores; :data:`DEFAULT_TDP_PER_CORE_W` with a warning when the CPU is not
  in the table, and in a virtual machine for a table match (the guest does not see how many
  cores the package has). On bare metal with every CPU usable this is ``TDP x sockets``.
* usable threads — ``os.sched_getaffinity`` capped by the cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``); may be fractional.
* threads per core — logical / physical CPUs as psutil reports them; in a virtual machine on
  x86 at least 2, because a cloud vCPU is one hardware thread of a core even when the guest is
  shown one thread per core (:func:`threads_per_core`).
* ``u`` — utilisation (0..1) of the usable CPUs since the previous read (psutil per-CPU times,
  with this sensor's own baseline; the cgroup's own CPU usage over its quota when the quota is
  the tighter limit). It counts every process on those CPUs: this is the **host** scope.
* ``share`` — the **job** scope, :class:`~hf_eco2ai.sensors.process_share.CpuShareMeter` over the
  same busy CPU time, returned as ``Reading.scope``.
* ``f_idle`` = :data:`IDLE_FRACTION`.

``energy_j`` is ``None``: the sampler integrates the power. The result is an estimate, tagged
``tdp-model``, with a band derived by ``tools/derive_bands.py`` and its coverage
(:mod:`hf_eco2ai.sensors.bands`).

Example:
    >>> sensor = CpuTdpSensor.create(cpu_tdp=120.0)
    >>> sensor.devices[0].method.value
    'tdp-model'
    >>> 0.0 <= sensor.read(0).power_w <= 120.0 * sensor.sockets
    True
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import logging
import os
import platform
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import psutil  # type: ignore[import-untyped, unused-ignore]

from hf_eco2ai._logging import warn_once
from hf_eco2ai.sensors.bands import TDP_DEFAULT_BAND, TDP_TABLE_BAND
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError
from hf_eco2ai.sensors.cgroup import cgroup_cpu_limit, cgroup_usage_reader
from hf_eco2ai.sensors.process_share import (
    CpuShareMeter,
    FakeTree,
    JobScope,
    ProcessTree,
    _ProcFile,
)

__all__ = [
    "AFFINITY_REFRESH_S",
    "DEFAULT_TDP_PER_CORE_W",
    "IDLE_FRACTION",
    "TDP_MODEL_DOC",
    "UNKNOWN_CPU_UNCERTAINTY",
    "CpuTdpSensor",
    "TdpMatch",
    "cgroup_cpu_limit",
    "count_sockets",
    "is_virtual_machine",
    "load_tdp_table",
    "lookup_tdp",
    "normalize_cpu_name",
    "read_cpu_model",
    "read_cpu_vendor",
    "read_host_times",
    "read_percpu_times",
    "threads_per_core",
]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

IDLE_FRACTION: Final[float] = 0.19
"""Share of full-load power a CPU draws at 0 % load.

The median of P(0 %) / P(100 %) over the six Intel Xeon consumption profiles of Boavizta
(``boaviztapi/data/consumption_profile/cpu/cpu_profile.csv``, fits of
``P(w) = a·ln(b·(w + c)) + d``): Platinum 0.14, Gold 0.26, Silver 0.28, E5 0.25, E3 0.13, E 0.02.
Those measured curves are concave (≈ 0.70-0.83 of full power at 50 % load), so this linear model
reads low at middling load; the derived band (``tools/derive_bands.py``) carries it.
"""

DEFAULT_TDP_PER_CORE_W: Final[float] = 8.75
"""Watts of TDP per physical core for a CPU missing from the table.

The median TDP / core count over the 1,072 server parts (Xeon, EPYC; inter-quartile range
6.73-13.33 W) of CodeCarbon's scraped Intel ARK and AMD specification datasets, as printed by
``tools/derive_bands.py`` from ``tools/data/cpu_cores_tdp.csv``.
"""

UNKNOWN_CPU_UNCERTAINTY: Final[float] = max(1 - TDP_DEFAULT_BAND.low, TDP_DEFAULT_BAND.high - 1)
"""Largest relative distance of the band from the value with the per-core default TDP."""

TDP_MODEL_DOC: Final[str] = f"""\
CPU TDP model (method tdp-model, an estimate):

    P_host = W_core x usable threads / threads per core x ({IDLE_FRACTION} + {1 - IDLE_FRACTION:.2f} x u)
    P_job  = P_host x this process tree's CPU time / busy CPU time

W_core: package TDP / physical cores of the package; the package TDP is cpu_tdp when configured,
else the shipped table (CodeCarbon's cpu_power.csv, MIT) matched on the CPU model name;
{DEFAULT_TDP_PER_CORE_W} W (median of 1,072 server parts) when the CPU is not in the table or, in a
virtual machine, when the package's core count is not visible. Usable threads: CPU affinity,
capped by the cgroup CPU quota. Threads per core: logical / physical CPUs, at least 2 for x86
vCPUs. u: busy share of the usable CPUs since the previous reading (psutil per-CPU times, or the
cgroup's CPU usage under a quota). Idle fraction {IDLE_FRACTION}: median P(0 %)/P(100 %) of
Boavizta's Xeon consumption profiles. Band: x{TDP_TABLE_BAND.low:.2f}..x{TDP_TABLE_BAND.high:.2f}
({TDP_TABLE_BAND.coverage:.0%} coverage), x{TDP_DEFAULT_BAND.low:.2f}..x{TDP_DEFAULT_BAND.high:.2f}
({TDP_DEFAULT_BAND.coverage:.0%}) with the per-core default (tools/derive_bands.py).
"""

# ---------------------------------------------------------------------- model names and TDP table
_NOISE = [
    (re.compile(r"\((?:r|tm|c)\)|®|™"), " "),
    (re.compile(r"@\s*[\d.]+\s*[gm]hz"), " "),
    (re.compile(r"\([^)]*\)"), " "),
    (re.compile(r"\bwith radeon\b.*$|\bw/ radeon\b.*$"), " "),
    (re.compile(r"\b\d+-core processor\b|\b\d+-core\b"), " "),
    (re.compile(r"\b(?:cpu|processor)\b"), " "),
    (re.compile(r"[^a-z0-9+\-. ]"), " "),
    (re.compile(r"\s+"), " "),
]


def normalize_cpu_name(name: str) -> str:
    """Lower-case model name without trademarks, clock speed, core count and filler words.

    >>> normalize_cpu_name("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    'intel xeon gold 6248'
    >>> normalize_cpu_name("AMD EPYC 7B13 64-Core Processor")
    'amd epyc 7b13'
    """
    text = name.lower()
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    return text.strip(" .-")


@dataclass(frozen=True)
class TdpMatch:
    """A TDP table hit: the table's name for the part, its TDP (W), whether it matched exactly."""

    name: str
    tdp_w: float
    exact: bool


@functools.lru_cache(maxsize=1)
def load_tdp_table() -> dict[str, tuple[str, float]]:
    """``{normalised name: (table name, TDP W)}`` from ``data/cpu_tdp.csv`` (read once, lazily)."""
    text = (
        importlib.resources.files("hf_eco2ai.sensors")
        .joinpath("data/cpu_tdp.csv")
        .read_text(encoding="utf-8")
    )
    table: dict[str, tuple[str, float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        key = normalize_cpu_name(row["name"])
        if key and any(ch.isdigit() for ch in key):
            table.setdefault(key, (row["name"], float(row["tdp_w"])))
    return table


def lookup_tdp(model: str, table: dict[str, tuple[str, float]] | None = None) -> TdpMatch | None:
    """The TDP of ``model``: exact normalised match, else the longest table name inside it.

    Table names count only as whole words, so ``'6248'`` never matches ``'6248r'``.

    >>> lookup_tdp("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    TdpMatch(name='Intel Xeon Gold 6248', tdp_w=150.0, exact=True)
    >>> lookup_tdp("AMD EPYC") is None
    True
    """
    entries = load_tdp_table() if table is None else table
    key = normalize_cpu_name(model)
    if not key:
        return None
    if key in entries:
        name, tdp = entries[key]
        return TdpMatch(name, tdp, True)
    padded = f" {key} "
    best: str | None = None
    for candidate in entries:
        if f" {candidate} " in padded and (best is None or len(candidate) > len(best)):
            best = candidate
    if best is None:
        return None
    name, tdp = entries[best]
    return TdpMatch(name, tdp, False)


# ---------------------------------------------------------------------- host facts
def _cpuinfo_fields(cpuinfo_path: str, key: str) -> list[str]:
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key:
            out.append(value.strip())
    return out


def read_cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """The CPU model string (``model name`` in /proc/cpuinfo, else ``platform.processor()``)."""
    names = [n for n in _cpuinfo_fields(cpuinfo_path, "model name") if n]
    if names:
        return names[0]
    fallback = platform.processor().strip()
    return fallback or None


def read_cpu_vendor(cpuinfo_path: str = "/proc/cpuinfo") -> str | None:
    """``"Intel"``, ``"AMD"``, another ``vendor_id``, or None when unknown."""
    vendors = _cpuinfo_fields(cpuinfo_path, "vendor_id")
    if not vendors:
        return None
    return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendors[0], vendors[0])


def count_sockets(cpuinfo_path: str = "/proc/cpuinfo") -> int:
    """Distinct ``physical id`` values in /proc/cpuinfo (1 when unknown)."""
    return max(1, len(set(_cpuinfo_fields(cpuinfo_path, "physical id"))))


def is_virtual_machine(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """True when /proc/cpuinfo carries the ``hypervisor`` flag (the CPU is virtualised)."""
    return any("hypervisor" in flags.split() for flags in _cpuinfo_fields(cpuinfo_path, "flags"))


def threads_per_core(logical: int, physical: int, *, virtual: bool, vendor: str) -> float:
    """Hardware threads per physical core of the CPUs this process sees.

    ``logical / physical`` as the OS reports them; in a virtual machine on x86 (Intel, AMD) at
    least 2: a cloud vCPU is one hyperthread of someone's core, even where the hypervisor shows
    the guest one thread per core.

    >>> threads_per_core(2, 2, virtual=True, vendor="Intel")
    2.0
    >>> threads_per_core(64, 32, virtual=False, vendor="AMD")
    2.0
    >>> threads_per_core(8, 8, virtual=False, vendor="Intel")
    1.0
    """
    tpc = logical / physical if physical > 0 else 1.0
    if virtual and vendor in ("Intel", "AMD"):
        tpc = max(tpc, 2.0)
    return max(tpc, 1.0)


def _affinity_set() -> set[int]:
    """The CPUs this thread may run on (every CPU where the OS cannot say)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _affinity() -> list[int]:
    return sorted(_affinity_set())


PROC_STAT = "/proc/stat"
AFFINITY_REFRESH_S: Final[float] = 10.0
"""How often the TDP model looks at the CPUs this process may use (``os.sched_getaffinity``):
a change of affinity or of the CPUs online is followed within this many seconds."""
_CLOCK_TICKS = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def parse_proc_stat(
    lines: Iterable[bytes], ticks: float = _CLOCK_TICKS
) -> dict[int, tuple[float, float]]:
    """(busy, total) seconds of each CPU, by CPU number, from ``/proc/stat``'s ``cpuN`` lines,
    counted as :func:`_busy_total` counts psutil's fields (guest time is inside user time).

    >>> parse_proc_stat([b"cpu  9 0 0 9 0 0 0 0 0 0", b"cpu1 300 0 100 500 100 0 0 0 0 0",
    ...                  b"intr 1 2 3"], ticks=100.0)
    {1: (4.0, 10.0)}
    """
    out: dict[int, tuple[float, float]] = {}
    for line in lines:
        if line[:3] != b"cpu":
            break  # the cpu lines come first
        f = line.split()
        if len(f) < 5 or f[0] == b"cpu":
            continue
        # user nice system idle iowait irq softirq steal; guest and guest_nice (fields 9 and
        # 10) are already counted in user and nice
        v = list(map(int, f[1:9]))
        total = sum(v)
        busy = total - v[3] - (v[4] if len(v) > 4 else 0)  # idle, iowait
        out[int(f[0][3:])] = (busy / ticks, total / ticks)
    return out


def parse_cpu_total(line: bytes, ticks: float = _CLOCK_TICKS) -> tuple[float, float] | None:
    """(busy, total) seconds of all CPUs together from ``/proc/stat``'s first line (``cpu``,
    the sum over every CPU), counted as :func:`parse_proc_stat` counts one CPU; None when the
    line is not that one.

    >>> parse_cpu_total(b"cpu  300 0 100 500 100 0 0 0 7 0", ticks=100.0)
    (4.0, 10.0)
    >>> parse_cpu_total(b"cpu0 1 2 3 4") is None
    True
    """
    f = line.split(None, 9)
    if len(f) < 5 or f[0] != b"cpu":
        return None
    v = list(map(int, f[1:9]))  # guest and guest_nice are already in user and nice
    total = sum(v)
    return (total - v[3] - (v[4] if len(v) > 4 else 0)) / ticks, total / ticks


class ProcStat:
    """``/proc/stat`` kept open: :meth:`percpu` re-reads its start with one ``pread`` (the
    kernel regenerates the file on each read at offset 0), enough bytes for every ``cpuN``
    line (the size grows once on a host with many CPUs). :meth:`close` releases it.

    Example:
        >>> stat = ProcStat()
        >>> times = stat.percpu(); stat.close()
        >>> times is None or all(0.0 <= busy <= total for busy, total in times.values())
        True
    """

    def __init__(self, path: str = PROC_STAT) -> None:
        self._file = _ProcFile(path)
        self._size = 4096

    def cpu_lines(self) -> bytes | None:
        """The start of the file with every ``cpu`` line (the read grows once on a host with
        many CPUs); None when the file cannot be read."""
        size = self._size
        data = self._file.read(size)
        if data is None:
            return None
        # the whole file, or the cpu lines and the start of the next one
        if len(data) < size:
            return data
        lines = data.split(b"\n")
        if len(lines) > 1 and lines[-2][:3] != b"cpu":
            return data
        self._size = size * 2  # more CPUs than the read covered: read more
        return self.cpu_lines()

    def first_line(self) -> bytes | None:
        """The first line (``cpu``: all CPUs together), from a short read; None when the file
        cannot be read."""
        data = self._file.read(_FIRST_LINE_BYTES)
        return None if data is None else data.split(b"\n", 1)[0]

    def percpu(self) -> dict[int, tuple[float, float]] | None:
        """(busy, total) seconds of each CPU since boot; None when the file cannot be read."""
        data = self.cpu_lines()
        return None if data is None else parse_proc_stat(data.split(b"\n"))

    def host(self) -> tuple[float, float] | None:
        """(busy, total) seconds of all CPUs together since boot, from the first line only
        (a short read, one line parsed: no per-CPU work however many CPUs the host has);
        None when the file cannot be read."""
        line = self.first_line()
        return None if line is None else parse_cpu_total(line)

    def close(self) -> None:
        """Close the file (idempotent; a later read opens it again)."""
        self._file.close()


_FIRST_LINE_BYTES = 512
"""Enough for ``/proc/stat``'s first line: ten counters of at most 20 digits each."""


def read_host_times(source: ProcStat | None = None) -> tuple[float, float]:
    """(busy, total) seconds of all CPUs together since boot: ``/proc/stat``'s first line
    through ``source`` (kept open) or a one-off :class:`ProcStat`; psutil where there is none.

    >>> busy, total = read_host_times()
    >>> 0.0 <= busy <= total
    True
    """
    times = _read_with(source, ProcStat.host)
    if times is None:
        return _busy_total(psutil.cpu_times(percpu=False))
    return times


def read_percpu_times(source: ProcStat | None = None) -> dict[int, tuple[float, float]]:
    """(busy, total) seconds of each CPU since boot: ``/proc/stat`` read directly (the cpu
    lines only; psutil's parser costs several times more per tick) through ``source`` (kept
    open) or a one-off :class:`ProcStat`; psutil where there is none."""
    times = _read_with(source, ProcStat.percpu)
    if times is None:
        return dict(enumerate(_busy_total(t) for t in psutil.cpu_times(percpu=True)))
    return times


def _read_with(source: ProcStat | None, read: Callable[[ProcStat], _T]) -> _T:
    """``read(source)``, or ``read`` of a one-off :class:`ProcStat` closed afterwards."""
    stat = ProcStat() if source is None else source
    try:
        return read(stat)
    finally:
        if source is None:
            stat.close()


def _busy_total(times: Any) -> tuple[float, float]:
    """(busy, total) seconds of one CPU, the way psutil.cpu_percent counts them.

    Read by attribute (no dict per CPU: this runs for every usable CPU on every tick).

    >>> import collections
    >>> T = collections.namedtuple("T", "user nice system idle iowait guest guest_nice")
    >>> _busy_total(T(3.0, 1.0, 1.0, 4.0, 1.0, 2.0, 0.0))
    (5.0, 10.0)
    """
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    busy = total - times.idle - getattr(times, "iowait", 0.0)
    return busy, total


# ---------------------------------------------------------------------- the sensor
class CpuTdpSensor:
    """Estimated CPU power from TDP x usable-core share x utilisation (see :data:`TDP_MODEL_DOC`).

    One device, ``hw_id="cpu"``; ``read(0).energy_j`` is None (the sampler integrates power).

    Example:
        >>> sensor = CpuTdpSensor.create(cpu_tdp=65.0, cpu_model="My CPU")
        >>> sensor.devices[0].note.startswith("TDP model")
        True
    """

    def __init__(
        self,
        *,
        cpu_tdp: float | None = None,
        cpu_model: str | None = None,
        cpuinfo_path: str = "/proc/cpuinfo",
        cgroup_root: str = "/sys/fs/cgroup",
        proc_cgroup: str = "/proc/self/cgroup",
        clock: Callable[[], float] = time.monotonic,
        tree: ProcessTree | FakeTree | None = None,
    ) -> None:
        self._clock = clock
        model = cpu_model if cpu_model is not None else read_cpu_model(cpuinfo_path)
        self.cpu_model: str = model or "unknown CPU"
        self.sockets: int = count_sockets(cpuinfo_path)
        self.logical_cores: int = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        self.physical_cores: int = psutil.cpu_count(logical=False) or self.logical_cores
        self.cgroup_limit: float | None = cgroup_cpu_limit(cgroup_root, proc_cgroup)
        self._usage_reader = cgroup_usage_reader(cgroup_root, proc_cgroup)
        vendor = read_cpu_vendor(cpuinfo_path) or _vendor_from_name(self.cpu_model)
        self.virtual: bool = is_virtual_machine(cpuinfo_path)
        self.threads_per_core: float = threads_per_core(
            self.logical_cores, self.physical_cores, virtual=self.virtual, vendor=vendor
        )
        cores = self.logical_cores / self.threads_per_core  # physical-core equivalents
        band = TDP_TABLE_BAND
        match = None if cpu_tdp is not None or not model else lookup_tdp(self.cpu_model)
        if cpu_tdp is not None:
            self.tdp_w = float(cpu_tdp) * self.sockets
            source = f"cpu_tdp override {cpu_tdp:g} W x {self.sockets} socket(s)"
        elif match is not None and not self.virtual:
            self.tdp_w = match.tdp_w * self.sockets
            how = "exact" if match.exact else "substring"
            source = (
                f"table match {match.name!r} ({how}) {match.tdp_w:g} W x {self.sockets} socket(s)"
            )
        else:
            band = TDP_DEFAULT_BAND
            self.tdp_w = DEFAULT_TDP_PER_CORE_W * cores
            why = (
                f"virtual machine: {match.name!r} is in the table ({match.tdp_w:g} W) but not"
                " the package's core count"
                if match is not None
                else f"unknown CPU {self.cpu_model!r} (not in the TDP table)"
            )
            source = (
                f"{why}: default {DEFAULT_TDP_PER_CORE_W:g} W x {cores:g} core(s)"
                f" ({self.logical_cores} thread(s) / {self.threads_per_core:g} per core;"
                " set cpu_tdp to fix)"
            )
            warn_once(
                logger,
                f"unknown-cpu:{self.cpu_model}",
                "hf-eco2ai: %s: assuming %.2f W per physical core (%g cores, %.1f W); set cpu_tdp"
                " for a better estimate",
                why,
                DEFAULT_TDP_PER_CORE_W,
                cores,
                self.tdp_w,
            )
        self.tdp_source: str = source
        affinity = _affinity()
        quota = "none" if self.cgroup_limit is None else f"{self.cgroup_limit:g} CPU"
        note = (
            f"TDP model P = TDP x usable/logical CPUs x ({IDLE_FRACTION:g} + "
            f"{1 - IDLE_FRACTION:.2f} x utilisation), job share by CPU time; TDP {self.tdp_w:g} W"
            f" from {source};"
            f" {self._usable(affinity):g} of {self.logical_cores} logical CPUs usable"
            f" (affinity {len(affinity)}, cgroup quota {quota})"
        )
        self._device = DeviceInfo(
            hw_id="cpu",
            hw_type=HwType.CPU,
            name=self.cpu_model,
            vendor=vendor,
            method=Method.TDP_MODEL,
            note=note,
            band_low=band.low,
            band_high=band.high,
            band_coverage=band.coverage,
            extra={"tdp_w": f"{self.tdp_w:g}", "tdp_source": source},
        )
        self.last_utilization: float | None = None
        """Utilisation (0..1) used in the latest reading."""
        self._stat = ProcStat()
        # what the reading side (read_raw: system calls only) keeps
        self._affinity: list[int] = []
        self._affinity_set: set[int] = set()
        self._quota_binds = False
        self._whole = False
        """Every CPU of the host is usable: the utilisation comes from ``/proc/stat``'s first
        line (all CPUs together), the same figure as the sum of the per-CPU lines."""
        # what the decoding side (decode: no I/O) keeps
        self._usable_n = 1.0
        self._power_full = 0.0
        data = self._stat.cpu_lines()
        per = parse_proc_stat(data.split(b"\n")) if data is not None else read_percpu_times()
        self._use_affinity(affinity, per)
        self._use_power(affinity)
        self._last_t = clock()
        self._affinity_due = self._last_t + AFFINITY_REFRESH_S
        """When the usable CPUs are looked at again (sensor clock)."""
        self._last_times = {cpu: per[cpu] for cpu in affinity if cpu in per}
        self._last_host: tuple[float, float] | None = (
            parse_cpu_total(data.split(b"\n", 1)[0]) if data is not None else read_host_times()
        )
        self._last_usage = self._usage_reader() if self._usage_reader else None
        self._share = CpuShareMeter(ProcessTree(clock=clock) if tree is None else tree)

    @classmethod
    def create(
        cls,
        cpu_tdp: float | None = None,
        *,
        cpu_model: str | None = None,
        cpuinfo_path: str = "/proc/cpuinfo",
        cgroup_root: str = "/sys/fs/cgroup",
        proc_cgroup: str = "/proc/self/cgroup",
        clock: Callable[[], float] = time.monotonic,
        tree: ProcessTree | FakeTree | None = None,
    ) -> CpuTdpSensor:
        """Build the sensor (never None: the model always applies)."""
        return cls(
            cpu_tdp=cpu_tdp,
            cpu_model=cpu_model,
            cpuinfo_path=cpuinfo_path,
            cgroup_root=cgroup_root,
            proc_cgroup=proc_cgroup,
            clock=clock,
            tree=tree,
        )

    # ------------------------------------------------------------------ Sensor protocol
    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """One device, ``hw_id="cpu"``."""
        return (self._device,)

    def read(self, index: int) -> Reading:
        """Modelled power (W) since the previous read; ``energy_j`` is None.

        The same as ``decode(index, read_raw(index))``.
        """
        return self.decode(index, self.read_raw(index))

    def read_raw(self, index: int) -> _RawCpu:
        """The reading's system calls, nothing else (the sampler's tick; see
        :meth:`decode`): ``/proc/stat`` (its first line while every CPU is usable, else its
        ``cpu`` lines), this process tree's CPU time, the cgroup's usage while its quota binds,
        and every :data:`AFFINITY_REFRESH_S` the usable CPUs."""
        if index != 0:
            raise IndexError(index)
        try:
            now = self._clock()
            whole, affinity = self._whole, self._affinity
            changed: list[int] | None = None
            if now >= self._affinity_due:  # the usable CPUs, every AFFINITY_REFRESH_S
                changed = self._check_affinity(now)
            if whole and changed is None:
                data: bytes | _Parsed | None = self._stat.first_line()
            else:
                data = self._stat.cpu_lines()
            if data is None:  # no /proc/stat: psutil, parsed now
                data = (read_host_times(), read_percpu_times())
            usage = self._usage_reader() if self._quota_binds and self._usage_reader else None
        except Exception as exc:
            raise SensorError(f"CPU model: cannot read CPU times ({exc})") from exc
        job: float | BaseException
        try:
            job = self._share.tree.cpu_seconds()
        except Exception as exc:  # the host figure stands; the job share is unknown this time
            job = exc
        return (now, data, whole, affinity, changed, usage, job)

    def decode(self, index: int, raw: _RawCpu) -> Reading:
        """The reading from what :meth:`read_raw` returned: parsing and arithmetic only, no I/O
        (the sampler may run it later, in order, on another thread). Every raw reading must be
        decoded once, in the order read."""
        if index != 0:
            raise IndexError(index)
        now, data, whole, affinity, changed, usage, job = raw
        try:
            if isinstance(data, bytes):
                if whole and changed is None:  # the first line only
                    host: tuple[float, float] | None = parse_cpu_total(data)
                    per: dict[int, tuple[float, float]] | None = None
                else:
                    lines = data.split(b"\n")
                    host, per = parse_cpu_total(lines[0]), parse_proc_stat(lines)
            else:
                host, per = data
        except Exception as exc:
            raise SensorError(f"CPU model: cannot read CPU times ({exc})") from exc
        if (host if whole else per) is None:  # nothing changed: the next reading spans the gap
            raise SensorError(f"CPU model: /proc/stat has no usable cpu line ({data[:40]!r})")
        # utilisation u (0..1) of the usable CPUs since the previous read, and their busy seconds
        busy = total = 0.0
        if whole:
            prev = self._last_host
            if prev is not None and host is not None:
                busy, total = host[0] - prev[0], host[1] - prev[1]
        elif per is not None:
            last = self._last_times
            for cpu in affinity:
                cur, prev_cpu = per.get(cpu), last.get(cpu)
                if cur is not None and prev_cpu is not None:
                    busy += cur[0] - prev_cpu[0]
                    total += cur[1] - prev_cpu[1]
        if host is not None:
            self._last_host = host
        if changed is not None:
            affinity = changed
        if per is not None:
            self._last_times = {cpu: per[cpu] for cpu in affinity if cpu in per}
        last_usage, dt = self._last_usage, now - self._last_t
        if usage is not None and last_usage is not None and dt > 0:  # the cgroup quota binds
            busy_s = max(0.0, usage - last_usage)
            u = min(max(busy_s / (dt * self._usable_n), 0.0), 1.0)
        else:
            busy_s = busy if busy > 0.0 else 0.0
            if total > 0:
                u = min(max(busy / total, 0.0), 1.0)
            else:
                u = self.last_utilization if self.last_utilization is not None else 0.0
        self._last_t, self._last_usage = now, usage
        self.last_utilization = u
        power = self._power_full * (IDLE_FRACTION + (1 - IDLE_FRACTION) * u)
        if changed is not None:  # the new CPUs count from the next interval on
            self._use_power(changed)
        scope: JobScope | None = None
        if isinstance(job, BaseException):
            warn_once(
                logger, "cpu-share", "hf-eco2ai: cannot read this process tree's CPU time: %s", job
            )
        else:
            scope = self._share.sample_cpu(job, busy_s)
        return Reading(power, scope=scope)

    def close(self) -> None:
        """Release the files kept open (idempotent; a later read opens them again)."""
        self._stat.close()
        close_tree = getattr(self._share.tree, "close", None)
        if close_tree is not None:
            close_tree()

    # ------------------------------------------------------------------ internals
    def _usable(self, affinity: Sequence[int]) -> float:
        n = float(len(affinity))
        if self.cgroup_limit is not None:
            n = min(n, self.cgroup_limit)
        return max(n, 0.01)

    def _use_affinity(self, affinity: list[int], per: Iterable[int]) -> None:
        """The reading side follows the usable CPUs ``affinity`` (``per``: the host's CPUs)."""
        self._affinity = affinity
        self._affinity_set = set(affinity)
        self._whole = self._affinity_set.issuperset(per)
        self._quota_binds = self.cgroup_limit is not None and self.cgroup_limit < len(affinity)

    def _use_power(self, affinity: Sequence[int]) -> None:
        """The decoding side: power at full utilisation of the usable CPUs."""
        self._usable_n = usable = self._usable(affinity)
        self._power_full = self.tdp_w * min(usable, self.logical_cores) / self.logical_cores

    def _check_affinity(self, now: float) -> list[int] | None:
        """Look at the usable CPUs again (``os.sched_getaffinity``: a system call, so every
        :data:`AFFINITY_REFRESH_S`, not every read); the new list when they changed. The
        reading that sees a change still measures the interval before it on the CPUs usable
        then; the next ones follow the new CPUs (no interval lost or counted twice)."""
        self._affinity_due = now + AFFINITY_REFRESH_S
        try:
            usable_cpus = os.sched_getaffinity(0)
        except (AttributeError, OSError):  # not Linux
            usable_cpus = _affinity_set()
        if usable_cpus == self._affinity_set:
            return None
        affinity = sorted(usable_cpus)
        data = self._stat.cpu_lines()
        per = parse_proc_stat(data.split(b"\n")) if data is not None else read_percpu_times()
        self._use_affinity(affinity, per)
        return affinity


_Parsed = tuple[tuple[float, float], dict[int, tuple[float, float]]]
_RawCpu = tuple[
    float,
    "bytes | _Parsed",
    bool,
    list[int],
    "list[int] | None",
    "float | None",
    "float | BaseException",
]
"""What :meth:`CpuTdpSensor.read_raw` returns: (clock, ``/proc/stat`` bytes or psutil's
figures, whole-host line, usable CPUs, the new usable CPUs when they changed, cgroup usage,
this process tree's CPU seconds or the error reading them)."""


def _vendor_from_name(model: str) -> str:
    low = model.lower()
    if "intel" in low:
        return "Intel"
    if "amd" in low:
        return "AMD"
    return "unknown"
