"""A fake ``pynvml`` (NVIDIA's nvidia-ml-py binding) for tests, following the real contract.

Quick use::

    from tests.fakes.fake_nvml import FakeGpu, FakeNVML, PowerTrace, NVML_ERROR_GPU_IS_LOST

    fake = FakeNVML([
        FakeGpu(uuid="GPU-11111111-1111-1111-1111-111111111111", power_w=250.0),
        FakeGpu(
            uuid="GPU-22222222-2222-2222-2222-222222222222",
            power_w=PowerTrace([(0, 50), (10, 50), (10, 300)]),  # a step at t=10 s
            energy_counter=False,                                # pre-Volta: power only
        ),
    ])
    sensor = NvmlSensor.create(nvml=fake, environ={})   # pass the fake where pynvml goes
    fake.advance(1.5)                  # move the fake clock (seconds); energy integrates exactly
    fake.true_energy_j(0)              # exact energy of GPU 0 since t=0, in J
    fake.inject(1, NVML_ERROR_GPU_IS_LOST, start=5.0)   # every call on GPU 1 fails from t=5 s
    fake.inject(0, NVML_ERROR_NOT_SUPPORTED, functions={"nvmlDeviceGetTotalEnergyConsumption"})

``FakeGpu`` knobs: ``power_w`` (watts: a number, a :class:`PowerTrace` — piecewise linear with an
exact integral — or any ``f(t_seconds)``, integrated with Simpson's rule on a 1 ms grid),
``energy_counter`` (False: ``nvmlDeviceGetTotalEnergyConsumption`` raises NOT_SUPPORTED),
``counter_origin_mj`` (counter value at t=0), ``counter_period_s`` (the counter only moves at
multiples of this period, like real hardware), ``instant_power`` (False: the instant-power field
answers NOT_SUPPORTED), ``power_average_s`` (``nvmlDeviceGetPowerUsage`` returns the mean over this
window, as on A100 and newer), ``utilization`` (percent, None: NOT_SUPPORTED), ``memory_total`` /
``memory_used`` (bytes), ``mig_uuids`` (MIG instances on this GPU, found by
``nvmlDeviceGetHandleByUUID``).

``FakeNVML`` knobs: ``init_error`` (an ``NVML_ERROR_*`` code ``nvmlInit`` raises, e.g.
``NVML_ERROR_LIBRARY_NOT_FOUND`` or ``NVML_ERROR_DRIVER_NOT_LOADED``), ``has_instant_field``
(False: no ``NVML_FI_DEV_POWER_INSTANT`` attribute, like an old binding), ``strings_as_bytes``
(names and UUIDs as ``bytes``, like old bindings), ``real_time`` (the clock also follows
``time.monotonic()``, for a sampler on its own thread). ``fake.calls`` counts calls per function name;
``fake.reset_counter(gpu)`` restarts a GPU's energy counter at 0 (a driver reload);
``fake.freeze_counter(gpu)`` stops a GPU's energy counter while its power goes on (a faulty
counter); ``release = fake.hang(gpu, functions)`` makes calls on a GPU block until
``release.set()`` (a wedged driver call; ``fake.hung`` is set once a call is blocked).

Contract kept (see ``test_fake_matches_real_pynvml`` in tests/unit/test_sensor_nvml.py): the
function names and signatures used by hf-eco2ai, units (mW, mJ, bytes, percent), ``NVMLError``
whose constructor returns the per-code subclass (``NVMLError(15)`` is an ``NVMLError_GpuIsLost``)
with ``.value``, subclasses named and numbered as pynvml generates them, ``Uninitialized`` before
``nvmlInit`` and after the last ``nvmlShutdown``, ``NOT_FOUND`` for an unknown UUID (no prefix
matching in NVML itself), MIG device handles whose parent is found with
``nvmlDeviceGetDeviceHandleFromMigDeviceHandle``, and per-field ``nvmlReturn`` codes in
``nvmlDeviceGetFieldValues`` results.
"""

