"""A fake ``amdsmi`` (AMD's ROCm SMI Python library) for tests, following the real contract.

Quick use::

    from tests.fakes.fake_amdsmi import FakeAmdGpu, FakeAmdSmi, AMDSMI_STATUS_NOT_FOUND

    fake = FakeAmdSmi([
        FakeAmdGpu(uuid=..., bdf="0000:c1:00.0", power_w=300.0),
        FakeAmdGpu(uuid=..., bdf="0000:c2:00.0", name="AMD Instinct MI100", energy_stuck=True),
    ], release="7.0.2")
    sensor = AmdSmiSensor.create(amdsmi=fake, environ={})  # pass the fake where amdsmi goes
    fake.advance(1.5)              # move the fake clock (seconds); energy integrates exactly
    fake.true_energy_j(0)          # exact energy of GPU 0 (its own die) since t=0, in J
    fake.inject(1, AMDSMI_STATUS_NOT_FOUND, start=5.0)  # every call on GPU 1 fails from t=5 s

``FakeAmdGpu`` knobs: ``power_w`` (W: a number, or a ``PowerTrace`` from ``fake_nvml``),
``energy_counter`` (False: ``amdsmi_get_energy_count`` raises NOT_SUPPORTED), ``energy_stuck``
(the accumulator never moves, as on MI100: ROCm/amdsmi#38), ``counter_resolution_uj``,
``counter_origin`` (raw value at t=0), ``counter_bits`` (the raw value wraps at 2**bits),
``current_power`` (False: ``current_socket_power`` is ``"N/A"``, as on MI200),
``reports_power`` (False: a secondary die of a dual-GCD card — MI250 — whose power fields are
``"N/A"`` and whose accumulator reads 0; the die of the same ``board_serial`` that reports power
reports the whole card's), ``utilization`` (percent, None: ``"N/A"``), ``vram_total_mb`` /
``vram_used_mb`` (MB, as amdsmi returns them), ``asic_serial``, ``board_serial``, ``kfd_node``,
``hip_uuid``.

Before amdsmi 6.2 (power) and 6.1 (activity) an unsupported field came back unconverted as
0xFFFF instead of ``"N/A"``; the fake does the same for those releases.

``FakeAmdSmi`` knobs: ``release`` (an amdsmi version of ``tests/fakes/amdsmi_contract.json``: the
dict keys, the functions present and their parameters follow that release, e.g. the energy key
``power`` before 6.3 and ``energy_accumulator`` from 6.3 on), ``init_error`` (an
``AMDSMI_STATUS_*`` code ``amdsmi_init`` raises). ``fake.calls`` counts calls per function name.

Contract kept (see ``test_fake_matches_recorded_contract`` in tests/unit/test_sensor_amdsmi.py):
function names and parameters, the returned dict keys, units (W, MB, percent, accumulator
ticks x µJ resolution), ``"N/A"`` strings for unsupported fields, ``AmdSmiLibraryException``
with ``get_error_code()``/``get_error_info()`` and the ``AMDSMI_STATUS_*`` codes, NOT_INIT before
``amdsmi_init`` and after ``amdsmi_shut_down``, BDF strings ``"dddd:bb:dd.f"``.
"""

from __future__ import annotations

import enum
import math
import types
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.fake_nvml import _Integrator

# --------------------------------------------------------------------- status codes (amdsmi_wrapper)
AMDSMI_STATUS_SUCCESS = 0
AMDSMI_STATUS_INVAL = 1
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_FILE_ERROR = 14
AMDSMI_STATUS_INIT_ERROR = 18
AMDSMI_STATUS_BUSY = 30
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34
AMDSMI_STATUS_NO_DATA = 40
AMDSMI_STATUS_AMDGPU_RESTART_ERR = 54
AMDSMI_STATUS_UNKNOWN_ERROR = 4294967295

amdsmi_wrapper = types.SimpleNamespace(
    **{k: v for k, v in dict(globals()).items() if k.startswith("AMDSMI_STATUS_")}
)
"""Like ``amdsmi.amdsmi_wrapper``: where the real package keeps its status codes."""

