"""Measurement-core costs: ``snapshot()`` and the sampler thread, with budgets.

Usage: ``python benchmarks/core.py [--gpus 8] [--ticks 2000] [--json]`` (``make bench``)

* ``snapshot()``: median cost of the call every span boundary makes (budget < 5 µs).
* sampler tick: CPU time of one tick reading N fake GPUs (``tests/fakes/fake_nvml.py``, the
  same calls the real binding gets, in Python; real NVML calls are ctypes calls into the
  driver, which this machine does not have), a 2-socket RAPL tree in a temp dir (real file
  reads) and the RAM model (psutil), then the CPU share of one core at 1 Hz and 10 Hz
  (budget < 1 % of one core at 10 Hz).

The helpers here (fake GPUs, a RAPL tree, monitors built through the production discovery)
are shared by ``sampling_thread.py``, ``scale.py`` and ``memory.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.fake_nvml import FakeGpu, FakeNVML  # noqa: E402

from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity  # noqa: E402
from hf_eco2ai.config import CarbonConfig  # noqa: E402
from hf_eco2ai.energy_monitor import EnergyMonitor  # noqa: E402
from hf_eco2ai.sensors.base import Sensor  # noqa: E402
from hf_eco2ai.sensors.nvml import NvmlSensor  # noqa: E402
from hf_eco2ai.sensors.ram_model import RamModelSensor  # noqa: E402
from hf_eco2ai.sensors.rapl import RaplSensor  # noqa: E402

SNAPSHOT_BUDGET_US = 5.0
SAMPLER_BUDGET_PCT_10HZ = 1.0


def rapl_tree(root: Path) -> None:
    """A two-socket powercap tree: package + dram per socket."""
    for s in (0, 1):
        for rel, name in (
            (f"intel-rapl:{s}", f"package-{s}"),
            (f"intel-rapl:{s}/intel-rapl:{s}:0", "dram"),
        ):
            d = root / rel
            d.mkdir(parents=True, exist_ok=True)
            (d / "name").write_text(name + "\n")
            (d / "energy_uj").write_text("123456789\n")
            (d / "max_energy_range_uj").write_text("262143328850\n")


def fake_nvml(gpus: int) -> FakeNVML:
    """``gpus`` fake GPUs at 250 W with energy counters (``tests/fakes/fake_nvml.py``)."""
    return FakeNVML(
        [
            FakeGpu(uuid=f"GPU-{k:08d}-0000-0000-0000-000000000000", power_w=250.0)
            for k in range(gpus)
        ]
    )


def discover(gpus: int, tmp: Path, cpu: str = "rapl") -> list[Sensor]:
    """The sensors production discovery picks with ``gpus`` fake GPUs.

    ``cpu="rapl"``: a 2-socket powercap tree under ``tmp`` (package + dram counters, so no RAM
    model); ``cpu="tdp"``: no RAPL, so the CPU TDP model (psutil per-CPU times) and the RAM
    model (psutil RSS).
    """
    from hf_eco2ai.sensors.discovery import discover_sensors

    if cpu == "rapl":
        rapl_tree(tmp / "powercap")
        root = str(tmp / "powercap")
    elif cpu == "tdp":
        root = str(tmp / "no-powercap")
    else:
        raise ValueError(f"cpu must be 'rapl' or 'tdp', not {cpu!r}")
    logging.getLogger("hf_eco2ai").setLevel(logging.ERROR)
    config = CarbonConfig(track_gpu=gpus > 0)
    found = discover_sensors(config, rapl_root=root, nvml=fake_nvml(gpus), environ={})
    return list(found.sensors)


def build_sensors(gpus: int, tmp: Path) -> list[Sensor]:
    """N fake GPUs, a 2-socket RAPL tree (package + dram) and the RAM model."""
    sensors: list[Sensor] = []
    nvml = NvmlSensor.create(nvml=fake_nvml(gpus), environ={})
    if nvml is not None:
        sensors.append(nvml)
    rapl_tree(tmp / "powercap")
    rapl = RaplSensor.create(str(tmp / "powercap"))
    if rapl is not None:
        sensors.append(rapl)
    sensors.append(RamModelSensor())
    return sensors


def make_monitor(
    sensors: list[Sensor], *, interval_s: float = 1.0, history_size: int = 3600
) -> EnergyMonitor:
    """An :class:`EnergyMonitor` on ``sensors`` with a static intensity (not started)."""
    return EnergyMonitor(
        CarbonConfig(sample_interval=interval_s, history_size=history_size),
        sensors=sensors,
        intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "config")),
    )


def run(gpus: int, ticks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        monitor = make_monitor(build_sensors(gpus, Path(tmp)))
        devices = len(monitor.devices)
        sampler = monitor.sampler
        for _ in range(20):  # warm-up
            sampler.tick()
        per_tick = []
        for _ in range(5):
            t0 = time.thread_time()
            for _ in range(ticks // 5):
                sampler.tick()
            per_tick.append((time.thread_time() - t0) / (ticks // 5))
        tick_s = statistics.median(per_tick)
        loops = 200_000
        snap_s = statistics.median(
            t / loops for t in timeit.repeat(monitor.snapshot, number=loops, repeat=7)
        )
        monitor.close()
    return {
        "devices": devices,
        "gpus": gpus,
        "snapshot_median_us": snap_s * 1e6,
        "snapshot_budget_us": SNAPSHOT_BUDGET_US,
        "tick_cpu_us": tick_s * 1e6,
        "sampler_pct_of_core_1hz": tick_s * 1 * 100,
        "sampler_pct_of_core_10hz": tick_s * 10 * 100,
        "sampler_budget_pct_10hz": SAMPLER_BUDGET_PCT_10HZ,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args(argv)
    r = run(ns.gpus, ns.ticks)
    if ns.json:
        print(json.dumps(r, indent=2))
        return 0
    ok_snap = r["snapshot_median_us"] < SNAPSHOT_BUDGET_US
    ok_tick = r["sampler_pct_of_core_10hz"] < SAMPLER_BUDGET_PCT_10HZ
    print(f"devices: {r['devices']} ({r['gpus']} fake GPUs + RAPL packages/dram + RAM model)")
    print(
        f"snapshot(): median {r['snapshot_median_us']:.3f} µs "
        f"(budget < {SNAPSHOT_BUDGET_US} µs: {'ok' if ok_snap else 'MISSED'})"
    )
    print(
        f"sampler: {r['tick_cpu_us']:.1f} µs CPU per tick = {r['sampler_pct_of_core_1hz']:.3f} % "
        f"of one core at 1 Hz, {r['sampler_pct_of_core_10hz']:.3f} % at 10 Hz "
        f"(budget < {SAMPLER_BUDGET_PCT_10HZ} % at 10 Hz: {'ok' if ok_tick else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