from __future__ import annotations

import bisect
import itertools
import math
import string
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------- constants (nvml.h values)
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186

NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4
NVML_VALUE_TYPE_SIGNED_INT = 5
NVML_VALUE_TYPE_UNSIGNED_SHORT = 6


# --------------------------------------------------------------------- errors, as pynvml makes them
class NVMLError(Exception):
    """``NVMLError(code)`` returns an instance of the subclass registered for ``code``."""

    _valClassMapping: dict[int, type[NVMLError]] = {}
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return self.value == getattr(other, "value", None)

    __hash__ = None  # type: ignore[assignment]  # pynvml defines __eq__ only


_ERROR_STRINGS = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


def _make_error_classes() -> dict[str, type[NVMLError]]:
    """``NVML_ERROR_GPU_IS_LOST`` -> ``NVMLError_GpuIsLost``, exactly as pynvml names them."""
    module = sys.modules[__name__]
    made: dict[str, type[NVMLError]] = {}
    for err_name in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(
            err_name.replace("NVML_ERROR_", ""), "_"
        ).replace("_", "")
        code = getattr(module, err_name)

        def gen_new(val: int) -> Callable[..., NVMLError]:
            def new(typ: type[NVMLError], *args: object) -> NVMLError:
                return NVMLError.__new__(typ, val)

            return new

        cls = type(class_name, (NVMLError,), {"__new__": gen_new(code)})
        cls.__module__ = __name__
        setattr(module, class_name, cls)
        NVMLError._valClassMapping[code] = cls
        made[class_name] = cls
    return made


ERROR_CLASSES = _make_error_classes()
NVMLError_NotSupported: type[NVMLError] = ERROR_CLASSES["NVMLError_NotSupported"]
NVMLError_GpuIsLost: type[NVMLError] = ERROR_CLASSES["NVMLError_GpuIsLost"]
NVMLError_LibraryNotFound: type[NVMLError] = ERROR_CLASSES["NVMLError_LibraryNotFound"]
NVMLError_Uninitialized: type[NVMLError] = ERROR_CLASSES["NVMLError_Uninitialized"]
NVMLError_NotFound: type[NVMLError] = ERROR_CLASSES["NVMLError_NotFound"]
NVMLError_Unknown: type[NVMLError] = ERROR_CLASSES["NVMLError_Unknown"]


# --------------------------------------------------------------------- power traces
class PowerTrace:
    """Piecewise-linear power in W over time in s, with an exact integral.

    ``points`` are ``(t, watts)`` with non-decreasing ``t``; a repeated ``t`` makes a step (the
    later value holds from ``t`` on). Before the first point and after the last the power is
    constant.

    >>> trace = PowerTrace([(0, 100), (10, 100), (10, 300), (20, 100)])
    >>> trace(5), trace(10), trace(15), trace.energy(0, 20)
    (100.0, 300.0, 200.0, 3000.0)
    """

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        if not points:
            raise ValueError("a PowerTrace needs at least one point")
        ts = [float(t) for t, _ in points]
        if any(b < a for a, b in itertools.pairwise(ts)):
            raise ValueError("PowerTrace times must be non-decreasing")
        self.t = ts
        self.p = [float(p) for _, p in points]

    def __call__(self, t: float) -> float:
        i = bisect.bisect_right(self.t, t)
        if i == 0:
            return self.p[0]
        if i == len(self.t):
            return self.p[-1]
        t0, t1, p0, p1 = self.t[i - 1], self.t[i], self.p[i - 1], self.p[i]
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0)

    def energy(self, t0: float, t1: float) -> float:
        """Exact integral of the power over [t0, t1], in J."""
        if t1 < t0:
            return -self.energy(t1, t0)
        knots = sorted({t0, t1, *(t for t in self.t if t0 < t < t1)})
        total = 0.0
        for a, b in itertools.pairwise(knots):
            # power is linear on (a, b): evaluate just inside the ends to respect steps
            total += (self._right(a) + self._left(b)) / 2.0 * (b - a)
        return total

    def _right(self, t: float) -> float:
        return self(t)

    def _left(self, t: float) -> float:
        i = bisect.bisect_left(self.t, t)
        if i == 0:
            return self.p[0]
        if i == len(self.t):
            return self.p[-1]
        t0, t1, p0, p1 = self.t[i - 1], self.t[i], self.p[i - 1], self.p[i]
        return p0 + (p1 - p0) * (t - t0) / (t1 - t0) if t1 > t0 else p0


