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
    "MemInfo",
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

    Finding descendants walks ``/proc/<pid>/task/*/children``, so the list is refreshed at most
    every ``children_refresh_s`` seconds, and not walked at all while this process has no child
    process (one ``waitid`` says so, :func:`_has_no_children`); the cached objects are read on
    every call. This process's own figures are read without psutil: CPU time from ``os.times()``,
    resident memory from ``/proc/<pid>/statm`` kept open and re-read (:meth:`close` releases
    it). CPU seconds are ``user + system + children_user + children_system`` of each live
    member, so a child that exits and is reaped by a member keeps counting (its time moves into
    the parent's ``children_*``); the cumulative value never goes down (a vanished, unreaped
    child's time is not taken back).

    Example:
        >>> tree = ProcessTree()
        >>> tree.cpu_seconds() >= 0.0 and os.getpid() in tree.pids()
        True
        >>> tree.close()
    """

    def __init__(
        self,
        pid: int | None = None,
        *,
        children_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = psutil.Process(_PID[0] if pid is None else pid)
        self._own = self.root if self.root.pid == _PID[0] else None
        """The root while it is this very process (read directly, without psutil)."""
        self._own_pid = self.root.pid
        self._children: list[Any] = []
        self._children_at: float | None = None
        self._refresh_s = float(children_refresh_s)
        self._clock = clock
        self._cpu_high = 0.0
        self._statm = _ProcFile(f"/proc/{self._own_pid}/statm")

    def members(self) -> list[Any]:
        """The root and its known descendants (the descendant list refreshed when due)."""
        return [self.root, *self._kids()]

    def _kids(self) -> list[Any]:
        """The known descendants, refreshed when due."""
        now = self._clock()
        if self._children_at is None or now - self._children_at >= self._refresh_s:
            self._children = self._descendants()
            self._children_at = now
        return self._children

    def _is_self(self, proc: Any) -> bool:
        """True for the root while it is this very process (read directly)."""
        return proc is self._own and self._own_pid == _PID[0]

    def _descendants(self) -> list[Any]:
        """The root's descendants, from ``/proc/<pid>/task/<tid>/children`` (a few small reads;
        psutil's ``children()`` scans every process of the host) when the kernel offers it;
        none, without reading anything, when this process has no child at all."""
        pids: list[int] | None = None
        if self._is_self(self.root):
            if _has_no_children():
                return []
            pids = _children_from_proc(self._own_pid)
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
        kids = self._kids()
        root = self.root
        if root is self._own and self._own_pid == _PID[0]:  # this very process
            own = os.times()  # a system call; no /proc parsing for ourselves
            total = own[0] + own[1] + own[2] + own[3]
        else:
            t = root.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
        if kids:
            alive: list[Any] = []
            for proc in kids:
                try:
                    t = proc.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system + t.children_user + t.children_system
                alive.append(proc)
            self._children = alive
        if total > self._cpu_high:
            self._cpu_high = total
        return self._cpu_high

    def rss_bytes(self) -> int:
        """Resident bytes of the tree (shared pages count once per member). Raises if the root
        is gone."""
        return self.rss_from_raw(self.rss_raw())

    def rss_raw(self) -> bytes | int:
        """:meth:`rss_bytes` before parsing: this very process's ``statm`` as read (one
        ``pread``, nothing else) while it has no child, else the total in bytes.
        :meth:`rss_from_raw` turns it into bytes."""
        kids = self._kids()
        root = self.root
        data = None
        if root is self._own and self._own_pid == _PID[0]:  # this very process: its statm
            data = self._statm.read(128)
            if data is not None and not kids:
                return data
        total = -1
        if data is not None:
            with contextlib.suppress(ValueError):
                total = self.rss_from_raw(data)
        if total < 0:
            total = int(root.memory_info().rss)
        if kids:
            alive: list[Any] = []
            for proc in kids:
                try:
                    total += int(proc.memory_info().rss)
                except psutil.Error:
                    continue
                alive.append(proc)
            self._children = alive
        return total

    @staticmethod
    def rss_from_raw(raw: bytes | int) -> int:
        """Bytes from :meth:`rss_raw`'s value: ``statm``'s second field (resident pages) times
        the page size, or the number itself. ValueError for bytes that are not ``statm``'s.

        >>> ProcessTree.rss_from_raw(b"100 25 4 1 0 50 0\\n") == 25 * _PAGE
        True
        """
        if isinstance(raw, int):
            return raw
        fields = raw.split(None, 2)
        if len(fields) < 2:
            raise ValueError(f"not a statm line: {raw[:40]!r}")
        return int(fields[1]) * _PAGE

    def close(self) -> None:
        """Release the file kept open (idempotent; a later read opens it again)."""
        self._statm.close()


class _ProcFile:
    """A procfs file kept open and re-read from offset 0 with ``os.pread``: one system call a
    read instead of open, read and close (a procfs file is generated afresh by each read at
    offset 0). Opened on first use, ``O_CLOEXEC``; None from :meth:`read` where it cannot be
    opened or read.

    Example:
        >>> f = _ProcFile("/proc/self/statm")
        >>> data = f.read(256); f.close()
        >>> data is None or len(data.split()) >= 2
        True
    """

    __slots__ = ("_fd", "_pid", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = 0

    def read(self, size: int) -> bytes | None:
        """Up to ``size`` bytes from the start of the file."""
        fd = self._fd
        if fd < 0 or self._pid != _PID[0]:  # never opened, or inherited through a fork
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
            self._fd, self._pid = fd, _PID[0]
        try:
            return os.pread(fd, size, 0)
        except OSError:
            return None

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._pid == _PID[0]:
            with contextlib.suppress(OSError):
                os.close(fd)


class MemInfo:
    """The host's memory in use, ``MemTotal - MemAvailable`` from ``/proc/meminfo`` kept open
    (one ``pread``): what ``psutil.virtual_memory()`` reports as ``total - available``, without
    parsing the whole file. psutil itself where the file or a usable ``MemAvailable`` is
    missing (old kernels, containers with odd values). :meth:`close` releases the file.

    Example:
        >>> info = MemInfo()
        >>> used = info.used_bytes(); info.close()
        >>> 0 <= used <= psutil.virtual_memory().total
        True
    """

    def __init__(self, path: str = "/proc/meminfo") -> None:
        self._file = _ProcFile(path)

    def used_bytes(self) -> int:
        """Bytes of memory in use on the host (total - available)."""
        data = self._file.read(512)  # MemTotal, MemFree and MemAvailable come first
        if data is not None:
            total = available = 0
            for line in data.split(b"\n", 4)[:4]:
                if line.startswith(b"MemTotal:"):
                    total = int(line.split()[1]) * 1024
                elif line.startswith(b"MemAvailable:"):
                    available = int(line.split()[1]) * 1024
            if 0 < available <= total:
                return total - available
        vm = psutil.virtual_memory()
        return int(vm.total - vm.available)

    def close(self) -> None:
        """Close the file (idempotent; a later read opens it again)."""
        self._file.close()


_PID = [os.getpid()]
"""This process's pid, refreshed in a forked child (``os.register_at_fork``): no system call
per read to tell whether a cached file or process object is this process's own."""


def _after_fork_in_child() -> None:
    _PID[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_WALL = 0x40000000
"""Linux ``__WALL``: wait for every kind of child, however it was cloned (``waitid`` accepts it
since Linux 4.7; an older kernel refuses it, and then the children are walked as before)."""


def _has_no_children() -> bool:
    """True when this process has no child process at all: ``waitid(P_ALL, WNOHANG | WNOWAIT)``
    fails with ECHILD. One system call, no side effect: nothing is reaped (``WNOWAIT``) and
    nothing waits (``WNOHANG``). False where that cannot be told (no ``waitid``, an error).

    Example:
        >>> isinstance(_has_no_children(), bool)
        True
    """
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return False
    try:
        waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
    except ChildProcessError:
        return True
    except OSError:
        return False
    return False


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
                fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if pid == root and tid == tids[0]:
                    return None  # no CONFIG_PROC_CHILDREN
                continue
            except OSError:
                continue
            try:
                text = _read_all(fd)
            except OSError:
                continue
            finally:
                os.close(fd)
            for child in text.split():
                c = int(child)
                if c not in seen:
                    seen.add(c)
                    out.append(c)
                    todo.append(c)
    return out


def _read_all(fd: int) -> bytes:
    """Everything left in ``fd`` (raw reads: no buffered file object)."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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
        if host_busy_s is not None:
            return self.sample_cpu(job, host_busy_s)
        busy_cum = self._busy_seconds()
        last_busy = self._last_busy
        self._last_busy = busy_cum
        if last_busy is None:
            self._last_job = job
            return JobScope(1.0)
        return self.sample_cpu(job, busy_cum - last_busy)

    def sample_cpu(self, job_cpu_s: float, busy_s: float) -> JobScope:
        """:meth:`sample` with the tree's cumulative CPU seconds already read (``job_cpu_s``)
        and the host's busy CPU seconds of the interval (``busy_s``): arithmetic only.

        >>> meter = CpuShareMeter(FakeTree([]))
        >>> meter.sample_cpu(10.0, 0.0).share  # the baseline
        1.0
        >>> meter.sample_cpu(11.0, 4.0)
        JobScope(share=0.25, shared=True, job_cpu_s=1.0, busy_cpu_s=4.0)
        """
        last_job = self._last_job
        self._last_job = job_cpu_s
        if last_job is None:
            return JobScope(1.0)
        d_busy = busy_s if busy_s > 0.0 else 0.0
        d_job = job_cpu_s - last_job
        # clock skew between the two reads: never more than busy, never negative
        d_job = 0.0 if d_job < 0.0 else min(d_job, d_busy)
        if d_busy > 1e-9:
            share = d_job / d_busy  # job_share(), inline: 0 <= d_job <= d_busy here
            shared: bool | None = (d_busy - d_job) / d_busy > SHARED_THRESHOLD
        else:  # the host was not busy at all: the run's share so far
            share = self.job_total_s / self.busy_total_s if self.busy_total_s > 0 else 1.0
            shared = None
        self.job_total_s += d_job
        self.busy_total_s += d_busy
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
        self._meminfo = MemInfo()

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
        """Close the wrapped sensor, and release the files kept open here and in the tree."""
        self.inner.close()
        self._meminfo.close()
        close_tree = getattr(self.tree, "close", None)
        if close_tree is not None:
            close_tree()

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
            used = float(self._meminfo.used_bytes())
            return JobScope(job_share(float(self.tree.rss_bytes()), used, 1.0))
        handle_of = getattr(self.inner, "nvml_handle", None)
        if kind == "gpu" and handle_of is not None:
            nvml, handle = handle_of(index)
            now_us = int(self._clock() * 1e6)
            since = self._gpu_seen_us.get(index, now_us - 1_000_000)
            self._gpu_seen_us[index] = now_us
            return gpu_scope(nvml, handle, self.tree.pids(), last_seen_us=since)
        return None
