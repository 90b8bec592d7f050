"""CPU power estimated from the CPU's TDP, the cores this process may use and their utilisation.

Used when RAPL counters are absent or unreadable. The model (:data:`TDP_MODEL_DOC`)::

    P = TDP_host x (usable cores / logical cores of the host) x (f_idle + (1 - f_idle) x u)

* ``TDP_host`` — the TDP of one package times the number of sockets. The package TDP comes from
  ``CarbonConfig.cpu_tdp`` when set, else from the shipped table ``data/cpu_tdp.csv`` (matched
  on the normalised CPU model string, exact match first, then the longest table name contained
  in it), else :data:`DEFAULT_TDP_PER_CORE_W` x physical cores, with a warning.
* usable cores — ``os.sched_getaffinity`` capped by the cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us / cpu.cfs_period_us``); may be fractional.
* ``u`` — utilisation (0..1) of the usable cores since the previous read: the busy share of the
  affinity cores' time (``psutil.cpu_times(percpu=True)``, computed like ``psutil.cpu_percent``
  but with this sensor's own baseline, so other callers of ``cpu_percent`` are not disturbed);
  when a cgroup quota is the tighter limit, the cgroup's own CPU usage divided by its quota.
  It counts every process on those cores, not only this one.
* ``f_idle`` = :data:`IDLE_FRACTION`.

``energy_j`` is ``None``: the sampler integrates the power. The result is an estimate, tagged
``tdp-model``, with a ±50 % band (±75 % when the CPU is not in the table).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import psutil  # type: ignore[import-untyped, unused-ignore]

from hf_eco2ai._logging import warn_once
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError

__all__ = [
    "DEFAULT_TDP_PER_CORE_W",
    "IDLE_FRACTION",
    "TDP_MODEL_DOC",
    "UNKNOWN_CPU_UNCERTAINTY",
    "CpuTdpSensor",
    "TdpMatch",
    "cgroup_cpu_limit",
    "count_sockets",
    "load_tdp_table",
    "lookup_tdp",
    "normalize_cpu_name",
    "read_cpu_model",
    "read_cpu_vendor",
]

logger = logging.getLogger(__name__)

IDLE_FRACTION: Final[float] = 0.19
"""Share of full-load power a CPU draws at 0 % load.

The median of P(0 %) / P(100 %) over the six Intel Xeon consumption profiles of Boavizta
(``boaviztapi/data/consumption_profile/cpu/cpu_profile.csv``, fits of
``P(w) = a·ln(b·(w + c)) + d``): Platinum 0.14, Gold 0.26, Silver 0.28, E5 0.25, E3 0.13, E 0.02.
Those measured curves are concave (≈ 0.70-0.83 of full power at 50 % load), so this linear model
reads low at middling load; the ±50 % band covers it.
"""

DEFAULT_TDP_PER_CORE_W: Final[float] = 8.75
"""Watts of TDP per physical core for a CPU missing from the table.

