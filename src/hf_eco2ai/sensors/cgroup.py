"""The cgroup CPU quota of this process and its cgroup's CPU usage (v2 and v1).

Example:
    >>> cgroup_cpu_limit("/nonexistent", "/nonexistent") is None
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["cgroup_cpu_limit", "cgroup_usage_reader"]


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


def cgroup_usage_reader(cgroup_root: str, proc_cgroup: str) -> Callable[[], float | None] | None:
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
