"""Setting up the amdsmi sensor: loading the library, and deciding once how each GPU is read.

Split from :mod:`hf_eco2ai.sensors.amdsmi` (which reads); see that module for what is measured.

Example:
    >>> counter({"energy_accumulator": 1000, "counter_resolution": 15.3, "timestamp": 0})
    (1000, 15.3)
    >>> counter({"power": 1000, "counter_resolution": 15.3, "timestamp": 0})  # before 6.4
    (1000, 15.3)
    >>> counter({"energy_accumulator": "N/A", "counter_resolution": 15.3})
    (None, 0.0)
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hf_eco2ai.sensors import amd_topology as topo
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method

NOT_SUPPORTED = 2
LOST = frozenset({31, 34, 54})  # NOT_FOUND, DRIVER_NOT_LOADED, AMDGPU_RESTART_ERR
STUCK_AFTER_S = 10.0
"""A counter unchanged this long while the GPU draws power is not working."""
SHARED_CARD_UNCERTAINTY = 0.25
"""Band of a die's even share of its card (the dies' real split depends on their loads)."""


def error_code(exc: BaseException) -> int | None:
    """The ``AMDSMI_STATUS_*`` code of an amdsmi exception, or None."""
    get = getattr(exc, "get_error_code", None)
    try:
        return int(get()) if callable(get) else None
    except Exception:
        return None


def one_line(exc: BaseException) -> str:
    """amdsmi's multi-line exception text on one line."""
    return " ".join(str(exc).split())


@dataclass
class Die:
    """Per-device reading state; power and energy come from ``source`` (its card's reporter)."""

    uuid: str
    own: Any
    source: Any
    share: float
    use_energy: bool
    power_keys: tuple[str, ...]
    read_util: bool = True
    read_memory: bool = True
    last_raw: int | None = None
    offset: int = 0
    resolution_uj: float = 0.0
    last_t: float | None = None
    last_power_w: float | None = None
    last_energy_j: float | None = None
    last_advance_t: float = 0.0
    stalled_j: float = 0.0


def library_path(env: Mapping[str, str] | None = None) -> str | None:
    """Where ``libamd_smi.so`` is (the places amdsmi itself looks), or None."""
    env = os.environ if env is None else env
    places = [
        os.path.join(env[v], "lib", "libamd_smi.so")
        for v in ("ROCM_HOME", "ROCM_PATH")
        if env.get(v)
    ]
    spec = importlib.util.find_spec("amdsmi")
    if spec is not None and spec.origin:
        places.append(os.path.join(os.path.dirname(spec.origin), "libamd_smi.so"))
    places.append("/opt/rocm/lib/libamd_smi.so")
    for place in places:
        if os.path.exists(place):
            return place
    return ctypes.util.find_library("amd_smi")


def import_amdsmi() -> tuple[Any, str]:
    if "amdsmi" in sys.modules:
        loaded = sys.modules["amdsmi"]
        return loaded, "" if loaded is not None else "AMD: amdsmi is not importable"
    try:
        installed = importlib.util.find_spec("amdsmi") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return None, "AMD: amdsmi is not installed (pip install 'hf-eco2ai[amd]'): no AMD GPU"
    if library_path() is None:
        return None, "AMD: amdsmi is installed but ROCm's libamd_smi.so is not: no AMD GPU"
    try:
        import amdsmi as module
    except Exception as exc:  # KeyError/OSError/AttributeError when ROCm and amdsmi disagree
        return None, f"AMD: amdsmi is not importable ({type(exc).__name__}: {exc}): no AMD GPU"
    return module, ""


def counter(result: Mapping[str, Any]) -> tuple[int | None, float]:
    """(ticks, µJ per tick) of ``amdsmi_get_energy_count``, from either release's key."""
    raw = result.get("energy_accumulator", result.get("power"))
    ticks = topo.number(raw)
    resolution = topo.number(result.get("counter_resolution"))
    if ticks is None or resolution is None or resolution <= 0:
        return None, 0.0
    return int(ticks), resolution


def known_bad_counter(dev: topo.AmdDevice) -> bool:
    return "MI100" in dev.name.upper() or dev.gfx == "gfx908"


def probe(smi: Any, target: topo.Target, group: Sequence[topo.AmdDevice]) -> tuple[Die, DeviceInfo]:
    """Decide, once, how each GPU is read; describe it."""
    dev, primary = target.dev, group[0]
    notes: list[str] = []
    method = Method.AMDSMI_ENERGY
    if known_bad_counter(primary):
        method = Method.AMDSMI_POWER
        notes.append(
            "MI100 (gfx908): energy counter does not advance (ROCm/amdsmi#38): power integrated"
        )
    else:
        try:
            raw, _ = counter(smi.amdsmi_get_energy_count(primary.handle))
            if raw is None:
                method = Method.AMDSMI_POWER
                notes.append("energy counter N/A: power integrated")
            elif raw == 0:
                method = Method.AMDSMI_POWER
                notes.append("energy counter reads 0 (not working): power integrated")
            else:
                notes.append("energy accumulator (ticks x counter resolution, µJ)")
        except smi.AmdSmiException as exc:
            method = Method.AMDSMI_POWER
            kind = "NOT_SUPPORTED" if error_code(exc) == NOT_SUPPORTED else one_line(exc)
            notes.append(f"energy counter unreadable ({kind}): power integrated")
    try:
        info = smi.amdsmi_get_power_info(primary.handle)
    except smi.AmdSmiException:
        info = {}
    keys = tuple(k for k in topo.POWER_KEYS if (topo.watts(info.get(k)) or 0.0) > 0.0)
    keys = keys or topo.POWER_KEYS
    notes.append(f"power from {keys[0]}")
    extra = {"uuid": dev.uuid, "bdf": dev.bdf, "amdsmi_index": str(dev.index)}
    if target.hip_index is not None:
        extra["hip_index"] = str(target.hip_index)
    extra["power_source"] = keys[0]
    uncertainty = -1.0
    if len(group) > 1:
        extra.update(
            card_dies=str(len(group)),
            card_share=f"{1 / len(group):g}",
            card_reporter=primary.uuid,
        )
        notes.append(
            f"one of {len(group)} dies of a card whose power only {primary.uuid} reports:"
            f" charged 1/{len(group)} of the card's energy and power"
        )
        uncertainty = SHARED_CARD_UNCERTAINTY
    device = DeviceInfo(
        hw_id=dev.uuid,
        hw_type=HwType.GPU,
        name=dev.name,
        vendor="AMD",
        method=method,
        uncertainty=uncertainty,
        note="; ".join(notes),
        extra=extra,
    )
    die = Die(
        uuid=dev.uuid,
        own=dev.handle,
        source=primary.handle,
        share=1.0 / len(group),
        use_energy=method is Method.AMDSMI_ENERGY,
        power_keys=keys,
    )
    return die, device
