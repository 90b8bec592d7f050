"""RAM power estimated from the memory this process tree occupies (:data:`RAM_MODEL_DOC`)::

    P = power_per_gb x (resident memory of this process and its children, in GiB)

``power_per_gb`` is ``CarbonConfig.ram_power_per_gb`` (default 0.375 W/GB: 3 W per 8 GB DIMM, the
figure CodeCarbon and eco2ai use). "GB" is 2^30 bytes, as DIMM capacities are counted.

Why the process tree's RSS and not the host's used memory: the number is an *attribution* — the
share of DRAM power that this training run is responsible for — and host-wide memory would charge
the run for other tenants and for the page cache. Children (DataLoader workers, ``torch.compile``
helpers) are included; their shared copy-on-write pages are counted in each RSS, so the sum is
capped at the host's used memory (total - available). DRAM power really depends more on installed
capacity and access rate than on occupancy, hence a ±60 % band; where RAPL has a ``dram`` domain
it is measured instead.

Example:
    >>> sensor = RamModelSensor(0.375)
    >>> sensor.read(0).power_w > 0
    True
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Final

import psutil  # type: ignore[import-untyped, unused-ignore]

from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError

__all__ = ["GIB", "RAM_MODEL_DOC", "RamModelSensor"]

GIB: Final[int] = 1024**3

RAM_MODEL_DOC: Final[str] = """\
RAM model (method ram-model, an estimate):

    P = ram_power_per_gb x resident memory (RSS) of this process and its children, in GiB

Default 0.375 W/GB (3 W per 8 GB DIMM, as CodeCarbon and eco2ai). The process tree's RSS, not the
host's used memory, so that a run is charged for the memory it occupies and not for other tenants
or the page cache; capped at the host's used memory because shared pages count in every child's
RSS. Uncertainty: ±60 % (DRAM power follows installed capacity and traffic more than occupancy).
"""


class RamModelSensor:
    """Estimated RAM power from the process tree's resident memory.

    One device, ``hw_id="memory"``; ``read(0).energy_j`` is None (the sampler integrates power).
    The list of child processes is refreshed every ``children_refresh_s`` seconds (finding
    children scans every process on the host); their RSS is read on every tick.

    Example:
        >>> sensor = RamModelSensor(power_per_gb=0.5)
        >>> sensor.devices[0].hw_id, sensor.devices[0].method.value
        ('memory', 'ram-model')
    """

    def __init__(
        self,
        power_per_gb: float = 0.375,
        *,
        pid: int | None = None,
        children_refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if power_per_gb < 0:
            raise ValueError(f"power_per_gb must be >= 0, got {power_per_gb}")
        self.power_per_gb = float(power_per_gb)
        self._process = psutil.Process(os.getpid() if pid is None else pid)
        self._children: list[psutil.Process] = []
        self._children_at: float | None = None
        self._refresh_s = children_refresh_s
        self._clock = clock
        self.last_rss_bytes: int | None = None
        """Bytes attributed in the latest reading."""
        zero = " (ram_power_per_gb is 0: RAM energy reported as 0)" if power_per_gb == 0 else ""
        self._device = DeviceInfo(
            hw_id="memory",
            hw_type=HwType.MEMORY,
            name="RAM",
            vendor="unknown",
            method=Method.RAM_MODEL,
            note=(
                f"RAM model P = {self.power_per_gb:g} W/GB x RSS of this process tree"
                f" (pid {self._process.pid} and children){zero}"
            ),
            extra={"power_per_gb": f"{self.power_per_gb:g}"},
        )

    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """One device, ``hw_id="memory"``."""
        return (self._device,)

    def read(self, index: int) -> Reading:
        """Modelled power (W) of the memory in use now; ``energy_j`` is None."""
        if index != 0:
            raise IndexError(index)
        try:
            rss = int(self._process.memory_info().rss)
        except psutil.Error as exc:
            raise SensorError(f"RAM model: cannot read process {self._process.pid}: {exc}") from exc
        rss += self._children_rss()
        with contextlib.suppress(Exception):  # the cap is a refinement: never fail on it
            vm = psutil.virtual_memory()
            rss = min(rss, int(vm.total - vm.available))
        self.last_rss_bytes = rss
        return Reading(power_w=self.power_per_gb * rss / GIB)

    def close(self) -> None:
        """Nothing to release."""

    def _children_rss(self) -> int:
        now = self._clock()
        if self._children_at is None or now - self._children_at >= self._refresh_s:
            try:
                self._children = self._process.children(recursive=True)
            except psutil.Error:
                self._children = []
            self._children_at = now
        total = 0
        alive: list[psutil.Process] = []
        for child in self._children:
            try:
                total += int(child.memory_info().rss)
            except psutil.Error:  # exited or not ours any more
                continue
            alive.append(child)
        self._children = alive
        return total
