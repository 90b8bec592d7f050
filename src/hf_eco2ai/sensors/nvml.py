"""NVIDIA GPUs through NVML (``nvidia-ml-py``, import name ``pynvml``).

What is read, per GPU:

* **energy** — ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded; Volta and
  newer), probed once at creation. Where it is ``NOT_SUPPORTED`` (or reads 0, which a working
  counter never does) the device is tagged ``nvml-power`` and ``energy_j`` is ``None``, so the
  sampler integrates power instead: never a silent zero. If the counter turns ``NOT_SUPPORTED``
  mid-run the device switches to power from then on (logged once).
* **power** — the instant-power field (``nvmlDeviceGetFieldValues`` with
  ``NVML_FI_DEV_POWER_INSTANT``) where the binding has the constant and the driver answers it,
  else ``nvmlDeviceGetPowerUsage`` (mW). On A100-class and newer GPUs the latter is a 1 s average.
* **utilization** (``nvmlDeviceGetUtilizationRates(h).gpu`` / 100) and **memory** used/total
  (bytes); these are optional: a failure gives ``None``.

Which GPUs: ``selectors`` (``CarbonConfig.gpu_devices``: CUDA indices or UUIDs) or else the GPUs
this process can see. ``CUDA_VISIBLE_DEVICES`` is honoured the way CUDA reads it: indices,
``GPU-…`` UUIDs (a unique prefix is enough), ``MIG-…`` instances (reported as their parent GPU and
flagged ``mig=true``: NVML meters the whole GPU, not a slice), parsing stops at the first entry
that names no GPU, and an empty value means no GPU. A CUDA index is always mapped to an NVML handle
through the GPU's UUID, never by NVML index. Without ``CUDA_VISIBLE_DEVICES`` CUDA order is assumed
to be NVML (PCI bus) order unless ``torch.cuda`` is already initialised, in which case torch's own
device UUIDs settle it.

Example:
    >>> from hf_eco2ai.sensors.nvml import NvmlSensor
    >>> sensor = NvmlSensor.create()  # None (and one log line) without an NVIDIA GPU
    >>> if sensor is not None:
    ...     watts = sensor.read(0).power_w
    ...     sensor.close()
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hf_eco2ai.sensors.base import (
    DeviceInfo,
    DeviceLostError,
    HwType,
    Method,
    Reading,
    SensorError,
)
from hf_eco2ai.sensors.discovery_notes import (
    devices_note,
    no_sensor,
    note_suffix,
    one_device_per_rank,
)

__all__ = ["NvmlSensor"]

logger = logging.getLogger(__name__)

# NVML return codes used here (nvml.h; the binding exposes them as NVML_ERROR_*). Read from the
# module when present, so a binding that renumbers them still works.
_NOT_SUPPORTED = 3
_GPU_IS_LOST = 15
_RESET_REQUIRED = 16
_SUCCESS = 0

# c_nvmlValue_t member for each NVML_VALUE_TYPE_* (nvml.h ``nvmlValueType_t``).
_VALUE_MEMBER = {
    0: "dVal",
    1: "uiVal",
    2: "ulVal",
    3: "ullVal",
    4: "sllVal",
    5: "siVal",
    6: "usVal",
}


def _code(nvml: Any, name: str, default: int) -> int:
    value = getattr(nvml, name, default)
    return value if isinstance(value, int) else default


def _text(value: object) -> str:
    """NVML strings are ``str`` in recent bindings and ``bytes`` in old ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass
class _Physical:
    """One GPU as NVML enumerates it."""

    nvml_index: int
    uuid: str
    handle: Any


@dataclass
class _Target:
    """A GPU chosen for measurement, with how it was reached."""

    phys: _Physical
    cuda_index: int | None = None
    mig: list[str] = field(default_factory=list)


@dataclass
class _Gpu:
    """Per-device reading state."""

    handle: Any
    uuid: str
    use_energy: bool
    use_instant: bool
    read_util: bool = True
    read_memory: bool = True
    last_raw_mj: int | None = None
    offset_mj: int = 0
    last_energy_j: float | None = None
    last_energy_t: float | None = None
    last_power_w: float = 0.0