class _Integrator:
    """Energy between two times of a power function (exact where the function allows)."""

    STEP_S = 1e-3

    def __init__(self, power: float | Callable[[float], float]) -> None:
        self.power = power
        self._tc = 0.0
        self._ec = 0.0

    def watts(self, t: float) -> float:
        return float(self.power) if isinstance(self.power, (int, float)) else self.power(t)

    def between(self, t0: float, t1: float) -> float:
        if isinstance(self.power, (int, float)):
            return float(self.power) * (t1 - t0)
        if isinstance(self.power, PowerTrace):
            return self.power.energy(t0, t1)
        return self._cumulative(t1) - self._cumulative(t0)

    def _cumulative(self, t: float) -> float:
        if t >= self._tc:
            self._ec += self._simpson(self._tc, t)
            self._tc = t
            return self._ec
        return self._ec - self._simpson(t, self._tc)

    def _simpson(self, a: float, b: float) -> float:
        if b <= a:
            return 0.0
        f = self.power
        assert callable(f)
        n = max(2, math.ceil((b - a) / self.STEP_S))
        n += n % 2
        h = (b - a) / n
        s = f(a) + f(b)
        s += 4.0 * sum(f(a + k * h) for k in range(1, n, 2))
        s += 2.0 * sum(f(a + k * h) for k in range(2, n, 2))
        return s * h / 3.0


# --------------------------------------------------------------------- devices
@dataclass
class FakeGpu:
    """One fake GPU (see the module docstring for every knob)."""

    uuid: str
    name: str = "NVIDIA A100-SXM4-80GB"
    power_w: float | Callable[[float], float] = 100.0
    energy_counter: bool = True
    counter_origin_mj: int = 5_000_000
    counter_period_s: float = 0.0
    instant_power: bool = True
    power_average_s: float = 0.0
    utilization: int | None = 0
    memory_total: int = 80 * 1024**3
    memory_used: int = 1024**3
    mig_uuids: Sequence[str] = ()
    _integrator: _Integrator = field(init=False, repr=False)
    _base_t: float = field(default=0.0, init=False, repr=False)
    _base_mj: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._integrator = _Integrator(self.power_w)
        self._base_mj = self.counter_origin_mj


@dataclass(frozen=True)
class FakeHandle:
    """An opaque device handle (a physical GPU, or one of its MIG instances)."""

    index: int
    mig_uuid: str | None = None


@dataclass
class _Hang:
    gpu: int
    functions: frozenset[str] | None
    release: threading.Event


@dataclass
class _Fault:
    gpu: int
    code: int
    functions: frozenset[str] | None
    start: float
    end: float


class _Struct:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__})"


