"""This job's share of a device: the process tree, its CPU time, and who else uses a GPU.

A CPU package counter (RAPL) or the TDP model measures the whole **host**: every process on
those cores. The **job** scope is this process tree's share of it. Per sampler interval::

    share = Δ(CPU seconds of this process and its descendants) / Δ(busy CPU seconds of the host)
    job energy = share x host energy of the interval                (share clamped to [0, 1])

Busy CPU seconds are ``total - idle - iowait`` (psutil's ``cpu_times``, guest time excluded as
``psutil.cpu_percent`` does). The host's *whole* interval energy, idle (static) power included, is
split by the share of busy time: a job alone on the host is charged the idle power too, and on a
shared host it pays for idle power in proportion to its use (as Scaphandre and CodeCarbon's
process mode attribute host power by CPU time). An interval with no busy CPU time at all is split
by the job's share of the run so far (1.0 before any CPU was busy).

RAM (the RAM model) is already the process tree's share: job = host. GPUs: NVML energy is the
device's (host scope); a device is flagged ``shared`` when NVML lists compute processes outside
this tree, and the job share comes from ``nvmlDeviceGetProcessUtilization`` where it works.

Everything here runs on the sampler thread only (never in a training callback).

Example:
    >>> meter = CpuShareMeter(FakeTree([0.0, 1.0]), busy_seconds=iter([0.0, 2.0]).__next__)
    >>> meter.sample(host_busy_s=None)  # first call: baseline
    JobScope(share=1.0, shared=None, job_cpu_s=0.0, busy_cpu_s=0.0)
    >>> meter.sample(host_busy_s=None)  # 1 s of our CPU time out of 2 s busy
    JobScope(share=0.5, shared=True, job_cpu_s=1.0, busy_cpu_s=2.0)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import psutil  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "SHARED_THRESHOLD",
    "CpuShareMeter",
    "FakeTree",
    "JobScope",
    "JobScopedSensor",
    "ProcessTree",
    "gpu_scope",
    "host_busy_seconds",
    "job_share",
]

SHARED_THRESHOLD: Final[float] = 0.2
"""A host is called *shared* when other processes used more than this share of its busy CPU
time (in an interval for the device flag; over a window for :func:`~hf_eco2ai.energy_windows.shared_host_note`)."""


@dataclass(frozen=True, slots=True)
class JobScope:
    """This job's part of one device reading's interval.

    ``share``: fraction (0..1) of the interval's device energy attributed to this job.
    ``shared``: True when other processes used the device in the interval, None when unknown.
    ``job_cpu_s`` / ``busy_cpu_s``: CPU seconds of this process tree / busy CPU seconds of the
    host in the interval (CPU devices only; 0 elsewhere), so a window can say how shared it was.
    """

    share: float
    shared: bool | None = None
    job_cpu_s: float = 0.0
    busy_cpu_s: float = 0.0


def job_share(job_s: float, busy_s: float, fallback: float) -> float:
    """``job_s / busy_s`` clamped to [0, 1]; ``fallback`` when the host was not busy at all.

    >>> job_share(1.0, 4.0, 1.0), job_share(3.0, 2.0, 1.0), job_share(0.0, 0.0, 0.25)
    (0.25, 1.0, 0.25)
    """
    if busy_s <= 1e-9:
        return min(max(fallback, 0.0), 1.0)
    return min(max(job_s / busy_s, 0.0), 1.0)


def host_busy_seconds() -> float:
    """Busy CPU seconds of the whole host since boot: total - idle - iowait (guest excluded)."""
    fields: dict[str, float] = psutil.cpu_times()._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    return total - fields.get("idle", 0.0) - fields.get("iowait", 0.0)


class ProcessTree:
    """This process and its descendants: cached :class:`psutil.Process` objects.

    Finding descendants scans every process of the host, so the list is refreshed at most every
    ``children_refresh_s`` seconds; the cached objects are read on every call. CPU seconds are
    ``user + system + children_user + children_system`` of each live member, so a child that
    exits and is reaped by a member keeps counting (its time moves into the parent's
    ``children_*``); the cumulative value never goes down (a vanished, unreaped child's time is
    not taken back).

    Example:
        >>> tree = ProcessTree()
        >>> tree.cpu_seconds() >= 0.0 and os.getpid() in tree.pids()
        True
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        children_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = psutil.Process(os.getpid() if pid is None else pid)
        self._children: list[Any] = []
        self._children_at: float | None = None
        self._refresh_s = float(children_refresh_s)
        self._clock = clock
        self._cpu_high = 0.0

    def members(self) -> list[Any]:
        """The root and its known descendants (the descendant list refreshed when due)."""
        now = self._clock()
        if self._children_at is None or now - self._children_at >= self._refresh_s:
            self._children = self._descendants()
            self._children_at = now
        return [self.root, *self._children]

    @staticmethod
    def _is_self(proc: Any) -> bool:
        """True for a real :class:`psutil.Process` of this very process (read directly)."""
        return isinstance(proc, psutil.Process) and proc.pid == os.getpid()

    def _descendants(self) -> list[Any]:
        """The root's descendants, from ``/proc/<pid>/task/<tid>/children`` (a few small reads;
        psutil's ``children()`` scans every process of the host) when the kernel offers it."""
        pids = _children_from_proc(self.root.pid) if self._is_self(self.root) else None
        if pids is None:
            try:
                return list(self.root.children(recursive=True))
            except psutil.Error:
                return []
        known = {p.pid: p for p in self._children}
        out = []
        for pid in pids:
            proc = known.get(pid)
            if proc is None:
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    continue
            out.append(proc)
        return out

    def pids(self) -> frozenset[int]:
        """Process ids of the tree (cached list)."""
        return frozenset(p.pid for p in self.members())

    def cpu_seconds(self) -> float:
        """Cumulative CPU seconds of the tree (never decreasing). Raises if the root is gone."""
        total = 0.0
        alive: list[Any] = []
        for proc in self.members():
            if proc is self.root and self._is_self(proc):
                own = os.times()  # a system call; no /proc parsing for ourselves
                total += own.user + own.system + own.children_user + own.children_system
                continue
            try:
                t = proc.cpu_times()
            except psutil.Error:
                if proc is self.root:
                    raise
                continue
            total += t.user + t.system + t.children_user + t.children_system
            if proc is not self.root:
                alive.append(proc)
        self._children = alive
        self._cpu_high = max(self._cpu_high, total)
        return self._cpu_high

    def rss_bytes(self) -> int:
        """Resident bytes of the tree (shared pages count once per member). Raises if the root
        is gone."""
        total = 0
        alive: list[Any] = []
        for proc in self.members():
            if proc is self.root and self._is_self(proc):
                own = _own_rss_bytes()
                if own is not None:
                    total += own
                    continue
            try:
                total += int(proc.memory_info().rss)
            except psutil.Error:
                if proc is self.root:
                    raise
                continue
            if proc is not self.root:
                alive.append(proc)
        self._children = alive
        return total


