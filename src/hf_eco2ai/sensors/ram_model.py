"""RAM power estimated from the memory this process tree occupies (:data:`RAM_MODEL_DOC`)::

    P = power_per_gb x (resident memory of this process and its children, in GiB)

``power_per_gb`` is ``CarbonConfig.ram_power_per_gb`` (default 0.375 W/GB: Crucial's 3 W per 8 GB,
the figure eco2ai and CodeCarbon before 2.8.5 use; CodeCarbon now counts 5 W per DIMM). "GB" is
2^30 bytes, as DIMM capacities are counted.

Why the process tree's RSS and not the host's used memory: the number is an *attribution* — the
share of DRAM power that this training run is responsible for — and host-wide memory would charge
the run for other tenants and for the page cache. Children (DataLoader workers, ``torch.compile``
helpers) are included; their shared copy-on-write pages are counted in each RSS, so the sum is
capped at the host's used memory (total - available). DRAM power really depends more on installed
capacity and access rate than on occupancy, and DIMMs differ in watts per GB by a factor of 30:
the band (:data:`~hf_eco2ai.sensors.bands.RAM_MODEL_BAND`, derived by ``tools/derive_bands.py``)
is wide. Where RAPL has a ``dram`` domain it is measured instead.

Scope: the model is already this job's share (the process tree's memory), so its host and job
scopes are the same; the reading carries no ``scope``.

Example:
    >>> sensor = RamModelSensor(0.375)
    >>> sensor.read(0).power_w > 0
    True
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Final

import psutil  # type: ignore[import-untyped, unused-ignore]

from hf_eco2ai.sensors.bands import RAM_MODEL_BAND
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method, Reading, SensorError
from hf_eco2ai.sensors.process_share import MemInfo, ProcessTree

USED_REFRESH_S: Final = 10.0
"""How often the host's memory in use (the cap on the tree's RSS) is read again."""

__all__ = ["GIB", "RAM_MODEL_DOC", "RamModelSensor"]

GIB: Final[int] = 1024**3

RAM_MODEL_DOC: Final[str] = f"""\
RAM model (method ram-model, an estimate):

    P = ram_power_per_gb x resident memory (RSS) of this process and its children, in GiB

Default 0.375 W/GB (Crucial's 3 W per 8 GB DIMM, as eco2ai and CodeCarbon v2). The process tree's
RSS, not the host's used memory, so that a run is charged for the memory it occupies and not for
other tenants or the page cache (job scope = host scope for this device); capped at the host's
used memory because shared pages count in every child's RSS. Band: x{RAM_MODEL_BAND.low:.2f}..
x{RAM_MODEL_BAND.high:.2f} ({RAM_MODEL_BAND.coverage:.0%} coverage of the cited DIMM figures,
tools/derive_bands.py): DRAM power follows installed capacity and traffic more than occupancy.
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
        tree: ProcessTree | None = None,
    ) -> None:
        if power_per_gb < 0:
            raise ValueError(f"power_per_gb must be >= 0, got {power_per_gb}")
        self.power_per_gb = float(power_per_gb)
        self.tree = tree or ProcessTree(pid, children_refresh_s=children_refresh_s, clock=clock)
        """The process tree whose memory is counted (may be shared with the CPU model)."""
        self.last_rss_bytes: int | None = None
        self._meminfo = MemInfo()
        self._host_used: int | None = None
        self._used_at: float | None = None
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
                f" (pid {self.tree.root.pid} and children){zero}"
            ),
            extra={"power_per_gb": f"{self.power_per_gb:g}"},
        )

    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """One device, ``hw_id="memory"``."""
        return (self._device,)

    def read(self, index: int) -> Reading:
        """Modelled power (W) of the memory in use now; ``energy_j`` is None.

        The same as ``decode(index, read_raw(index))``.
        """
        return self.decode(index, self.read_raw(index))

    def read_raw(self, index: int) -> tuple[bytes | int, int | None]:
        """The reading's system calls only (the sampler's tick; see :meth:`decode`): the
        process tree's resident memory (this process's ``statm`` unparsed), and every
        :data:`USED_REFRESH_S` the host's memory in use (else None)."""
        if index != 0:
            raise IndexError(index)
        try:
            rss = self.tree.rss_raw()
        except psutil.Error as exc:
            raise SensorError(
                f"RAM model: cannot read process {self.tree.root.pid}: {exc}"
            ) from exc
        used = None
        now = time.monotonic()
        if self._used_at is None or now - self._used_at >= USED_REFRESH_S:
            self._used_at = now
            with contextlib.suppress(Exception):  # the cap is a refinement: never fail on it
                used = self._meminfo.used_bytes()
        return rss, used

    def decode(self, index: int, raw: tuple[bytes | int, int | None]) -> Reading:
        """The reading from what :meth:`read_raw` returned: arithmetic only, no I/O."""
        if index != 0:
            raise IndexError(index)
        rss_raw, used = raw
        try:
            rss = ProcessTree.rss_from_raw(rss_raw)
        except ValueError as exc:
            raise SensorError(f"RAM model: unreadable memory figures ({exc})") from exc
        if used is not None:
            self._host_used = used
        if self._host_used is not None:
            rss = min(rss, self._host_used)
        self.last_rss_bytes = rss
        return Reading(power_w=self.power_per_gb * rss / GIB)

    def close(self) -> None:
        """Release the files kept open (idempotent; a later read reopens them)."""
        self._meminfo.close()
        close_tree = getattr(self.tree, "close", None)
        if close_tree is not None:
            close_tree()