_ERROR_INFO = {
    AMDSMI_STATUS_INVAL: "AMDSMI_STATUS_INVAL - Invalid parameters",
    AMDSMI_STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    AMDSMI_STATUS_FILE_ERROR: "AMDSMI_STATUS_FILE_ERROR - Error opening file",
    AMDSMI_STATUS_INIT_ERROR: "AMDSMI_STATUS_INIT_ERROR - Initialization error",
    AMDSMI_STATUS_NOT_FOUND: "AMDSMI_STATUS_NOT_FOUND - Device Not found",
    AMDSMI_STATUS_NOT_INIT: "AMDSMI_STATUS_NOT_INIT - Device not initialized",
    AMDSMI_STATUS_DRIVER_NOT_LOADED: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
}


class AmdSmiException(Exception):
    """Base smi exception class (as in ``amdsmi.amdsmi_exception``)."""


class AmdSmiLibraryException(AmdSmiException):
    """A non-zero status of the C library; ``err_code`` is its absolute value."""

    def __init__(self, err_code: int) -> None:
        err_code = abs(err_code)
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _ERROR_INFO.get(
            err_code, "AMDSMI_STATUS_UNKNOWN_ERROR - An unknown error occurred"
        )

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_info(self, detailed: bool = True) -> str:
        return self.err_info if detailed else self.err_info.split(" - ")[0]

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiParameterException(AmdSmiException):
    """A wrong argument type (the real library checks handles with ``isinstance``)."""

    def __init__(self, receivedValue: object, expectedType: object, msg: str | None = None) -> None:
        super().__init__(msg)
        self.err_code = None
        self.err_msg = msg or f"Invalid parameter: {type(receivedValue)}, expected {expectedType}"

    def __str__(self) -> str:
        return self.err_msg