def _children_from_proc(root: int) -> list[int] | None:
    """Descendant pids of ``root`` through ``/proc/<pid>/task/<tid>/children`` (breadth first);
    None when the kernel does not offer those files."""
    out: list[int] = []
    todo = [root]
    seen = {root}
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == root:
                return None
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                    text = fh.read()
            except FileNotFoundError:
                if pid == root and tid == tids[0]:
                    return None  # no CONFIG_PROC_CHILDREN
                continue
            except OSError:
                continue
            for child in text.split():
                c = int(child)
                if c not in seen:
                    seen.add(c)
                    out.append(c)
                    todo.append(c)
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _own_rss_bytes() -> int | None:
    """This process's resident bytes from ``/proc/self/statm`` (None where there is none)."""
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None
    try:
        return int(os.read(fd, 256).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


class FakeTree:
    """A stand-in for :class:`ProcessTree` returning scripted CPU seconds (tests, doctests).

    Example:
        >>> FakeTree([1.0, 2.5]).cpu_seconds(), FakeTree([3.0], pids={7}).pids()
        (1.0, frozenset({7}))
    """

    def __init__(self, cpu: Iterable[float], *, rss: int = 0, pids: Iterable[int] = (1,)) -> None:
        self._cpu = iter(cpu)
        self._rss = rss
        self._pids = frozenset(pids)

    def cpu_seconds(self) -> float:
        """The next scripted value."""
        return next(self._cpu)

    def rss_bytes(self) -> int:
        """The scripted RSS."""
        return self._rss

    def pids(self) -> frozenset[int]:
        """The scripted pids."""
        return self._pids


class CpuShareMeter:
    """The job's share of busy CPU time between consecutive :meth:`sample` calls.

    ``busy_seconds`` reads the host's cumulative busy CPU seconds (:func:`host_busy_seconds` by
    default); a caller that already knows the busy seconds of the interval (the TDP model, over
    the CPUs this process may use) passes them as ``host_busy_s``.
    """

    def __init__(
        self,
        tree: ProcessTree | FakeTree | None = None,
        *,
        busy_seconds: Callable[[], float] = host_busy_seconds,
    ) -> None:
        self.tree = tree if tree is not None else ProcessTree()
        self._busy_seconds = busy_seconds
        self._last_job: float | None = None
        self._last_busy: float | None = None
        self.job_total_s = 0.0
        """CPU seconds of the tree since the first sample."""
        self.busy_total_s = 0.0
        """Busy CPU seconds of the host since the first sample."""

    def sample(self, host_busy_s: float | None = None) -> JobScope:
        """Share of the interval since the previous call (the first call sets the baseline)."""
        job = self.tree.cpu_seconds()
        busy_cum = self._busy_seconds() if host_busy_s is None else None
        if self._last_job is None:
            self._last_job, self._last_busy = job, busy_cum
            return JobScope(1.0)
        d_job = max(0.0, job - self._last_job)
        if host_busy_s is not None:
            d_busy = max(0.0, host_busy_s)
        else:
            assert busy_cum is not None
            d_busy = max(0.0, busy_cum - (self._last_busy if self._last_busy is not None else 0.0))
        self._last_job, self._last_busy = job, busy_cum
        d_job = min(d_job, d_busy)  # clock skew between the two reads: never more than busy
        fallback = self.job_total_s / self.busy_total_s if self.busy_total_s > 0 else 1.0
        share = job_share(d_job, d_busy, fallback)
        self.job_total_s += d_job
        self.busy_total_s += d_busy
        shared = None if d_busy <= 1e-9 else (d_busy - d_job) / d_busy > SHARED_THRESHOLD
        return JobScope(share, shared, d_job, d_busy)


# ---------------------------------------------------------------------- GPUs (NVML)
def _own_pid_namespace_is_root() -> bool:
    """True when pids here are the host's (NVML reports host pids): one value in ``NSpid``."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        return False
    return True  # kernels without NSpid have no nested pid namespaces to worry about


def gpu_scope(
    nvml: Any,
    handle: Any,
    our_pids: frozenset[int],
    *,
    last_seen_us: int = 0,
    host_pids: bool | None = None,
) -> JobScope | None:
    """This job's part of a GPU: ``shared`` when NVML lists compute processes outside our tree.

    ``share`` is our processes' SM utilisation over all processes' (from
    ``nvmlDeviceGetProcessUtilization`` samples newer than ``last_seen_us``) where NVML offers
    it, else 1.0 (job = host; the ``shared`` flag says it is not all ours). None when NVML cannot
    list processes, or when this process lives in a pid namespace whose pids NVML does not use
    (a container): then nothing is known.

    Example:
        >>> class Proc:
        ...     def __init__(self, pid): self.pid = pid
        >>> class FakeNvml:
        ...     def nvmlDeviceGetComputeRunningProcesses(self, h): return [Proc(1), Proc(9)]
        ...     def nvmlDeviceGetProcessUtilization(self, h, t): raise RuntimeError("n/a")
        >>> gpu_scope(FakeNvml(), None, frozenset({1}), host_pids=True)
        JobScope(share=1.0, shared=True, job_cpu_s=0.0, busy_cpu_s=0.0)
    """
    if host_pids is None:
        host_pids = _own_pid_namespace_is_root()
    if not host_pids:
        return None
    try:
        running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:
        return None
    pids = {int(getattr(p, "pid", -1)) for p in running}
    others = pids - our_pids
    if not others:
        return JobScope(1.0, False)
    share = 1.0
    with contextlib.suppress(Exception):
        samples: Sequence[Any] = nvml.nvmlDeviceGetProcessUtilization(handle, last_seen_us)
        ours = total = 0.0
        for s in samples:
            sm = float(getattr(s, "smUtil", 0) or 0)
            total += sm
            if int(getattr(s, "pid", -1)) in our_pids:
                ours += sm
        if total > 0:
            share = job_share(ours, total, 1.0)
    return JobScope(share, True)


# ---------------------------------------------------------------------- host-scope sensors
class JobScopedSensor:
    """Adds this job's :class:`JobScope` to the readings of a host-scope sensor.

    For RAPL (CPU packages: the share of busy CPU time; ``dram``: the tree's share of the host's
    used memory) and NVML (GPUs: :func:`gpu_scope`, through the sensor's ``nvml_handle(index)``).
    The wrapped sensor's readings are unchanged; a failure to compute the share leaves
    ``scope`` None (job = host for that interval) and never fails the reading.

    Example:
        >>> class OneCpu:
        ...     from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
        ...     devices = (DeviceInfo("package-0", HwType.CPU, "c", "v", Method.RAPL),)
        ...     def read(self, index): from hf_eco2ai.sensors.base import Reading; return Reading(10.0, 5.0)
        ...     def close(self): pass
        >>> s = JobScopedSensor(OneCpu(), FakeTree([0.0, 1.0]), busy_seconds=iter([0.0, 4.0]).__next__)
        >>> s.read(0).scope.share, s.read(0).scope.share
        (1.0, 0.25)
    """

    def __init__(
        self,
        inner: Any,
        tree: ProcessTree | FakeTree | None = None,
        *,
        busy_seconds: Callable[[], float] = host_busy_seconds,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self.tree = tree if tree is not None else ProcessTree()
        self._busy_seconds = busy_seconds
        self._clock = clock
        self._meters: dict[int, CpuShareMeter] = {}
        self._gpu_seen_us: dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:  # kinds(), try_create facts, ...
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def devices(self) -> Sequence[Any]:
        """The wrapped sensor's devices."""
        return self.inner.devices  # type: ignore[no-any-return]

    def read(self, index: int) -> Any:
        """The wrapped reading, with ``scope`` set where this job's share is known."""
        reading = self.inner.read(index)
        try:
            reading.scope = self._scope(index)
        except Exception:  # the host reading stands; the share is unknown this time
            reading.scope = None
        return reading

    def close(self) -> None:
        """Close the wrapped sensor."""
        self.inner.close()

    def _scope(self, index: int) -> JobScope | None:
        kind = getattr(self.inner.devices[index].hw_type, "value", "")
        if kind == "cpu":
            meter = self._meters.get(index)
            if meter is None:
                meter = self._meters[index] = CpuShareMeter(
                    self.tree, busy_seconds=self._busy_seconds
                )
            return meter.sample()
        if kind == "memory":
            vm = psutil.virtual_memory()
            used = float(vm.total - vm.available)
            return JobScope(job_share(float(self.tree.rss_bytes()), used, 1.0))
        handle_of = getattr(self.inner, "nvml_handle", None)
        if kind == "gpu" and handle_of is not None:
            nvml, handle = handle_of(index)
            now_us = int(self._clock() * 1e6)
            since = self._gpu_seen_us.get(index, now_us - 1_000_000)
            self._gpu_seen_us[index] = now_us
            return gpu_scope(nvml, handle, self.tree.pids(), last_seen_us=since)
        return None
