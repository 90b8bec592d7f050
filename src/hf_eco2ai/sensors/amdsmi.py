"""AMD GPUs (ROCm) through AMD's ``amdsmi`` Python library (optional extra ``hf-eco2ai[amd]``).

``amdsmi`` is imported only when a sensor is created, and only when it is installed and ROCm's
``libamd_smi.so`` is present (importing it without the library fails and prints to stdout).

What is read, per GPU (per die: an MI250's two GCDs are two GPUs to ROCm):

* **energy** — ``amdsmi_get_energy_count``: accumulator ticks x ``counter_resolution`` (µJ); the
  ticks are under ``energy_accumulator`` (amdsmi 6.3+) or ``power`` (before 6.4). Probed once at
  creation; a counter that is missing, refused or reads 0 — and MI100 (gfx908), whose counter
  does not advance (ROCm/amdsmi#38) — gives ``amdsmi-power``: ``energy_j`` is ``None`` and the
  sampler integrates power. A counter that stops moving mid-run while the GPU draws power is
  switched to power too, its stalled stretch filled in from the power readings (logged once).
  Wrap-around (at 2**32 or 2**64 ticks) and restarts keep the total monotonic.
* **power** — ``amdsmi_get_power_info`` (W): ``current_socket_power`` where the device has it,
  else ``socket_power`` (7.0+), else ``average_socket_power`` (MI200/MI300).
* **utilisation** (``amdsmi_get_gpu_activity``'s ``gfx_activity`` / 100) and **memory**
  (``amdsmi_get_gpu_vram_usage``, MB -> bytes); optional: a failure gives ``None``.

amdsmi returns the string ``"N/A"`` for what a device does not support: it is treated as absent,
never as a number. Which GPUs, and how dies of one card share energy: see
:mod:`hf_eco2ai.sensors.amd_topology`. A die that reports no power itself (MI250's second GCD)
is read through the die that reports its card, and the card's energy and power are split evenly
between the card's dies, so a job holding one GCD is charged half the card, never 0 and never
the whole card twice (``extra["card_share"]``; the band is widened to ±25 %).

Example:
    >>> from hf_eco2ai.sensors.amdsmi import AmdSmiSensor
    >>> sensor, why = AmdSmiSensor.try_create()  # (None, reason) without amdsmi / an AMD GPU
    >>> if sensor is not None:
    ...     watts = sensor.read(0).power_w
    ...     sensor.close()
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hf_eco2ai.sensors import amd_topology as topo
from hf_eco2ai.sensors.amd_setup import (
    LOST,
    NOT_SUPPORTED,
    STUCK_AFTER_S,
    Die,
    counter,
    error_code,
    import_amdsmi,
    one_line,
    probe,
)
from hf_eco2ai.sensors.base import (
    DeviceInfo,
    DeviceLostError,
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

__all__ = ["AmdSmiSensor"]

logger = logging.getLogger(__name__)


class AmdSmiSensor:
    """Reads energy, power, utilisation and memory of AMD GPUs through amdsmi.

    Build it with :meth:`create` or :meth:`try_create` (which also says why there is no GPU).
    ``read(i)`` raises :class:`DeviceLostError` when amdsmi no longer finds the GPU
    (NOT_FOUND, DRIVER_NOT_LOADED, AMDGPU_RESTART_ERR) and :class:`SensorError` for any other
    amdsmi error.

    Example:
        >>> sensor, why = AmdSmiSensor.try_create(["0"])  # HIP device 0, if there is one
        >>> if sensor is not None:
        ...     joules = sensor.read(0).energy_j  # None where the GPU has no working counter
        ...     sensor.close()
    """

    def __init__(
        self,
        smi: Any,
        dies: Sequence[Die],
        devices: Sequence[DeviceInfo],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._smi = smi
        self._dies = list(dies)
        self._devices = list(devices)
        self._clock = clock
        self._closed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        selectors: Sequence[str] | None = None,
        *,
        amdsmi: Any = None,
        environ: Mapping[str, str] | None = None,
        local_rank: int | None = None,
        local_world_size: int | None = None,
    ) -> AmdSmiSensor | None:
        """The sensor, or ``None`` (one log line, no exception) when there is no usable GPU."""
        return cls.try_create(
            selectors,
            amdsmi=amdsmi,
            environ=environ,
            local_rank=local_rank,
            local_world_size=local_world_size,
        )[0]

    @classmethod
    def try_create(
        cls,
        selectors: Sequence[str] | None = None,
        *,
        amdsmi: Any = None,
        environ: Mapping[str, str] | None = None,
        local_rank: int | None = None,
        local_world_size: int | None = None,
    ) -> tuple[AmdSmiSensor | None, str]:
        """Like :meth:`create`, plus a human-readable note of what was found and why.

        ``selectors`` are HIP indices (relative to what this process sees) or GPU identities
        (amdsmi UUID, ``GPU-…`` ROCm UUID, ASIC serial). ``local_rank``/``local_world_size``:
        as for :class:`~hf_eco2ai.sensors.nvml.NvmlSensor`, ranks that each see the same N GPUs
        (N == local world size) measure their own one.
        """
        env = os.environ if environ is None else environ
        smi = amdsmi
        if smi is None:
            smi, why = import_amdsmi()
            if smi is None:
                return no_sensor(why, logger)
        try:
            smi.amdsmi_init()
        except Exception as exc:
            return no_sensor(
                f"AMD: amdsmi_init failed ({one_line(exc)}): no AMD GPU driver", logger
            )
        try:
            sensor, note = cls._build(smi, selectors, env, local_rank, local_world_size)
        except Exception as exc:
            sensor, note = None, f"AMD: GPU discovery failed ({type(exc).__name__}: {exc})"
        if sensor is None:
            _shutdown(smi)
            return no_sensor(note, logger)
        logger.info("%s", note)
        return sensor, note

    @classmethod
    def _build(
        cls,
        smi: Any,
        selectors: Sequence[str] | None,
        env: Mapping[str, str],
        local_rank: int | None,
        local_world_size: int | None,
    ) -> tuple[AmdSmiSensor | None, str]:
        notes: list[str] = []
        devices = topo.enumerate_devices(smi, notes)
        if not devices:
            return None, "AMD: no AMD GPU found" + note_suffix(notes)
        seen, how = topo.visible(devices, env, notes)
        if not seen:
            return None, f"AMD: no AMD GPU visible to this process ({how})" + note_suffix(notes)
        if selectors:
            chosen = topo.select(devices, seen, selectors, notes)
            how = f"gpu_devices={','.join(selectors)} ({how})"
        elif (
            per_rank := one_device_per_rank(
                seen, local_rank=local_rank, local_world_size=local_world_size, api="HIP"
            )
        ) is not None:
            chosen, why = per_rank
            how += why
        else:
            chosen = list(seen)
        groups, card_notes = topo.card_groups(devices)
        notes.extend(n for n in card_notes if any(t.dev.uuid in n for t in chosen))
        dies: list[Die] = []
        infos: list[DeviceInfo] = []
        for target in topo.dedupe(chosen):
            group = groups.get(target.dev.uuid)
            if group is None:
                continue  # a silent die without its card: noted above, never a silent zero
            die, info = probe(smi, target, group)
            dies.append(die)
            infos.append(info)
        if not dies:
            return None, f"AMD: no AMD GPU measurable ({how})" + note_suffix(notes)
        note = devices_note("AMD", infos, how, notes)
        return cls(smi, dies, infos), note

    # ------------------------------------------------------------------ Sensor protocol
    @property
    def devices(self) -> Sequence[DeviceInfo]:
        """The GPUs read, in a fixed order (``hw_id`` is the amdsmi UUID)."""
        return tuple(self._devices)

    def read(self, index: int) -> Reading:
        """Read GPU ``index``: cumulative energy (J) or None, power (W), utilisation, memory."""
        if self._closed:
            raise SensorError("amdsmi sensor is closed")
        die = self._dies[index]
        try:
            now = self._clock()
            card_w = self._read_power(die)
            card_j = self._read_energy(index, die, card_w, now)
            if card_w is None:  # no power value this time: derive it from the counter
                if card_j is None or die.last_energy_j is None or die.last_t is None:
                    raise SensorError(f"AMD GPU {die.uuid}: no power reading (N/A)")
                dt = now - die.last_t
                card_w = (card_j - die.last_energy_j) / dt if dt > 0 else die.last_power_w or 0.0
            die.last_t, die.last_power_w, die.last_energy_j = now, card_w, card_j
            utilization = self._read_utilization(die)
            used, total = self._read_memory(die)
        except self._smi.AmdSmiException as exc:
            if error_code(exc) in LOST:
                raise DeviceLostError(f"AMD GPU {die.uuid} is lost: {one_line(exc)}") from exc
            raise SensorError(f"amdsmi error on GPU {die.uuid}: {one_line(exc)}") from exc
        return Reading(
            power_w=card_w * die.share,
            energy_j=None if card_j is None else card_j * die.share,
            utilization=utilization,
            memory_used=used,
            memory_limit=total,
        )

    def close(self) -> None:
        """Call ``amdsmi_shut_down`` once (idempotent)."""
        if not self._closed:
            self._closed = True
            _shutdown(self._smi)

    # ------------------------------------------------------------------ reads
    def _read_power(self, die: Die) -> float | None:
        info = self._smi.amdsmi_get_power_info(die.source)
        for key in die.power_keys:
            value = topo.watts(info.get(key))
            if value is not None:
                return value
        return None

    def _read_energy(self, index: int, die: Die, power_w: float | None, now: float) -> float | None:
        if not die.use_energy:
            return None
        try:
            raw, resolution = counter(self._smi.amdsmi_get_energy_count(die.source))
        except self._smi.AmdSmiException as exc:
            if error_code(exc) != NOT_SUPPORTED:
                raise
            self._to_power(index, die, "energy counter became NOT_SUPPORTED mid-run")
            return None
        if raw is None:
            self._to_power(index, die, "energy counter became N/A mid-run")
            return None
        die.resolution_uj = resolution
        if die.last_raw is None:
            die.last_raw, die.last_advance_t = raw, now
        elif raw == die.last_raw:
            if power_w is not None and die.last_t is not None:
                prev = power_w if die.last_power_w is None else die.last_power_w
                die.stalled_j += 0.5 * (power_w + prev) * (now - die.last_t)
            if now - die.last_advance_t >= STUCK_AFTER_S and die.stalled_j > 1.0:
                stalled = die.stalled_j
                self._to_power(
                    index,
                    die,
                    f"energy counter stalled {now - die.last_advance_t:.0f} s while drawing power"
                    " (MI100-like): power integrated, the stalled stretch filled in from power",
                )
                return self._joules(die) + stalled
        else:
            if raw < die.last_raw and not self._unwrap(die, raw, power_w, now):
                return self._joules(die)  # a small step back is a glitch: keep the last value
            die.last_raw, die.last_advance_t, die.stalled_j = raw, now, 0.0
        return self._joules(die)

    @staticmethod
    def _joules(die: Die) -> float:
        assert die.last_raw is not None
        return (die.last_raw + die.offset) * die.resolution_uj * 1e-6

    @staticmethod
    def _unwrap(die: Die, raw: int, power_w: float | None, now: float) -> bool:
        """Account for the counter going down; False for a glitch (nothing to account)."""
        last = die.last_raw
        assert last is not None
        if raw >= last - raw:
            return False
        width = 2**32 if last < 2**32 else 2**64
        wrap_ticks, restart_ticks = width - last + raw, raw
        if power_w is not None and die.last_t is not None and die.resolution_uj > 0:
            expected = power_w * (now - die.last_t) / (die.resolution_uj * 1e-6)
            wrapped = abs(wrap_ticks - expected) <= abs(restart_ticks - expected)
        else:
            wrapped = last >= width // 2
        die.offset += width if wrapped else last
        return True

    def _to_power(self, index: int, die: Die, why: str) -> None:
        die.use_energy = False
        old = self._devices[index]
        self._devices[index] = DeviceInfo(
            hw_id=old.hw_id,
            hw_type=old.hw_type,
            name=old.name,
            vendor=old.vendor,
            method=Method.AMDSMI_POWER,
            uncertainty=max(old.uncertainty, 0.10),
            note=f"{old.note}; {why}",
            extra=old.extra,
        )
        logger.warning("amdsmi: GPU %s: %s; integrating power from now", die.uuid, why)

    def _read_utilization(self, die: Die) -> float | None:
        if not die.read_util:
            return None
        try:
            activity = self._smi.amdsmi_get_gpu_activity(die.own)
        except self._smi.AmdSmiException as exc:
            if error_code(exc) in LOST:
                raise
            die.read_util = error_code(exc) != NOT_SUPPORTED
            return None
        value = topo.number(activity.get("gfx_activity"), below=101)  # 0xFFFF before 6.1
        return None if value is None else min(max(value / 100.0, 0.0), 1.0)

    def _read_memory(self, die: Die) -> tuple[int | None, int | None]:
        if not die.read_memory:
            return None, None
        try:
            vram = self._smi.amdsmi_get_gpu_vram_usage(die.own)
        except self._smi.AmdSmiException as exc:
            if error_code(exc) in LOST:
                raise
            die.read_memory = error_code(exc) != NOT_SUPPORTED
            return None, None
        used = topo.number(vram.get("vram_used"), below=0xFFFFFFFF)
        total = topo.number(vram.get("vram_total"), below=0xFFFFFFFF)
        mb = 1024 * 1024
        return (
            None if used is None else int(used) * mb,
            None if total is None else int(total) * mb,
        )


# ---------------------------------------------------------------------- helpers
def _shutdown(smi: Any) -> None:
    try:
        smi.amdsmi_shut_down()
    except Exception as exc:
        logger.debug("amdsmi_shut_down failed: %s", exc)
