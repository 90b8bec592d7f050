"""Soak: one instrumented process, ten minutes at 10 Hz, 8 fake GPUs, 500 runs.

Not part of the default run (marker ``soak``, selected only by ``-m soak``; see
``tests/conftest.py``). Full length, as recorded in ``docs/reliability.md``::

    PYTHONPATH=$PWD/src python -m pytest tests/reliability/test_soak.py -m soak -q -s --basetemp=/tmp/soak-tmp

(``--basetemp``: a directory of its own; pytest prunes old ``pytest-N`` directories, and
another pytest started meanwhile would delete this one's.) Shorter, to check the test itself (duration and run count from the environment)::

    HF_ECO2AI_SOAK_SECONDS=20 HF_ECO2AI_SOAK_RUNS=20 python -m pytest tests/reliability/test_soak.py -m soak -q -s

The process is instrumented once (``HFEco2AIInstrumentor().instrument(config=...)``, sampling
every 0.1 s) on 8 fake NVIDIA GPUs (``tests/fakes/fake_nvml.py``, their energy counters driven
by the real monotonic clock) plus the CPU and RAM models. An ``Eco2AICallback`` is driven through
``on_train_begin`` / ``on_step_end`` / ``on_train_end`` with the Trainer's own state objects,
``RUNS`` times, paced over ``SECONDS``; every run writes its report.json, emissions.csv row and
power.png. Checked: resident memory, thread count and open file descriptors after the warm-up
runs and at the end stay within a fixed bound (a leak per run or per sample would grow with
500 runs and 6,000 samples), every run's energy is ≥ 0 and their sum is at most what the
monitor counted over the whole process; the figures are printed (``-s``) for the docs.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("transformers")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402

from hf_eco2ai import CarbonConfig, Eco2AICallback, HFEco2AIInstrumentor  # noqa: E402
from hf_eco2ai import energy_monitor as monitor_module  # noqa: E402
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity  # noqa: E402
from hf_eco2ai.energy_monitor import EnergyMonitor  # noqa: E402
from hf_eco2ai.sensors.cpu_model import CpuTdpSensor  # noqa: E402
from hf_eco2ai.sensors.nvml import NvmlSensor  # noqa: E402
from hf_eco2ai.sensors.ram_model import RamModelSensor  # noqa: E402
from tests.fakes.fake_nvml import FakeGpu, FakeNVML  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.soak]

SECONDS = float(os.environ.get("HF_ECO2AI_SOAK_SECONDS", "600"))
"""How long the process stays instrumented (at least; a slow machine takes longer)."""
RUNS = int(os.environ.get("HF_ECO2AI_SOAK_RUNS", "500"))
"""Runs started and ended over that time."""
GPUS = 8
GPU_POWER_W = 300.0
STEPS_PER_RUN = 4
MIN_RUN_S = 0.5
"""A run lasts at least this long (5 samples), even when the machine fell behind the pacing."""
WARMUP_RUNS = max(2, RUNS // 20)
"""Runs before the baseline is taken: lazy imports, caches and matplotlib's fonts settle."""
MAX_RSS_GROWTH = 48 * 1024**2
"""Resident-memory growth allowed after the warm-up (a 100 KiB-per-run leak would be 48 MiB)."""
MAX_FD_GROWTH = 2
MAX_THREAD_GROWTH = 0


class WallClockNVML(FakeNVML):
    """The fake NVML with its clock tied to ``time.monotonic()`` (the sampler reads it live)."""

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self._t0 = time.monotonic()
        super().__init__(gpus)

    @property  # type: ignore[override]
    def now(self) -> float:
        return time.monotonic() - self._t0

    @now.setter
    def now(self, value: float) -> None:
        """The base class sets the clock to 0 at construction; the wall clock owns it."""


@dataclass
class Resources:
    rss: int
    threads: int
    fds: int

    @classmethod
    def now(cls) -> Resources:
        gc.collect()
        process = psutil.Process()
        return cls(process.memory_info().rss, threading.active_count(), process.num_fds())

    def __str__(self) -> str:
        return f"RSS {self.rss / 1024**2:.1f} MiB, {self.threads} threads, {self.fds} fds"


def _monitor_factory(nvml: FakeNVML) -> Any:
    def factory(config: CarbonConfig, local_rank: int = 0) -> EnergyMonitor:
        gpus = NvmlSensor.create(nvml=nvml, environ={})
        assert gpus is not None and len(gpus.devices) == GPUS
        return EnergyMonitor(
            config,
            sensors=[
                gpus,
                CpuTdpSensor.create(cpu_tdp=65.0, cpu_model="Soak CPU"),
                RamModelSensor(),
            ],
            intensity=StaticIntensity(CarbonIntensity(100.0, "XX", "config")),
        )

    return factory