class NvmlSensor:
    """Reads energy, power, utilization and memory of NVIDIA GPUs through NVML.

    Build it with :meth:`create` (or :meth:`try_create` to also get the reason when there is no
    GPU); the constructor is internal. ``read(i)`` raises :class:`DeviceLostError` when the GPU is
    lost (``NVML_ERROR_GPU_IS_LOST``) and :class:`SensorError` for any other NVML error.

    Example:
        >>> sensor, why = NvmlSensor.try_create(["0"])  # CUDA device 0, if there is one
        >>> if sensor is not None:
        ...     joules = sensor.read(0).energy_j  # None where the GPU has no energy counter
        ...     sensor.close()
    """

    def __init__(
        self,
        nvml: Any,
        gpus: Sequence[_Gpu],
        devices: Sequence[DeviceInfo],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._gpus = list(gpus)
        self._devices = list(devices)
        self._clock = clock
        self._closed = False
        self._reading = 0
        """Reads in progress (a read stuck in the driver stays counted)."""
        self._lost_codes = {
            _code(nvml, "NVML_ERROR_GPU_IS_LOST", _GPU_IS_LOST),
            _code(nvml, "NVML_ERROR_RESET_REQUIRED", _RESET_REQUIRED),
        }
        self._not_supported = _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        selectors: Sequence[str] | None = None,
        *,
        nvml: Any = None,
        environ: Mapping[str, str] | None = None,
        local_rank: int | None = None,
        local_world_size: int | None = None,
    ) -> NvmlSensor | None:
        """The sensor, or ``None`` (one log line, no exception) when there is no usable GPU."""
        return cls.try_create(
            selectors,
            nvml=nvml,
            environ=environ,
            local_rank=local_rank,
            local_world_size=local_world_size,
        )[0]

    @classmethod
    def try_create(
        cls,
        selectors: Sequence[str] | None = None,
        *,
        nvml: Any = None,
        environ: Mapping[str, str] | None = None,
        local_rank: int | None = None,
        local_world_size: int | None = None,
    ) -> tuple[NvmlSensor | None, str]:
        """Like :meth:`create`, plus a human-readable note of what was found and why.

        ``selectors`` are CUDA indices (relative to what this process sees) or GPU/MIG UUIDs.
        ``local_rank``/``local_world_size``: when several local ranks each see the same N GPUs
        (N == local world size) and no selector is given, only GPU ``local_rank`` is measured,
        so a node's GPUs are not counted once per rank.
        """
        env = os.environ if environ is None else environ
        if nvml is None:
            try:
                import pynvml as nvml_module
            except Exception as exc:  # ImportError, or a broken install
                return no_sensor(
                    f"NVML: nvidia-ml-py is not importable ({exc}): no GPU metrics", logger
                )
            nvml = nvml_module
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return no_sensor(
                f"NVML: nvmlInit failed ({exc}): no NVIDIA driver, no GPU metrics", logger
            )
        try:
            sensor, note = cls._build(nvml, selectors, env, local_rank, local_world_size)
        except Exception as exc:
            sensor, note = None, f"NVML: GPU discovery failed ({type(exc).__name__}: {exc})"
        if sensor is None:
            _shutdown(nvml)
            return no_sensor(note, logger)
        logger.info("%s", note)
        return sensor, note

    @classmethod
    def _build(
        cls,
        nvml: Any,
        selectors: Sequence[str] | None,
        env: Mapping[str, str],
        local_rank: int | None,
        local_world_size: int | None,
    ) -> tuple[NvmlSensor | None, str]:
        notes: list[str] = []
        physical = _enumerate(nvml, notes)
        if not physical:
            return None, "NVML: no NVIDIA GPU found" + note_suffix(notes)
        visible, how = _visible(nvml, physical, env, notes)
        if not visible:
            return None, f"NVML: no GPU visible to this process ({how})" + note_suffix(notes)
        if selectors:
            chosen = _select(nvml, physical, visible, selectors, notes)
            how = f"gpu_devices={','.join(selectors)} ({how})"
        elif (
            per_rank := one_device_per_rank(
                visible, local_rank=local_rank, local_world_size=local_world_size, api="CUDA"
            )
        ) is not None:
            chosen, why = per_rank
            how += why
        else:
            chosen = list(visible)
        chosen = _dedupe(chosen)
        if not chosen:
            return None, f"NVML: no GPU selected ({how})" + note_suffix(notes)
        gpus: list[_Gpu] = []
        devices: list[DeviceInfo] = []
        for target in chosen:
            gpu, info = _probe(nvml, target)
            gpus.append(gpu)
            devices.append(info)
        note = devices_note("NVML", devices, how, notes)
        return cls(nvml, gpus, devices), note

    # ------------------------------------------------------------------ Sensor protocol
    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """The GPUs read, in a fixed order (``hw_id`` is the GPU UUID)."""
        return tuple(self._devices)

    def read(self, index: int) -> Reading:
        """Read GPU ``index``: cumulative energy (J) or None, power (W), utilization, memory."""
        if self._closed:
            raise SensorError("NVML sensor is closed")
        self._reading += 1
        try:
            return self._read(index)
        finally:
            self._reading -= 1

    def _read(self, index: int) -> Reading:
        gpu = self._gpus[index]
        nvml = self._nvml
        try:
            energy_j = self._read_energy(index, gpu)
            now = self._clock()
            try:
                power_w = self._read_power(gpu)
            except nvml.NVMLError as exc:
                if self._is_lost(exc) or energy_j is None or gpu.last_energy_t is None:
                    raise
                assert gpu.last_energy_j is not None
                dt = now - gpu.last_energy_t
                power_w = (energy_j - gpu.last_energy_j) / dt if dt > 0 else gpu.last_power_w
            if energy_j is not None:
                gpu.last_energy_j, gpu.last_energy_t = energy_j, now
            gpu.last_power_w = power_w
            utilization = self._read_utilization(gpu)
            used, total = self._read_memory(gpu)
        except nvml.NVMLError as exc:
            if self._is_lost(exc):
                raise DeviceLostError(f"GPU {gpu.uuid} is lost: {exc}") from exc
            raise SensorError(f"NVML error on GPU {gpu.uuid}: {exc}") from exc
        return Reading(
            power_w=power_w,
            energy_j=energy_j,
            utilization=utilization,
            memory_used=used,
            memory_limit=total,
        )

    # ------------------------------------------------------------------ job-scope hook (scope)
    def nvml_handle(self, index: int) -> tuple[Any, Any]:
        """``(nvml module, device handle)`` of GPU ``index``, for
        :class:`~hf_eco2ai.sensors.process_share.JobScopedSensor` (which asks NVML who else
        runs on the GPU). Sampler thread only."""
        return self._nvml, self._gpus[index].handle

    def close(self) -> None:
        """Call ``nvmlShutdown`` once (idempotent) — unless a read is still in the driver (a
        stalled device): shutting NVML down under a call that never returned could block too,
        so the library is left loaded for the process's exit to release."""
        if self._closed:
            return
        self._closed = True
        if self._reading:
            logger.warning("NVML: a read is still blocked in the driver; nvmlShutdown skipped")
            return
        _shutdown(self._nvml)

    # ------------------------------------------------------------------ reads
    def _is_lost(self, exc: BaseException) -> bool:
        lost_cls = getattr(self._nvml, "NVMLError_GpuIsLost", None)
        if isinstance(lost_cls, type) and isinstance(exc, lost_cls):
            return True
        return getattr(exc, "value", None) in self._lost_codes

    def _read_energy(self, index: int, gpu: _Gpu) -> float | None:
        if not gpu.use_energy:
            return None
        nvml = self._nvml
        try:
            raw = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))
        except nvml.NVMLError as exc:
            if getattr(exc, "value", None) != self._not_supported:
                raise
            gpu.use_energy = False
            old = self._devices[index]
            self._devices[index] = DeviceInfo(
                hw_id=old.hw_id,
                hw_type=old.hw_type,
                name=old.name,
                vendor=old.vendor,
                method=Method.NVML_POWER,
                note=old.note + "; energy counter became NOT_SUPPORTED mid-run: power integrated",
                extra=old.extra,
            )
            logger.warning(
                "NVML: energy counter of GPU %s became NOT_SUPPORTED; integrating power from now",
                gpu.uuid,
            )
            return None
        if gpu.last_raw_mj is not None and raw < gpu.last_raw_mj:
            if raw >= gpu.last_raw_mj - raw:
                # A small step back is a glitch, not a restart (which drops to near 0): keep
                # the last value, so the counter history is not added again.
                return (gpu.last_raw_mj + gpu.offset_mj) / 1000.0
            # The counter restarted (driver reload / GPU reset): keep our total monotonic.
            gpu.offset_mj += gpu.last_raw_mj
        gpu.last_raw_mj = raw
        return (raw + gpu.offset_mj) / 1000.0

    def _read_power(self, gpu: _Gpu) -> float:
        nvml = self._nvml
        if gpu.use_instant:
            ok, value_mw, code = _instant_power_mw(nvml, gpu.handle)
            if ok:
                return value_mw / 1000.0
            if code == self._not_supported:
                gpu.use_instant = False
        return float(nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0

    def _read_utilization(self, gpu: _Gpu) -> float | None:
        if not gpu.read_util:
            return None
        nvml = self._nvml
        try:
            rates = nvml.nvmlDeviceGetUtilizationRates(gpu.handle)
        except nvml.NVMLError as exc:
            if self._is_lost(exc):
                raise
            if getattr(exc, "value", None) == self._not_supported:
                gpu.read_util = False
            return None
        return min(max(float(rates.gpu) / 100.0, 0.0), 1.0)

    def _read_memory(self, gpu: _Gpu) -> tuple[int | None, int | None]:
        if not gpu.read_memory:
            return None, None
        nvml = self._nvml
        try:
            info = nvml.nvmlDeviceGetMemoryInfo(gpu.handle)
        except nvml.NVMLError as exc:
            if self._is_lost(exc):
                raise
            if getattr(exc, "value", None) == self._not_supported:
                gpu.read_memory = False
            return None, None
        return int(info.used), int(info.total)


# ---------------------------------------------------------------------- helpers
def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:
        logger.debug("nvmlShutdown failed: %s", exc)


def _instant_power_mw(nvml: Any, handle: Any) -> tuple[bool, float, int | None]:
    """(ok, mW, per-field return code) of the instant-power field."""
    field_id = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
    if not isinstance(field_id, int):
        return False, 0.0, _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED)
    try:
        values = nvml.nvmlDeviceGetFieldValues(handle, [field_id])
    except nvml.NVMLError as exc:
        return False, 0.0, getattr(exc, "value", None)
    value = values[0]
    code = int(value.nvmlReturn)
    if code != _SUCCESS:
        return False, 0.0, code
    member = _VALUE_MEMBER.get(int(value.valueType), "uiVal")
    return True, float(getattr(value.value, member)), None


