"""Which sensors measure this process, and why (the notes ``hf-eco2ai doctor`` prints).

Policy:

* **GPU** (``track_gpu``): NVML for the GPUs this process owns (``gpu_devices`` or
  ``CUDA_VISIBLE_DEVICES``; when ``LOCAL_WORLD_SIZE`` ranks all see the same GPUs, each rank
  takes its own, see :meth:`NvmlSensor.try_create`); beside it, amdsmi for the AMD GPUs it owns
  (``ROCR_VISIBLE_DEVICES``/``HIP_VISIBLE_DEVICES``/``CUDA_VISIBLE_DEVICES``, see
  :class:`~hf_eco2ai.sensors.amdsmi.AmdSmiSensor`); a host with both gets both.
* **CPU** (``track_cpu``): RAPL package counters when readable, else the TDP model.
* **RAM** (``track_ram``): the RAPL ``dram`` domain when there is one, else the RAM model.
* Host CPU and RAM are measured by local rank 0 only, so a node is never counted once per rank.
* A sensor that fails to build is left out with a note; the others go on.
* Host-scope sensors (NVML, RAPL) are wrapped in
  :class:`~hf_eco2ai.sensors.process_share.JobScopedSensor`, so each reading carries this job's
  share; the TDP model computes its own; all share one cached
  :class:`~hf_eco2ai.sensors.process_share.ProcessTree`.
* NVML unusable (library missing, ``nvmlInit`` failing) on a machine that has NVIDIA devices
  (``/dev/nvidia<N>`` or ``nvidia-smi`` on ``PATH``, see :func:`nvidia_hardware`) is a WARNING
  and a ``GPU: NOT MEASURED`` note, since the GPUs draw power nobody counts; on a machine
  without them it is an INFO line.

Example:
    >>> from hf_eco2ai.config import CarbonConfig
    >>> found = discover_sensors(CarbonConfig(track_gpu=False), rapl_root="/nonexistent")
    >>> [d.method.value for s in found.sensors for d in s.devices]
    ['tdp-model', 'ram-model']
    >>> found.close()
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.sensors.amdsmi import AmdSmiSensor
from hf_eco2ai.sensors.base import Sensor
from hf_eco2ai.sensors.cpu_model import CpuTdpSensor
from hf_eco2ai.sensors.nvml import NvmlSensor
from hf_eco2ai.sensors.process_share import JobScopedSensor, ProcessTree
from hf_eco2ai.sensors.ram_model import RamModelSensor
from hf_eco2ai.sensors.rapl import DEFAULT_ROOT, RaplSensor

__all__ = ["Discovery", "discover_sensors", "nvidia_hardware"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Discovery:
    """The sensors found, and human-readable notes on what was found and why.

    Example:
        >>> Discovery(sensors=(), notes=("GPU: not tracked",)).notes
        ('GPU: not tracked',)
    """

    sensors: tuple[Sensor, ...]
    notes: tuple[str, ...]

    def close(self) -> None:
        """Close every sensor (errors are logged, not raised)."""
        for sensor in self.sensors:
            try:
                sensor.close()
            except Exception as exc:
                logger.debug("closing %r failed: %s", sensor, exc)


def _contained(label: str, notes: list[str], build: Callable[[], T]) -> T | None:
    try:
        return build()
    except Exception as exc:
        note = f"{label}: sensor creation failed ({type(exc).__name__}: {exc}); left out"
        logger.warning("%s", note, exc_info=True)
        notes.append(note)
        return None


def nvidia_hardware() -> str | None:
    """Evidence of NVIDIA GPUs on this machine without NVML (``/dev/nvidia0``, ``nvidia-smi``),
    or None. Reads only the device directory and ``PATH``.

    >>> nvidia_hardware() is None or "nvidia" in nvidia_hardware()
    True
    """
    nodes = sorted(p for p in glob.glob("/dev/nvidia*") if p[len("/dev/nvidia") :].isdigit())
    if nodes:
        return ", ".join(nodes[:4]) + (" ..." if len(nodes) > 4 else "")
    smi = shutil.which("nvidia-smi")
    return f"{smi} on PATH" if smi else None


_NVML_UNUSABLE = ("not importable", "nvmlInit failed", "GPU discovery failed")


def _gpu_not_measured(note: str, probe: Callable[[], str | None]) -> str | None:
    """The WARNING note when NVML is unusable although NVIDIA devices are present."""
    if not any(marker in note for marker in _NVML_UNUSABLE):
        return None
    try:
        evidence = probe()
    except Exception as exc:  # a probe must never stop discovery
        logger.debug("NVIDIA device probe failed: %s", exc)
        return None
    if not evidence:
        return None
    return (
        f"GPU: NOT MEASURED: NVIDIA device(s) present ({evidence}) but NVML is unusable"
        f" ({note.removeprefix('NVML: ')}); the GPUs' energy is missing from every total"
        " (install nvidia-ml-py / fix the driver, or set track_gpu=false to silence this)"
    )


def _local_world_size(env: Mapping[str, str]) -> int | None:
    raw = env.get("LOCAL_WORLD_SIZE")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def discover_sensors(
    config: CarbonConfig,
    *,
    local_rank: int = 0,
    rapl_root: str = DEFAULT_ROOT,
    nvml: Any = None,
    amdsmi: Any = None,
    environ: Mapping[str, str] | None = None,
    cpuinfo_path: str = "/proc/cpuinfo",
    cgroup_root: str = "/sys/fs/cgroup",
    proc_cgroup: str = "/proc/self/cgroup",
    nvidia_probe: Callable[[], str | None] = nvidia_hardware,
) -> Discovery:
    """Build the sensors ``config`` asks for on this host; never raises for a missing device.

    ``nvml`` (a pynvml-like module), ``amdsmi`` (an amdsmi-like module), ``environ``,
    ``rapl_root``, ``cpuinfo_path``, ``cgroup_root``, ``proc_cgroup`` and ``nvidia_probe``
    (evidence of NVIDIA devices without NVML) are injectable for tests.
    """
    env = os.environ if environ is None else environ
    sensors: list[Sensor] = []
    notes: list[str] = []
    tree = ProcessTree()  # this process and its children: the job scope of every sensor

    if config.track_gpu:
        world = _local_world_size(env)
        _add_gpu_sensor(
            "GPU",
            notes,
            sensors,
            lambda: NvmlSensor.try_create(
                config.gpu_devices,
                nvml=nvml,
                environ=env,
                local_rank=local_rank,
                local_world_size=world,
            ),
            tree=tree,
            nvidia_probe=nvidia_probe,
        )
        _add_gpu_sensor(  # AMD GPUs (amdsmi), beside NVML
            "GPU (AMD)",
            notes,
            sensors,
            lambda: AmdSmiSensor.try_create(
                config.gpu_devices,
                amdsmi=amdsmi,
                environ=env,
                local_rank=local_rank,
                local_world_size=world,
            ),
        )
    else:
        notes.append("GPU: not tracked (track_gpu=false)")

    if not (config.track_cpu or config.track_ram):
        notes.append("CPU/RAM: not tracked (track_cpu=false, track_ram=false)")
        return Discovery(tuple(sensors), tuple(notes))
    if local_rank != 0:
        notes.append(
            f"CPU/RAM: measured by local rank 0 only (this process is local rank {local_rank}),"
            " so the node is counted once"
        )
        return Discovery(tuple(sensors), tuple(notes))

    include = [k for k, on in (("package", config.track_cpu), ("dram", config.track_ram)) if on]
    rapl: RaplSensor | None = None
    rapl_note = "RAPL: not tried"
    found_rapl = _contained(
        "RAPL",
        notes,
        lambda: RaplSensor.try_create(rapl_root, include=include, cpuinfo_path=cpuinfo_path),
    )
    if found_rapl is not None:
        rapl, rapl_note = found_rapl
        notes.append(rapl_note)
    kinds = rapl.kinds() if rapl is not None else frozenset()
    if rapl is not None:
        sensors.append(JobScopedSensor(rapl, tree))

    if not config.track_cpu:
        notes.append("CPU: not tracked (track_cpu=false)")
    elif "package" in kinds:
        ignored = f" (cpu_tdp={config.cpu_tdp:g} W unused)" if config.cpu_tdp else ""
        notes.append(f"CPU: measured by RAPL package counters{ignored}")
    else:
        log = logger.warning if "permission denied" in rapl_note else logger.info
        log("CPU: no RAPL package counter (%s); estimating with the TDP model", rapl_note)
        cpu = _contained(
            "CPU",
            notes,
            lambda: CpuTdpSensor.create(
                config.cpu_tdp,
                cpuinfo_path=cpuinfo_path,
                cgroup_root=cgroup_root,
                proc_cgroup=proc_cgroup,
                tree=tree,
            ),
        )
        if cpu is not None:
            sensors.append(cpu)
            notes.append(f"CPU: estimated (no RAPL package counter): {cpu.devices[0].note}")

    if not config.track_ram:
        notes.append("RAM: not tracked (track_ram=false)")
    elif "dram" in kinds:
        notes.append("RAM: measured by the RAPL dram counter")
    else:
        ram = _contained("RAM", notes, lambda: RamModelSensor(config.ram_power_per_gb, tree=tree))
        if ram is not None:
            sensors.append(ram)
            notes.append(f"RAM: estimated (no RAPL dram domain): {ram.devices[0].note}")
    return Discovery(tuple(sensors), tuple(notes))


def _add_gpu_sensor(
    label: str,
    notes: list[str],
    sensors: list[Sensor],
    create: Callable[[], tuple[Sensor | None, str]],
    *,
    tree: ProcessTree | None = None,
    nvidia_probe: Callable[[], str | None] | None = None,
) -> None:
    """Add one vendor's GPU sensor, with a note either way.

    ``tree``: wrap the sensor so that each GPU also reports the job's share of it (NVML knows
    which processes run on a GPU). ``nvidia_probe``: where the sensor is missing but the machine
    shows NVIDIA hardware, warn and say what goes unmeasured (a missing library, not a missing
    GPU).
    """
    found = _contained(label, notes, create)
    if found is None:
        return
    gpu, note = found
    notes.append(f"GPU: {note}")
    if gpu is not None:
        sensors.append(JobScopedSensor(gpu, tree) if tree is not None else gpu)
    elif nvidia_probe is not None:
        missing = _gpu_not_measured(note, nvidia_probe)
        if missing is not None:
            logger.warning("hf-eco2ai: %s", missing)
            notes.append(missing)