The median TDP / core count over 2,837 parts with both figures in CodeCarbon's scraped Intel ARK
and AMD specification datasets (``codecarbon/data/hardware/cpu_dataset_builder/*.csv``, 2025
snapshot): 8.75 W for server parts alone (Xeon + EPYC, 1,128 parts) and for all parts; the
inter-quartile range of server parts is about 5.5-13.8 W, hence the wider ±75 % band.
"""

UNKNOWN_CPU_UNCERTAINTY: Final[float] = 0.75
"""Relative half-width of the band when the TDP is the per-core default (table miss)."""

TDP_MODEL_DOC: Final[str] = f"""\
CPU TDP model (method tdp-model, an estimate):

    P = TDP_host x (usable cores / logical cores) x ({IDLE_FRACTION} + {1 - IDLE_FRACTION:.2f} x u)

TDP_host: package TDP x sockets; the package TDP is cpu_tdp when configured, else the shipped
table (CodeCarbon's cpu_power.csv, MIT) matched on the CPU model name, else
{DEFAULT_TDP_PER_CORE_W} W x physical cores (median TDP per core of 2,837 Intel/AMD parts).
Usable cores: CPU affinity, capped by the cgroup CPU quota. u: busy share of the usable cores
since the previous reading (psutil per-CPU times, or the cgroup's CPU usage under a quota).
Idle fraction {IDLE_FRACTION}: median P(0 %)/P(100 %) of Boavizta's Xeon consumption profiles.
Uncertainty: ±50 % (±{UNKNOWN_CPU_UNCERTAINTY:.0%} with the per-core default).
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


def _read_first_line(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """(cgroup v2 path, {v1 controller: path}) of this process from /proc/self/cgroup."""
    unified: str | None = None
    v1: dict[str, str] = {}
    try:
        with open(proc_cgroup, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None, {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            unified = path
        for ctl in controllers.split(","):
            if ctl:
                v1[ctl] = path
    return unified, v1


def _ancestors(base: str, path: str) -> list[str]:
    """Existing directories from ``base/path`` up to ``base`` (nearest first)."""
    parts = [p for p in path.split("/") if p]
    out = []
    for n in range(len(parts), -1, -1):
        d = os.path.join(base, *parts[:n])
        if os.path.isdir(d):
            out.append(d)
    return out


def _v1_dir(root: str, controller: str) -> str | None:
    for name in (controller, "cpu,cpuacct", "cpuacct,cpu"):
        d = os.path.join(root, name)
        if os.path.isdir(d):
            return d
    return None


def cgroup_cpu_limit(
    cgroup_root: str = "/sys/fs/cgroup", proc_cgroup: str = "/proc/self/cgroup"
) -> float | None:
    """CPUs this process's cgroup may use (quota / period, the tightest ancestor), or None.

    >>> cgroup_cpu_limit("/nonexistent", "/nonexistent") is None
    True
    """
    unified, v1 = _own_cgroups(proc_cgroup)
    limits: list[float] = []
    if unified is not None and os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        for d in _ancestors(cgroup_root, unified):
            line = _read_first_line(os.path.join(d, "cpu.max"))
            if line:
                quota, _, period = line.partition(" ")
                if quota != "max" and quota.isdigit() and period.isdigit() and int(period) > 0:
                    limits.append(int(quota) / int(period))
    cpu_dir = _v1_dir(cgroup_root, "cpu") if "cpu" in v1 else None
    if cpu_dir is not None:
        for d in _ancestors(cpu_dir, v1["cpu"]):
            quota_s = _read_first_line(os.path.join(d, "cpu.cfs_quota_us"))
            period_s = _read_first_line(os.path.join(d, "cpu.cfs_period_us"))
            try:
                quota_us, period_us = int(quota_s or "-1"), int(period_s or "0")
            except ValueError:
                continue
            if quota_us > 0 and period_us > 0:
                limits.append(quota_us / period_us)
    return min(limits) if limits else None


def _cgroup_usage_s(cgroup_root: str, proc_cgroup: str) -> Callable[[], float | None] | None:
    """A reader of this cgroup's cumulative CPU seconds (v2 cpu.stat, v1 cpuacct.usage)."""
    unified, v1 = _own_cgroups(proc_cgroup)
    if unified is not None and os.path.exists(os.path.join(cgroup_root, "cgroup.controllers")):
        dirs = _ancestors(cgroup_root, unified)
        if dirs:
            stat = os.path.join(dirs[0], "cpu.stat")

            def read_v2() -> float | None:
                try:
                    with open(stat, encoding="ascii") as fh:
                        for line in fh:
                            key, _, value = line.partition(" ")
                            if key == "usage_usec":
                                return int(value) / 1e6
                except (OSError, ValueError):
                    return None
                return None

            if read_v2() is not None:
                return read_v2
    acct_dir = _v1_dir(cgroup_root, "cpuacct") if "cpuacct" in v1 else None
    if acct_dir is not None:
        dirs = _ancestors(acct_dir, v1["cpuacct"])
        if dirs:
            usage = os.path.join(dirs[0], "cpuacct.usage")

            def read_v1() -> float | None:
                line = _read_first_line(usage)
                try:
                    return int(line or "") / 1e9
                except ValueError:
                    return None

            if read_v1() is not None:
                return read_v1
    return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def _busy_total(times: object) -> tuple[float, float]:
    """(busy, total) seconds of one CPU, the way psutil.cpu_percent counts them."""
    fields: dict[str, float] = times._asdict()  # type: ignore[attr-defined]
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    busy = total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)
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
    ) -> None:
        self._clock = clock
        model = cpu_model if cpu_model is not None else read_cpu_model(cpuinfo_path)
        self.cpu_model: str = model or "unknown CPU"
        self.sockets: int = count_sockets(cpuinfo_path)
        self.logical_cores: int = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        self.physical_cores: int = psutil.cpu_count(logical=False) or self.logical_cores
        self.cgroup_limit: float | None = cgroup_cpu_limit(cgroup_root, proc_cgroup)
        self._usage_reader = _cgroup_usage_s(cgroup_root, proc_cgroup)
        uncertainty = -1.0
        if cpu_tdp is not None:
            self.tdp_w = float(cpu_tdp) * self.sockets
            source = f"cpu_tdp override {cpu_tdp:g} W x {self.sockets} socket(s)"
        else:
            match = lookup_tdp(self.cpu_model) if model else None
            if match is not None:
                self.tdp_w = match.tdp_w * self.sockets
                how = "exact" if match.exact else "substring"
                source = (
                    f"table match {match.name!r} ({how}) {match.tdp_w:g} W x {self.sockets}"
                    " socket(s)"
                )
            else:
                self.tdp_w = DEFAULT_TDP_PER_CORE_W * self.physical_cores
                uncertainty = UNKNOWN_CPU_UNCERTAINTY
                source = (
                    f"unknown CPU {self.cpu_model!r}: default {DEFAULT_TDP_PER_CORE_W:g} W x"
                    f" {self.physical_cores} physical core(s) (set cpu_tdp to fix)"
                )
                warn_once(
                    logger,
                    f"unknown-cpu:{self.cpu_model}",
                    "hf-eco2ai: CPU %r is not in the TDP table: assuming %.2f W per physical core"
                    " (%d cores, %.1f W); set cpu_tdp for a better estimate",
                    self.cpu_model,
                    DEFAULT_TDP_PER_CORE_W,
                    self.physical_cores,
                    self.tdp_w,
                )
        self.tdp_source: str = source
        affinity = _affinity()
        quota = "none" if self.cgroup_limit is None else f"{self.cgroup_limit:g} CPU"
        note = (
            f"TDP model P = TDP x usable/logical cores x ({IDLE_FRACTION:g} + "
            f"{1 - IDLE_FRACTION:.2f} x utilisation); TDP {self.tdp_w:g} W from {source};"
            f" {self._usable(affinity):g} of {self.logical_cores} logical CPUs usable"
            f" (affinity {len(affinity)}, cgroup quota {quota})"
        )
        self._device = DeviceInfo(
            hw_id="cpu",
            hw_type=HwType.CPU,
            name=self.cpu_model,
            vendor=read_cpu_vendor(cpuinfo_path) or _vendor_from_name(self.cpu_model),
            method=Method.TDP_MODEL,
            uncertainty=uncertainty,
            note=note,
            extra={"tdp_w": f"{self.tdp_w:g}", "tdp_source": source},
        )
        self.last_utilization: float | None = None
        """Utilisation (0..1) used in the latest reading."""
        self._last_t = clock()
        self._last_times = self._percpu(affinity)
        self._last_usage = self._usage_reader() if self._usage_reader else None

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
    ) -> CpuTdpSensor:
        """Build the sensor (never None: the model always applies)."""
        return cls(
            cpu_tdp=cpu_tdp,
            cpu_model=cpu_model,
            cpuinfo_path=cpuinfo_path,
            cgroup_root=cgroup_root,
            proc_cgroup=proc_cgroup,
            clock=clock,
        )

    # ------------------------------------------------------------------ Sensor protocol
    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """One device, ``hw_id="cpu"``."""
        return (self._device,)

    def read(self, index: int) -> Reading:
        """Modelled power (W) since the previous read; ``energy_j`` is None."""
        if index != 0:
            raise IndexError(index)
        try:
            affinity = _affinity()
            usable = self._usable(affinity)
            now = self._clock()
            times = self._percpu(affinity)
            usage = self._usage_reader() if self._usage_reader else None
        except Exception as exc:
            raise SensorError(f"CPU model: cannot read CPU times ({exc})") from exc
        u = self._utilization(affinity, usable, now, times, usage)
        self._last_t, self._last_times, self._last_usage = now, times, usage
        self.last_utilization = u
        share = min(usable, self.logical_cores) / self.logical_cores
        return Reading(power_w=self.tdp_w * share * (IDLE_FRACTION + (1 - IDLE_FRACTION) * u))

    def close(self) -> None:
        """Nothing to release."""

    # ------------------------------------------------------------------ internals
    def _usable(self, affinity: Sequence[int]) -> float:
        n = float(len(affinity))
        if self.cgroup_limit is not None:
            n = min(n, self.cgroup_limit)
        return max(n, 0.01)

    @staticmethod
    def _percpu(affinity: Sequence[int]) -> dict[int, tuple[float, float]]:
        per = psutil.cpu_times(percpu=True)
        return {cpu: _busy_total(per[cpu]) for cpu in affinity if cpu < len(per)}

    def _utilization(
        self,
        affinity: Sequence[int],
        usable: float,
        now: float,
        times: dict[int, tuple[float, float]],
        usage: float | None,
    ) -> float:
        quota_binds = self.cgroup_limit is not None and self.cgroup_limit < len(affinity)
        if quota_binds and usage is not None and self._last_usage is not None:
            dt = now - self._last_t
            if dt > 0:
                return _clip((usage - self._last_usage) / (dt * usable))
        busy = total = 0.0
        for cpu, (b, t) in times.items():
            prev = self._last_times.get(cpu)
            if prev is not None:
                busy += b - prev[0]
                total += t - prev[1]
        if total <= 0:
            return self.last_utilization if self.last_utilization is not None else 0.0
        return _clip(busy / total)


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _vendor_from_name(model: str) -> str:
    low = model.lower()
    if "intel" in low:
        return "Intel"
    if "amd" in low:
        return "AMD"
    return "unknown"