def _enumerate(nvml: Any, notes: list[str]) -> list[_Physical]:
    count = int(nvml.nvmlDeviceGetCount())
    out: list[_Physical] = []
    for i in range(count):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError as exc:
            notes.append(f"NVML device {i} skipped: {exc}")
            continue
        out.append(_Physical(i, uuid, handle))
    return out


def _by_uuid_prefix(physical: Sequence[_Physical], prefix: str) -> _Physical | None:
    """The GPU whose UUID starts with ``prefix`` (CUDA accepts a unique prefix), else None."""
    want = prefix.lower()
    hits = [p for p in physical if p.uuid.lower().startswith(want)]
    exact = [p for p in hits if p.uuid.lower() == want]
    if exact:
        return exact[0]
    return hits[0] if len(hits) == 1 else None


_OLD_MIG = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/\d+/\d+$")


def _resolve(
    nvml: Any, physical: Sequence[_Physical], entry: str, cuda_index: int | None
) -> _Target | None:
    """One ``CUDA_VISIBLE_DEVICES``-style entry (index, GPU- or MIG- UUID) to a physical GPU."""
    text = entry.strip()
    if text.isdigit():
        i = int(text)
        return _Target(physical[i], cuda_index) if i < len(physical) else None
    upper = text.upper()
    if upper.startswith("GPU-"):
        phys = _by_uuid_prefix(physical, text)
        return _Target(phys, cuda_index) if phys else None
    if upper.startswith("MIG-"):
        old = _OLD_MIG.match(text)
        if old:  # pre-R470 form MIG-GPU-<uuid>/<gi>/<ci>
            phys = _by_uuid_prefix(physical, old.group(1))
            return _Target(phys, cuda_index, [text]) if phys else None
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(text)
            if nvml.nvmlDeviceIsMigDeviceHandle(handle):
                handle = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            parent_uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        except nvml.NVMLError:
            return None
        phys = _by_uuid_prefix(physical, parent_uuid)
        return _Target(phys, cuda_index, [text]) if phys else None
    return None