class AmdSmiInitFlags(enum.IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1
    INIT_AMD_GPUS = 2
    INIT_NON_AMD_CPUS = 4
    INIT_NON_AMD_GPUS = 8
    INIT_AMD_APUS = 3


# --------------------------------------------------------------------- devices
@dataclass
class FakeAmdGpu:
    """One fake AMD GPU (a GCD; see the module docstring for every knob)."""

    uuid: str
    bdf: str
    name: str = "AMD Instinct MI210"
    power_w: float | Callable[[float], float] = 100.0
    energy_counter: bool = True
    energy_stuck: bool = False
    counter_resolution_uj: float = 15.3
    counter_origin: int = 1_000_000
    counter_bits: int = 64
    current_power: bool = True
    reports_power: bool = True
    utilization: int | None = 0
    vram_total_mb: int = 65_520
    vram_used_mb: int = 1_024
    asic_serial: str = ""
    board_serial: str = "N/A"
    kfd_node: int = 0
    hip_uuid: str = ""
    gfx: str = "gfx90a"
    _integrator: _Integrator = field(init=False, repr=False)
    _base_t: float = field(default=0.0, init=False, repr=False)
    _base_raw: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._integrator = _Integrator(self.power_w)
        self._base_raw = self.counter_origin


@dataclass(frozen=True)
class FakeAmdHandle:
    """An opaque processor handle."""

    index: int


@dataclass
class _Fault:
    gpu: int
    code: int
    functions: frozenset[str] | None
    start: float
    end: float


def _version(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split(".")[:3])


class FakeAmdSmi:
    """Stands in for the ``amdsmi`` module; pass it as ``amdsmi=`` (see the module docstring)."""

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiParameterException = AmdSmiParameterException
    AmdSmiInitFlags = AmdSmiInitFlags
    amdsmi_wrapper = amdsmi_wrapper

    def __init__(
        self,
        gpus: Sequence[FakeAmdGpu] = (),
        *,
        release: str = "7.0.2",
        init_error: int | None = None,
    ) -> None:
        self.gpus = list(gpus)
        self.release = release
        self.v = _version(release)
        self.now = 0.0
        self.init_error = init_error
        self.init_count = 0
        self.calls: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        # functions a release lacks are absent, as on the module (``hasattr`` is False)
        if self.v >= (6, 3):
            self.amdsmi_get_gpu_kfd_info = self._kfd_info
        if self.v >= (6, 4):
            self.amdsmi_get_gpu_enumeration_info = self._enumeration_info
        if self.v[:2] == (6, 4):
            self.amdsmi_get_power_info = self._power_info_v64  # type: ignore[method-assign]

    # ------------------------------------------------------------------ test controls
    def advance(self, seconds: float) -> None:
        """Move the clock forward; every GPU's energy follows its power exactly."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self.now += seconds

    def true_energy_j(self, gpu: int | str, t0: float = 0.0, t1: float | None = None) -> float:
        """Exact energy (J) of one die ``gpu`` (index or UUID) over [t0, t1] (default [0, now])."""
        g = self.gpus[self._index(gpu)]
        return g._integrator.between(t0, self.now if t1 is None else t1)

    def card_energy_j(self, gpu: int | str, t0: float = 0.0, t1: float | None = None) -> float:
        """Exact energy (J) of the whole card ``gpu`` sits on (all dies of its board serial)."""
        return sum(self.true_energy_j(i, t0, t1) for i in self._card(self.gpus[self._index(gpu)]))

    def inject(
        self,
        gpu: int | str,
        code: int,
        *,
        functions: Collection[str] | None = None,
        start: float = 0.0,
        end: float = math.inf,
    ) -> None:
        """From ``start`` until ``end`` (fake s), calls on ``gpu`` raise that status code."""
        funcs = None if functions is None else frozenset(functions)
        self._faults.append(_Fault(self._index(gpu), code, funcs, start, end))

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_counter(self, gpu: int | str) -> None:
        """The accumulator restarts from 0 now (a driver reload or GPU reset)."""
        g = self.gpus[self._index(gpu)]
        g._base_t, g._base_raw = self.now, 0

    # ------------------------------------------------------------------ internals
    def _index(self, gpu: int | str) -> int:
        if isinstance(gpu, int):
            return gpu
        for i, g in enumerate(self.gpus):
            if g.uuid == gpu:
                return i
        raise KeyError(gpu)

    def _card(self, g: FakeAmdGpu) -> list[int]:
        """Indices of the dies whose power ``g``'s readings cover."""
        if g.board_serial == "N/A" or not g.reports_power:
            return [self.gpus.index(g)]
        return [
            i
            for i, o in enumerate(self.gpus)
            if o is g or (o.board_serial == g.board_serial and not o.reports_power)
        ]

    def _enter(self, fn: str) -> None:
        self.calls[fn] += 1
        if self.init_count <= 0:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)

    def _device(self, fn: str, handle: object) -> FakeAmdGpu:
        self._enter(fn)
        if not isinstance(handle, FakeAmdHandle):
            raise AmdSmiParameterException(handle, FakeAmdHandle)
        if not 0 <= handle.index < len(self.gpus):
            raise AmdSmiLibraryException(AMDSMI_STATUS_INVAL)
        for f in self._faults:
            active = f.gpu == handle.index and f.start <= self.now < f.end
            if active and (f.functions is None or fn in f.functions):
                raise AmdSmiLibraryException(f.code)
        return self.gpus[handle.index]

    def _card_watts(self, g: FakeAmdGpu) -> float:
        return sum(self.gpus[i]._integrator.watts(self.now) for i in self._card(g))

    # ------------------------------------------------------------------ the amdsmi API
    def amdsmi_init(self, flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        self.calls["amdsmi_init"] += 1
        if not isinstance(flag, AmdSmiInitFlags):
            raise AmdSmiParameterException(flag, AmdSmiInitFlags)
        if self.init_error is not None:
            raise AmdSmiLibraryException(self.init_error)
        self.init_count += 1

    def amdsmi_shut_down(self) -> None:
        self._enter("amdsmi_shut_down")
        self.init_count -= 1

    def amdsmi_get_processor_handles(self) -> list[FakeAmdHandle]:
        self._enter("amdsmi_get_processor_handles")
        return [FakeAmdHandle(i) for i in range(len(self.gpus))]

    def amdsmi_get_gpu_device_uuid(self, processor_handle: FakeAmdHandle) -> str:
        return self._device("amdsmi_get_gpu_device_uuid", processor_handle).uuid

    def amdsmi_get_gpu_device_bdf(self, processor_handle: FakeAmdHandle) -> str:
        return self._device("amdsmi_get_gpu_device_bdf", processor_handle).bdf

    def amdsmi_get_gpu_asic_info(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        g = self._device("amdsmi_get_gpu_asic_info", processor_handle)
        info: dict[str, Any] = {
            "market_name": g.name,
            "vendor_id": "0x1002",
            "device_id": "0x740f",
            "rev_id": "0x02",
            "subvendor_id": "0x1002",
            "asic_serial": g.asic_serial or "N/A",
        }
        if self.v >= (6, 0):
            info["vendor_name"] = "Advanced Micro Devices Inc. [AMD/ATI]"
        if self.v[:2] == (6, 0):
            info["xgmi_physical_id"] = 0
        if self.v >= (6, 1):
            info["oam_id"] = "N/A"
        if self.v >= (6, 3):
            info["num_compute_units"] = 104
            info["target_graphics_version"] = g.gfx
        if self.v >= (7, 0):
            info["subsystem_id"] = "0x0c34"
        return info

    def amdsmi_get_gpu_board_info(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        g = self._device("amdsmi_get_gpu_board_info", processor_handle)
        info: dict[str, Any] = {
            "model_number": "102-D67302-00",
            "product_serial": g.board_serial,
            "product_name": g.name,
            "manufacturer_name": "AMD",
        }
        if self.v >= (6, 0):
            info["fru_id"] = "N/A"
        else:
            info["serial_number"] = g.board_serial
        return info

    def _kfd_info(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        g = self._device("amdsmi_get_gpu_kfd_info", processor_handle)
        return {"kfd_id": 1000 + g.kfd_node, "node_id": g.kfd_node, "current_partition_id": 0}

    def _enumeration_info(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        g = self._device("amdsmi_get_gpu_enumeration_info", processor_handle)
        return {
            "drm_render": 128 + processor_handle.index,
            "drm_card": processor_handle.index,
            "hsa_id": g.kfd_node,
            "hip_id": "N/A",
            "hip_uuid": g.hip_uuid or "N/A",
        }

    def amdsmi_get_energy_count(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        """Accumulator ticks; energy in µJ = ticks x ``counter_resolution``."""
        g = self._device("amdsmi_get_energy_count", processor_handle)
        if not g.energy_counter:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        if not g.reports_power:
            ticks = 0
        elif g.energy_stuck:
            ticks = g.counter_origin
        else:
            joules = sum(
                self.gpus[i]._integrator.between(g._base_t, self.now) for i in self._card(g)
            )
            ticks = g._base_raw + math.floor(joules * 1e6 / g.counter_resolution_uj + 1e-6)
            ticks %= 2**g.counter_bits
        out: dict[str, Any] = {}
        if self.v < (6, 4):
            out["power"] = ticks  # the accumulator, under its old name
        if self.v >= (6, 3):
            out["energy_accumulator"] = ticks
        out["counter_resolution"] = g.counter_resolution_uj
        out["timestamp"] = int(self.now * 1e9)
        return out

    def amdsmi_get_power_info(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        """Socket power in W (integers), ``"N/A"`` where the device does not report it."""
        g = self._device("amdsmi_get_power_info", processor_handle)
        watts = round(self._card_watts(g))
        na: Any = "N/A" if self.v >= (6, 2) else 0xFFFF  # not converted before 6.2
        current: Any = watts if g.reports_power and g.current_power else na
        average: Any = watts if g.reports_power else na
        info: dict[str, Any] = {"average_socket_power": average}
        if self.v >= (6, 0):
            info["current_socket_power"] = current
        if self.v >= (7, 0):
            info["socket_power"] = current if current != na else average
        info.update(gfx_voltage=na, soc_voltage=na, mem_voltage=na, power_limit=300)
        return info

    def _power_info_v64(
        self, processor_handle: FakeAmdHandle, sensor_ind: int = 0
    ) -> dict[str, Any]:
        return FakeAmdSmi.amdsmi_get_power_info(self, processor_handle)

    def amdsmi_get_gpu_activity(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        g = self._device("amdsmi_get_gpu_activity", processor_handle)
        na: Any = "N/A" if self.v >= (6, 1) else 0xFFFF  # not converted before 6.1
        gfx: Any = na if g.utilization is None else g.utilization
        return {"gfx_activity": gfx, "umc_activity": na, "mm_activity": na}

    def amdsmi_get_gpu_vram_usage(self, processor_handle: FakeAmdHandle) -> dict[str, Any]:
        """MB (the C struct's ``vram_total``/``vram_used`` are in MB)."""
        g = self._device("amdsmi_get_gpu_vram_usage", processor_handle)
        return {"vram_total": g.vram_total_mb, "vram_used": g.vram_used_mb}