def _total_energy_j(reader: InMemoryMetricReader) -> float:
    """Σ ``hf_eco2ai.energy`` over ``hw.type``: what the monitor counted since it started."""
    data = reader.get_metrics_data()
    assert data is not None
    return sum(
        point.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "hf_eco2ai.energy"
        for point in metric.data.data_points
    )


def _one_run(callback: Eco2AICallback, args: TrainingArguments, until: float) -> None:
    """One Trainer run as the Trainer drives its callbacks, lasting until ``until`` (at least
    :data:`MIN_RUN_S`)."""
    state = TrainerState(max_steps=STEPS_PER_RUN, num_train_epochs=1)
    control = TrainerControl()
    until = max(until, time.monotonic() + MIN_RUN_S)
    callback.on_train_begin(args, state, control)
    for step in range(1, STEPS_PER_RUN + 1):
        callback.on_step_begin(args, state, control)
        time.sleep(max(0.0, (until - time.monotonic()) / (STEPS_PER_RUN + 1 - step)))
        state.global_step = step
        callback.on_step_end(args, state, control)
    state.epoch = 1.0
    callback.on_train_end(args, state, control)


def test_soak_resources_stay_flat_and_totals_add_up(tmp_path: Path) -> None:
    assert RUNS > WARMUP_RUNS, "HF_ECO2AI_SOAK_RUNS must exceed the warm-up runs"
    nvml = WallClockNVML(
        [
            FakeGpu(uuid=f"GPU-{i:08d}-0000-0000-0000-000000000000", power_w=GPU_POWER_W)
            for i in range(GPUS)
        ]
    )
    output = tmp_path / "runs"
    config = CarbonConfig(sample_interval=0.1, output_dir=str(output), country="FR")
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=8, report_to=[]
    )
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    instrumentor = HFEco2AIInstrumentor()
    monitor_module.set_monitor_factory(_monitor_factory(nvml))
    start = time.monotonic()
    try:
        instrumentor.instrument(
            config=config, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        callback = Eco2AICallback(config)
        slot = SECONDS / RUNS
        baseline = Resources.now()
        for run in range(RUNS):
            _one_run(callback, args, until=start + (run + 1) * slot)
            if run + 1 == WARMUP_RUNS:
                baseline = Resources.now()
        end = Resources.now()
        elapsed = time.monotonic() - start
        monitor_total_j = _total_energy_j(reader)
    finally:
        instrumentor.uninstrument()
        monitor_module.set_monitor_factory(None)
        meter_provider.shutdown()
        tracer_provider.shutdown()

    reports = [json.loads(p.read_text(encoding="utf-8")) for p in output.glob("*/report.json")]
    run_energies = [r["totals"]["energy_j"] for r in reports]
    gpu_energy = sum(r["totals"]["by_type"]["gpu"]["energy_j"] for r in reports)
    run_seconds = sum(r["run"]["duration_s"] for r in reports)
    csv_rows = (output / "emissions.csv").read_text(encoding="utf-8").splitlines()[1:]
    print(
        f"\nsoak: {RUNS} runs in {elapsed:.0f} s at 10 Hz on {GPUS} fake GPUs\n"
        f"  after {WARMUP_RUNS} warm-up runs: {baseline}\n"
        f"  at the end:               {end}\n"
        f"  Σ run energy {sum(run_energies):.0f} J <= monitor total {monitor_total_j:.0f} J; "
        f"GPU energy {gpu_energy:.0f} J over {run_seconds:.0f} s of runs"
    )
    assert len(run_energies) == RUNS
    assert len(csv_rows) == RUNS
    assert all(e >= 0 for e in run_energies), min(run_energies)
    # runs are disjoint windows of the monitor's one ledger: together at most its total
    assert sum(run_energies) <= monitor_total_j * (1 + 1e-9)
    # the 8 GPUs draw a constant 2.4 kW: over all runs, their energy is that power x run time
    assert gpu_energy == pytest.approx(GPUS * GPU_POWER_W * run_seconds, rel=0.05)
    assert end.rss - baseline.rss <= MAX_RSS_GROWTH, (str(baseline), str(end))
    assert end.threads - baseline.threads <= MAX_THREAD_GROWTH, (str(baseline), str(end))
    assert end.fds - baseline.fds <= MAX_FD_GROWTH, (str(baseline), str(end))