def _torch_uuids() -> list[str] | None:
    """CUDA device UUIDs in CUDA order, if torch is already imported and CUDA initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return [
            "GPU-" + str(torch.cuda.get_device_properties(i).uuid)
            for i in range(torch.cuda.device_count())
        ]
    except Exception:
        return None


def _visible(
    nvml: Any, physical: Sequence[_Physical], env: Mapping[str, str], notes: list[str]
) -> tuple[list[_Target], str]:
    """The GPUs this process sees, in CUDA index order, and how that was decided."""
    uuids = _torch_uuids()
    if uuids:
        targets = [_resolve(nvml, physical, u, i) for i, u in enumerate(uuids)]
        if all(t is not None for t in targets):
            return [t for t in targets if t is not None], "torch.cuda device UUIDs"
        notes.append("torch.cuda UUIDs not all known to NVML: using CUDA_VISIBLE_DEVICES")
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        names = {_safe_name(nvml, p.handle) for p in physical}
        if len(names) > 1 and env.get("CUDA_DEVICE_ORDER", "").upper() != "PCI_BUS_ID":
            notes.append(
                "mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA indices may"
                " differ from NVML order (set CUDA_DEVICE_ORDER=PCI_BUS_ID or gpu_devices=UUIDs)"
            )
        return [_Target(p, i) for i, p in enumerate(physical)], "all GPUs (no CUDA_VISIBLE_DEVICES)"
    if not raw.strip():
        return [], "CUDA_VISIBLE_DEVICES is empty"
    out: list[_Target] = []
    for entry in raw.split(","):
        target = _resolve(nvml, physical, entry, len(out))
        if target is None:
            notes.append(
                f"CUDA_VISIBLE_DEVICES entry {entry.strip()!r} names no GPU:"
                " CUDA ignores it and every entry after it"
            )
            break
        out.append(target)
    return out, f"CUDA_VISIBLE_DEVICES={raw}"


def _select(
    nvml: Any,
    physical: Sequence[_Physical],
    visible: Sequence[_Target],
    selectors: Sequence[str],
    notes: list[str],
) -> list[_Target]:
    out: list[_Target] = []
    for sel in selectors:
        text = str(sel).strip()
        if text.isdigit():
            i = int(text)
            if i < len(visible):
                out.append(visible[i])
            else:
                notes.append(f"gpu_devices entry {text}: only {len(visible)} GPU(s) visible")
            continue
        target = _resolve(nvml, physical, text, None)
        if target is None:
            notes.append(f"gpu_devices entry {text!r} names no GPU")
            continue
        for v in visible:  # keep the CUDA index when the GPU is visible
            if v.phys.uuid == target.phys.uuid:
                target.cuda_index = v.cuda_index
                break
        out.append(target)
    return out


def _dedupe(targets: Sequence[_Target]) -> list[_Target]:
    """One entry per physical GPU (two MIG slices of a GPU are one GPU to NVML's meters)."""
    by_uuid: dict[str, _Target] = {}
    for t in targets:
        seen = by_uuid.get(t.phys.uuid)
        if seen is None:
            by_uuid[t.phys.uuid] = _Target(t.phys, t.cuda_index, list(t.mig))
        else:
            seen.mig.extend(m for m in t.mig if m not in seen.mig)
    return list(by_uuid.values())


def _safe_name(nvml: Any, handle: Any) -> str:
    try:
        return _text(nvml.nvmlDeviceGetName(handle))
    except nvml.NVMLError:
        return "NVIDIA GPU"


def _probe(nvml: Any, target: _Target) -> tuple[_Gpu, DeviceInfo]:
    """Decide, once, how each GPU is read; describe it."""
    handle = target.phys.handle
    notes: list[str] = []
    method = Method.NVML_ENERGY
    try:
        if int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) == 0:
            method = Method.NVML_POWER
            notes.append("energy counter reads 0 (not working): power integrated")
        else:
            notes.append("hardware energy counter (mJ)")
    except nvml.NVMLError as exc:
        method = Method.NVML_POWER
        if getattr(exc, "value", None) == _code(nvml, "NVML_ERROR_NOT_SUPPORTED", _NOT_SUPPORTED):
            notes.append("energy counter NOT_SUPPORTED (pre-Volta?): power integrated")
        else:
            notes.append(f"energy counter unreadable ({exc}): power integrated")
    use_instant, _, _ = _instant_power_mw(nvml, handle)
    notes.append(
        "power from the instant-power field"
        if use_instant
        else "power from nvmlDeviceGetPowerUsage (may be a 1 s average on A100 and newer)"
    )
    extra = {"uuid": target.phys.uuid, "nvml_index": str(target.phys.nvml_index)}
    if target.cuda_index is not None:
        extra["cuda_index"] = str(target.cuda_index)
    extra["power_source"] = "instant" if use_instant else "power-usage"
    if target.mig:
        extra["mig"] = "true"
        extra["mig_uuids"] = ",".join(target.mig)
        notes.append(
            f"MIG instance(s) {', '.join(target.mig)}: reported at GPU level (whole-GPU energy,"
            " shared with any other instance)"
        )
    info = DeviceInfo(
        hw_id=target.phys.uuid,
        hw_type=HwType.GPU,
        name=_safe_name(nvml, handle),
        vendor="NVIDIA",
        method=method,
        note="; ".join(notes),
        extra=extra,
    )
    gpu = _Gpu(
        handle=handle,
        uuid=target.phys.uuid,
        use_energy=method is Method.NVML_ENERGY,
        use_instant=use_instant,
    )
    return gpu, info