class FakeNVML:
    """Stands in for the ``pynvml`` module; pass it as ``nvml=`` (see the module docstring)."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        init_error: int | None = None,
        has_instant_field: bool = True,
        strings_as_bytes: bool = False,
        real_time: bool = False,
    ) -> None:
        module = sys.modules[__name__]
        for name in dir(module):
            if name.startswith(("NVML_ERROR_", "NVML_VALUE_TYPE_", "NVMLError")):
                setattr(self, name, getattr(module, name))
        self.NVML_SUCCESS = NVML_SUCCESS
        self.NVML_FI_DEV_POWER_AVERAGE = NVML_FI_DEV_POWER_AVERAGE
        if has_instant_field:
            self.NVML_FI_DEV_POWER_INSTANT = NVML_FI_DEV_POWER_INSTANT
        self.gpus = list(gpus)
        self._now = 0.0
        self._real_t0 = time.monotonic() if real_time else None
        self.init_error = init_error
        self.strings_as_bytes = strings_as_bytes
        self.init_count = 0
        self.calls: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._hangs: list[_Hang] = []
        self._frozen: dict[int, int] = {}
        self.hung = threading.Event()
        """Set when a call has blocked in a :meth:`hang`."""

    # ------------------------------------------------------------------ test controls
    @property
    def now(self) -> float:
        """The fake clock (s): moved by :meth:`advance`, plus real time with ``real_time``."""
        if self._real_t0 is None:
            return self._now
        return self._now + time.monotonic() - self._real_t0

    def advance(self, seconds: float) -> None:
        """Move the clock forward; every GPU's energy follows its power trace exactly."""
        if seconds < 0:
            raise ValueError("the fake clock only moves forward")
        self._now += seconds

    def true_energy_j(self, gpu: int | str, t0: float = 0.0, t1: float | None = None) -> float:
        """Exact energy (J) of ``gpu`` (index or UUID) over [t0, t1] (default: [0, now])."""
        g = self.gpus[self._index(gpu)]
        return g._integrator.between(t0, self.now if t1 is None else t1)

    def inject(
        self,
        gpu: int | str,
        code: int,
        *,
        functions: Collection[str] | None = None,
        start: float = 0.0,
        end: float = math.inf,
    ) -> None:
        """From ``start`` until ``end`` (fake seconds), calls on ``gpu`` raise ``NVMLError(code)``.

        ``functions`` limits the fault to those pynvml function names (default: every call
        that takes this GPU's handle, including handle lookups).
        """
        funcs = None if functions is None else frozenset(functions)
        self._faults.append(_Fault(self._index(gpu), code, funcs, start, end))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._faults.clear()

    def hang(self, gpu: int | str, functions: Collection[str] | None = None) -> threading.Event:
        """From now on, calls on ``gpu`` (limited to ``functions``) block until the returned
        event is set: a driver call that never returns."""
        release = threading.Event()
        funcs = None if functions is None else frozenset(functions)
        self._hangs.append(_Hang(self._index(gpu), funcs, release))
        return release

    def freeze_counter(self, gpu: int | str) -> None:
        """The GPU's energy counter stops at its current value (power readings go on)."""
        index = self._index(gpu)
        self._frozen[index] = self.nvmlDeviceGetTotalEnergyConsumption(FakeHandle(index))

    def reset_counter(self, gpu: int | str) -> None:
        """The GPU's energy counter restarts from 0 now (a driver reload or GPU reset)."""
        g = self.gpus[self._index(gpu)]
        g._base_t, g._base_mj = self.now, 0

    # ------------------------------------------------------------------ internals
    def _index(self, gpu: int | str) -> int:
        if isinstance(gpu, int):
            return gpu
        for i, g in enumerate(self.gpus):
            if g.uuid == gpu:
                return i
        raise KeyError(gpu)

    def _enter(self, fn: str) -> None:
        self.calls[fn] += 1
        if self.init_count <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _device(self, fn: str, handle: object) -> tuple[FakeGpu, FakeHandle]:
        self._enter(fn)
        if not isinstance(handle, FakeHandle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self._check_faults(fn, handle.index)
        return self.gpus[handle.index], handle

    def _check_faults(self, fn: str, index: int) -> None:
        for h in self._hangs:
            wanted = h.gpu == index and (h.functions is None or fn in h.functions)
            if wanted and not h.release.is_set():
                self.hung.set()
                h.release.wait()
        for f in self._faults:
            if f.gpu != index or not f.start <= self.now < f.end:
                continue
            if f.functions is None or fn in f.functions:
                raise NVMLError(f.code)

    def _str(self, text: str) -> str | bytes:
        return text.encode() if self.strings_as_bytes else text

    # ------------------------------------------------------------------ the pynvml API
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.init_count -= 1

    def nvmlErrorString(self, result: int) -> str:
        return _ERROR_STRINGS.get(result, "Unknown Error")

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self._check_faults("nvmlDeviceGetHandleByIndex", index)
        return FakeHandle(index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        if not text:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        for i, g in enumerate(self.gpus):
            if g.uuid == text:
                self._check_faults("nvmlDeviceGetHandleByUUID", i)
                return FakeHandle(i)
            if text in g.mig_uuids:
                self._check_faults("nvmlDeviceGetHandleByUUID", i)
                return FakeHandle(i, text)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str | bytes:
        g, h = self._device("nvmlDeviceGetUUID", handle)
        return self._str(h.mig_uuid or g.uuid)

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str | bytes:
        g, h = self._device("nvmlDeviceGetName", handle)
        return self._str(g.name + (" MIG 1g.10gb" if h.mig_uuid else ""))

    def nvmlDeviceIsMigDeviceHandle(self, device: FakeHandle) -> int:
        _, h = self._device("nvmlDeviceIsMigDeviceHandle", device)
        return 1 if h.mig_uuid else 0

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: FakeHandle) -> FakeHandle:
        _, h = self._device("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", migDevice)
        if h.mig_uuid is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return FakeHandle(h.index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: FakeHandle) -> int:
        """mJ since the driver loaded (integer, like the C ``unsigned long long``)."""
        g, h = self._device("nvmlDeviceGetTotalEnergyConsumption", handle)
        if h.mig_uuid or not g.energy_counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if h.index in self._frozen:
            return self._frozen[h.index]
        t = self.now
        if g.counter_period_s > 0:
            t = math.floor(t / g.counter_period_s + 1e-9) * g.counter_period_s
        t = max(t, g._base_t)
        return g._base_mj + math.floor(g._integrator.between(g._base_t, t) * 1000.0 + 1e-6)

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        """mW (integer): instant, or the mean over ``power_average_s`` when that is set."""
        g, h = self._device("nvmlDeviceGetPowerUsage", handle)
        if h.mig_uuid:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        w = g.power_average_s
        watts = g._integrator.between(self.now - w, self.now) / w if w > 0 else self._watts(g)
        return round(watts * 1000.0)

    def nvmlDeviceGetFieldValues(
        self, handle: FakeHandle, fieldIds: Sequence[Any]
    ) -> list[_Struct]:
        g, h = self._device("nvmlDeviceGetFieldValues", handle)
        out = []
        for item in fieldIds:
            field_id, scope = item if isinstance(item, tuple) else (item, 0)
            ok = field_id == NVML_FI_DEV_POWER_INSTANT and g.instant_power and not h.mig_uuid
            value = _Struct(dVal=0.0, uiVal=0, ulVal=0, ullVal=0, sllVal=0, siVal=0, usVal=0)
            if ok:
                value.uiVal = round(self._watts(g) * 1000.0)
            out.append(
                _Struct(
                    fieldId=field_id,
                    scopeId=scope,
                    timestamp=int(self.now * 1e6),
                    latencyUsec=0,
                    valueType=NVML_VALUE_TYPE_UNSIGNED_INT,
                    nvmlReturn=NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED,
                    value=value,
                )
            )
        return out

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> _Struct:
        g, h = self._device("nvmlDeviceGetUtilizationRates", handle)
        if g.utilization is None or h.mig_uuid:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return _Struct(gpu=g.utilization, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> _Struct:
        g, _ = self._device("nvmlDeviceGetMemoryInfo", handle)
        return _Struct(
            total=g.memory_total, free=g.memory_total - g.memory_used, used=g.memory_used
        )

    def _watts(self, g: FakeGpu) -> float:
        return g._integrator.watts(self.now)
