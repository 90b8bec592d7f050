"""CPU package and DRAM energy from RAPL counters in the Linux powercap sysfs tree.

Layout read (``root`` defaults to ``/sys/class/powercap``; every zone also appears flat at the
top level, as symlinks)::

    intel-rapl:0/            name=package-0   energy_uj  max_energy_range_uj
    intel-rapl:0/intel-rapl:0:0   name=core     (nested in the package: skipped)
    intel-rapl:0/intel-rapl:0:1   name=uncore   (nested in the package: skipped)
    intel-rapl:0/intel-rapl:0:2   name=dram     (outside the package: kept)
    intel-rapl:1/            name=package-1 | psys (psys contains the packages: skipped)
    intel-rapl-mmio:0/       the same package through MMIO (a duplicate: skipped)

Only disjoint domains are kept: every ``package-N`` (also ``package-N-die-M``) as a CPU device and
every ``dram`` as a MEMORY device. AMD CPUs appear either under the same ``intel-rapl`` names
(kernel ≥ 5.8/5.11, packages only) or as ``amd-rapl:N``; both are read the same way.

``energy_uj`` is a µJ counter that wraps at ``max_energy_range_uj``; each read unwraps it into an
internal monotonic total. A step back is a wrap only when the energy it implies (up to the range
and on to the new value) fits the time since the last read at the domain's plausible maximum
power (:attr:`RaplSensor.max_power_w`: 1.5 x its largest ``constraint_N_max_power_uw``, else
:data:`DEFAULT_MAX_POWER_W`); any other step back is a glitch and is not counted. One wrap between
two reads is all that can be told apart, so :attr:`RaplSensor.max_interval_s` (half the wrap
period at maximum power) bounds the sample interval: the sampler clamps a longer one, with a
warning. Power is derived from the last two reads.

Since Linux 5.10 (CVE-2020-8694) ``energy_uj`` is readable by root only: then :meth:`try_create`
returns ``None`` and a reason such as
``"RAPL: permission denied on /sys/class/powercap/intel-rapl:0/energy_uj"``, and discovery falls
back to the TDP model.

Example:
    >>> sensor, reason = RaplSensor.try_create("/sys/class/powercap")
    >>> ids = [d.hw_id for d in sensor.devices] if sensor else []  # e.g. ['package-0', 'dram-0']
    >>> reason.startswith("RAPL:")
    True
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError
from hf_eco2ai.sensors.cpu_model import read_cpu_model, read_cpu_vendor
from hf_eco2ai.sensors.discovery_notes import note_suffix

__all__ = ["DEFAULT_MAX_POWER_W", "DEFAULT_ROOT", "RaplSensor"]

logger = logging.getLogger(__name__)

DEFAULT_ROOT = "/sys/class/powercap"

DEFAULT_MAX_POWER_W = 500.0
"""Plausible maximum power of one RAPL domain when its constraints are unreadable (generous:
the largest server packages are rated around 400 W)."""
MAX_POWER_HEADROOM = 1.5
"""Short-term turbo (PL2) runs above the long-term limit: the readable maxima are scaled by this."""

_TOP = re.compile(r"^(intel-rapl|amd-rapl):(\d+)$")
_SUB = re.compile(r"^(intel-rapl|amd-rapl):(\d+):(\d+)$")
_NESTED = ("core", "uncore")


def _read_text(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


@dataclass
class _Domain:
    kind: str  # "package" or "dram"
    zone: str  # e.g. intel-rapl:0:2
    name: str  # e.g. dram
    path: str  # zone directory
    socket: int
    max_range_uj: int | None
    max_power_w: float = DEFAULT_MAX_POWER_W
    last_raw: int = 0
    raw_t: float = 0.0
    total_uj: int = 0
    last_t: float = 0.0
    last_energy_j: float = 0.0
    power_w: float = 0.0


class RaplSensor:
    """RAPL package (CPU) and DRAM (memory) energy counters.

    Build it with :meth:`create` / :meth:`try_create`. ``read(i)`` raises :class:`SensorError`
    when a counter cannot be read (permission, vanished file, garbage); the sampler retries.

    Example:
        >>> sensor = RaplSensor.create()  # None without readable RAPL counters
        >>> if sensor is not None:  # a two-socket server: package-0, package-1, dram-0, dram-1
        ...     joules = [sensor.read(i).energy_j for i in range(len(sensor.devices))]
    """

    def __init__(
        self,
        domains: Sequence[_Domain],
        devices: Sequence[DeviceInfo],
        *,
        opener: Callable[[str], str] = _read_text,
        clock: Callable[[], float] = time.monotonic,
        notes: Sequence[str] = (),
    ) -> None:
        self._domains = list(domains)
        self._devices = tuple(devices)
        self._opener = opener
        self._clock = clock
        self.notes: tuple[str, ...] = tuple(notes)
        """What was found and skipped (psys, nested, mmio, unreadable domains)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        root: str = DEFAULT_ROOT,
        *,
        include: Collection[str] = ("package", "dram"),
        cpuinfo_path: str = "/proc/cpuinfo",
        opener: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> RaplSensor | None:
        """The sensor, or ``None`` when RAPL is absent or unreadable (see :meth:`try_create`)."""
        return cls.try_create(
            root, include=include, cpuinfo_path=cpuinfo_path, opener=opener, clock=clock
        )[0]

    @classmethod
    def try_create(
        cls,
        root: str = DEFAULT_ROOT,
        *,
        include: Collection[str] = ("package", "dram"),
        cpuinfo_path: str = "/proc/cpuinfo",
        opener: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> tuple[RaplSensor | None, str]:
        """``(sensor, note)``: ``sensor`` is None when nothing usable was found; ``note`` says why.

        ``include`` selects the domain kinds: ``"package"`` (CPU) and/or ``"dram"`` (memory).
        ``opener`` reads a file's text (tests inject failures through it).
        """
        read = opener or _read_text
        if not os.path.isdir(root):
            return None, f"RAPL: {root} not present"
        skipped: list[str] = []
        candidates = _find_domains(root, read, skipped)
        candidates = [d for d in candidates if d.kind in include]
        if not candidates:
            if not include:
                return None, "RAPL: no domain kind requested"
            kinds = " or ".join(sorted(include))
            return None, f"RAPL: no {kinds} domain under {root}" + note_suffix(skipped)
        domains: list[_Domain] = []
        failure = ""
        now = clock()
        for dom in candidates:
            path = os.path.join(dom.path, "energy_uj")
            try:
                dom.last_raw = _parse_uj(read(path), path)
            except (OSError, SensorError) as exc:
                why = _why(exc, path)
                failure = failure or why
                skipped.append(why)
                continue
            dom.last_t = dom.raw_t = now
            dom.max_power_w = _max_power(read, dom.path)
            domains.append(dom)
        if not domains:
            return None, failure + note_suffix(skipped[1:])
        cpu_name = read_cpu_model(cpuinfo_path) or "CPU"
        vendor = read_cpu_vendor(cpuinfo_path) or (
            "AMD" if domains[0].zone.startswith("amd") else "Intel"
        )
        devices = [_describe(d, cpu_name, vendor) for d in domains]
        found = ", ".join(f"{d.zone} ({d.name})" for d in domains)
        note = f"RAPL: {found} under {root}" + note_suffix(skipped)
        return cls(domains, devices, opener=read, clock=clock, notes=skipped), note

    # ------------------------------------------------------------------ Sensor protocol
    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """Packages (``hw_type`` CPU, ``package-N``) then DRAM (MEMORY, ``dram-N``)."""
        return self._devices

    @property
    def max_power_w(self) -> tuple[float, ...]:
        """Plausible maximum power (W) of each device, used to tell a wrap from a glitch."""
        return tuple(d.max_power_w for d in self._domains)

    @property
    def max_interval_s(self) -> float | None:
        """The longest sample interval over which a wrap can still be told apart: half the
        shortest wrap period at maximum power (None without a known range)."""
        periods = [d.max_range_uj / 1e6 / d.max_power_w for d in self._domains if d.max_range_uj]
        return min(periods) / 2.0 if periods else None

    def kinds(self) -> frozenset[str]:
        """The domain kinds read (``"package"``, ``"dram"``)."""
        return frozenset(d.kind for d in self._domains)

    def read(self, index: int) -> Reading:
        """Cumulative energy (J, monotonic, wrap-around handled) and power since the last read."""
        dom = self._domains[index]
        path = os.path.join(dom.path, "energy_uj")
        try:
            raw = _parse_uj(self._opener(path), path)
        except OSError as exc:
            raise SensorError(_why(exc, path)) from exc
        now = self._clock()
        delta = raw - dom.last_raw
        if delta < 0:
            # wrapped at max_energy_range_uj (the energy up to the range and on to the new value
            # fits the elapsed time at maximum power), or, without it, restarted (dropped to
            # below the size of the drop); any other step back is a glitch: keep the last value
            # rather than count a whole range or history again
            plausible_uj = dom.max_power_w * max(now - dom.raw_t, 0.0) * 1e6
            if dom.max_range_uj and 0 <= delta + dom.max_range_uj <= plausible_uj:
                delta += dom.max_range_uj
            elif not dom.max_range_uj and raw < -delta:
                delta += dom.last_raw
            else:
                return Reading(power_w=dom.power_w, energy_j=dom.total_uj / 1e6)
        dom.last_raw, dom.raw_t = raw, now
        dom.total_uj += delta
        energy_j = dom.total_uj / 1e6
        dt = now - dom.last_t
        if dt > 0:
            dom.power_w = (energy_j - dom.last_energy_j) / dt
            dom.last_t, dom.last_energy_j = now, energy_j
        return Reading(power_w=dom.power_w, energy_j=energy_j)

    def close(self) -> None:
        """Nothing to release (files are opened per read)."""


# ---------------------------------------------------------------------- helpers
def _parse_uj(text: str, path: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise SensorError(f"RAPL: unexpected content in {path}: {text[:40]!r}") from None
    if value < 0:
        raise SensorError(f"RAPL: negative counter in {path}: {value}")
    return value


def _why(exc: BaseException, path: str) -> str:
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (
        errno.EACCES,
        errno.EPERM,
    ):
        return (
            f"RAPL: permission denied on {path} (root-only since Linux 5.10;"
            " grant read access to measure the CPU)"
        )
    if isinstance(exc, FileNotFoundError):
        return f"RAPL: {path} vanished"
    if isinstance(exc, SensorError):
        return str(exc)
    return f"RAPL: cannot read {path} ({exc})"


def _zone_name(read: Callable[[str], str], path: str) -> str | None:
    try:
        return read(os.path.join(path, "name")).strip()
    except OSError:
        return None


def _max_range(read: Callable[[str], str], path: str) -> int | None:
    try:
        value = int(read(os.path.join(path, "max_energy_range_uj")).strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def _max_power(read: Callable[[str], str], path: str) -> float:
    """1.5 x the largest readable ``constraint_N_max_power_uw`` (W), else the default."""
    found = []
    for n in range(4):
        try:
            uw = int(read(os.path.join(path, f"constraint_{n}_max_power_uw")).strip())
        except (OSError, ValueError):
            continue
        if uw > 0:
            found.append(uw / 1e6 * MAX_POWER_HEADROOM)
    return max(found) if found else DEFAULT_MAX_POWER_W


def _find_domains(root: str, read: Callable[[str], str], skipped: list[str]) -> list[_Domain]:
    """Disjoint package and dram domains, packages first, sorted by socket."""
    try:
        entries = sorted(os.listdir(root))
    except OSError as exc:
        skipped.append(f"cannot list {root} ({exc})")
        return []
    tops: dict[str, str] = {}
    subs: dict[str, str] = {}
    for entry in entries:
        path = os.path.join(root, entry)
        if _TOP.match(entry):
            tops[entry] = path
            try:
                children = sorted(os.listdir(path))
            except OSError:
                children = []
            for child in children:
                if _SUB.match(child):
                    subs.setdefault(child, os.path.join(path, child))
        elif _SUB.match(entry):
            subs.setdefault(entry, path)
        elif entry.startswith("intel-rapl-mmio:"):
            skipped.append(f"{entry} skipped (MMIO view of a package already read)")
    packages: list[_Domain] = []
    drams: list[_Domain] = []
    for zone, path in sorted(tops.items(), key=lambda kv: _zone_key(kv[0])):
        name = _zone_name(read, path)
        socket = int(_zone_key(zone)[0])
        if name is None:
            skipped.append(f"{zone} skipped (no readable name)")
        elif name.startswith("package"):
            packages.append(
                _Domain("package", zone, name, path, _socket(name, socket), _max_range(read, path))
            )
        elif name == "dram":
            drams.append(_Domain("dram", zone, name, path, socket, _max_range(read, path)))
        elif name == "psys":
            skipped.append(f"{zone} (psys) skipped: the platform domain contains the packages")
        else:
            skipped.append(f"{zone} ({name}) skipped")
    for zone, path in sorted(subs.items(), key=lambda kv: _zone_key(kv[0])):
        name = _zone_name(read, path)
        parent_socket = _parent_socket(zone, tops, read)
        if name == "dram":
            drams.append(_Domain("dram", zone, name, path, parent_socket, _max_range(read, path)))
        elif name in _NESTED:
            skipped.append(f"{zone} ({name}) skipped: nested in its package")
        else:
            skipped.append(f"{zone} ({name}) skipped")
    return packages + drams


def _zone_key(zone: str) -> tuple[int, ...]:
    return tuple(int(x) for x in zone.split(":")[1:])


def _socket(name: str, fallback: int) -> int:
    m = re.match(r"package-(\d+)", name)
    return int(m.group(1)) if m else fallback


def _parent_socket(zone: str, tops: dict[str, str], read: Callable[[str], str]) -> int:
    prefix, top, _ = zone.split(":")
    parent = f"{prefix}:{top}"
    name = _zone_name(read, tops[parent]) if parent in tops else None
    return _socket(name or "", int(top))


def _describe(dom: _Domain, cpu_name: str, vendor: str) -> DeviceInfo:
    extra = {"zone": dom.zone, "domain": dom.name}
    wrap = (
        f"wraps at {dom.max_range_uj} µJ; a step back counts as a wrap only if it fits"
        f" {dom.max_power_w:g} W over the time since the last read"
        if dom.max_range_uj
        else "max_energy_range_uj unreadable: a backwards step is treated as a restart"
    )
    if dom.kind == "package":
        return DeviceInfo(
            hw_id=dom.name if dom.name.startswith("package-") else f"package-{dom.socket}",
            hw_type=HwType.CPU,
            name=cpu_name,
            vendor=vendor,
            method=Method.RAPL,
            note=f"RAPL {dom.name} counter ({dom.zone}/energy_uj, {wrap})",
            extra=extra,
        )
    return DeviceInfo(
        hw_id=f"dram-{dom.socket}",
        hw_type=HwType.MEMORY,
        name=f"DRAM (package {dom.socket})",
        vendor=vendor,
        method=Method.RAPL,
        note=f"RAPL dram counter ({dom.zone}/energy_uj, {wrap})",
        extra=extra,
    )
